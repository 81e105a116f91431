"""A pair asked about several dimensions (and in both orders) is encoded once: the judge's shared
path gives what the model gives when every row carries its own copy of the images through
`pixel_values` (transformers' own scatter of the vision features), in value and in gradient."""
import numpy as np
import pytest
import torch

from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.evaluation import score_pairs
from rewardmodel.core.judge import Judge
from rewardmodel.core.pairs import PreferencePairs
from tests.rewardmodel.synthetic_pairs import row, save_image, texture, write_dataset
from tests.rewardmodel.test_judge import LONG_QUERY, QUERY, images

QUERIES = [QUERY, LONG_QUERY, QUERY + " Look closely.", "Which is better? Answer Yes or No."]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return Judge.from_pretrained(str(save_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), seed=0)))


def reference_logprobs(judge, first, second, queries, context=None):
    """The model's own path: every row's images as pixel_values, each row with copies of its own."""
    copy = lambda rows: [image.clone() for image in rows]  # noqa: E731 - distinct objects, same pixels
    inputs = judge.model_inputs(copy(first), copy(second), queries, context=copy(context) if context else None)
    logprobs = torch.log_softmax(judge.model(**inputs).logits[:, -1].float(), dim=-1)
    return logprobs[:, judge.yes_token_id], logprobs[:, judge.no_token_id]


def count_tower_images(judge):
    """A hook that records how many images each call of the vision tower encodes."""
    calls = []
    visual = judge._base().model.visual
    handle = visual.register_forward_hook(lambda module, args, kwargs, output: calls.append(len(kwargs["grid_thw"])),
                                          with_kwargs=True)
    return calls, handle


def test_four_dimensions_share_one_encoding_with_the_same_scores_and_gradients(judge):
    first, second = images((56, 84), (84, 56), seed=7)
    first.requires_grad_(True)
    n = len(QUERIES)
    calls, handle = count_tower_images(judge)
    try:
        yes, no = judge.answer_logprobs([first] * n, [second] * n, QUERIES)
    finally:
        handle.remove()
    assert calls == [2]  # two distinct images, however many rows
    (gradient,) = torch.autograd.grad(yes.exp().sum(), first)

    reference_first = first.detach().clone().requires_grad_(True)
    copies = [reference_first] * n  # model_inputs clones them below, so the tower sees 2n images
    ref_yes, ref_no = reference_logprobs(judge, copies, [second] * n, QUERIES)
    (ref_gradient,) = torch.autograd.grad(ref_yes.exp().sum(), reference_first)

    torch.testing.assert_close(yes, ref_yes, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(no, ref_no, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradient, ref_gradient, rtol=1e-4, atol=1e-7)
    assert gradient.abs().sum() > 0
    # The rows are different questions: a judge that answered every row with the first row's
    # query, or scattered one row's features into another's, would give equal rows.
    assert len({round(float(v), 6) for v in yes.detach()}) == n


def test_both_orders_and_a_context_image_share_the_encodings(judge):
    first, second, source = images((56, 56), (56, 56), (56, 84), seed=11)
    calls, handle = count_tower_images(judge)
    try:
        scores = judge.score([first] * 2, [second] * 2, QUERIES[:2], both_orders=True, context=[source] * 2)
    finally:
        handle.remove()
    assert calls == [3]
    with torch.no_grad():
        yes, no = reference_logprobs(judge, [first, first, second, second], [second, second, first, first],
                                     QUERIES[:2] * 2, context=[source] * 4)
    torch.testing.assert_close(scores["p_yes_renormalised"], torch.sigmoid(yes - no)[:2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["p_yes_reversed_renormalised"], torch.sigmoid(yes - no)[2:],
                               rtol=1e-5, atol=1e-6)


def test_equal_pixels_in_distinct_tensors_are_still_encoded_per_row(judge):
    """Sharing follows identity, never a guess about content: copies go through the tower each."""
    first, second = images((56, 56), (56, 56), seed=3)
    calls, handle = count_tower_images(judge)
    try:
        with torch.no_grad():
            judge.answer_logprobs([first, first.clone()], [second, second.clone()], QUERIES[:2])
    finally:
        handle.remove()
    assert calls == [4]


def fill_dataset(folder, *, embed: bool):
    """Three image-fill sets of two candidates, each pair judged on four dimensions (the loser of one
    dimension the winner of another), interleaved the way an export orders rows, plus one row from
    a file that reuses candidate names for other pictures."""
    rng = np.random.default_rng(0)
    rows = []
    dimensions = ("text_alignment", "consistency", "structure", "aesthetics")
    pictures = {}
    for number in range(3):
        for side in ("a", "b"):
            pictures[number, side] = save_image(texture(rng, 56, 0.3 + 0.2 * (side == "a")),
                                                folder / "images" / f"{number}{side}.png", embed)
    for dimension_index, dimension in enumerate(dimensions):
        for number in range(3):
            first, second = ("a", "b") if dimension_index % 2 == 0 else ("b", "a")
            rows.append(row(split="test", input_id=number, task="image_fill", dimension=dimension,
                            prompt="a red cup", candidate_set_id=number, winner_candidate=f"{number}{first}",
                            loser_candidate=f"{number}{second}", winner_image=pictures[number, first],
                            loser_image=pictures[number, second]))
    other = save_image(texture(rng, 56, 0.9), folder / "images" / "other.png", embed)
    rows.append(row(split="test", input_id=0, task="image_fill", dimension="aesthetics", candidate_set_id=0,
                    winner_candidate="0a", loser_candidate="0b", winner_image=other, loser_image=pictures[0, "b"],
                    pair_id="reused-names"))
    return write_dataset(folder / "data", rows, embed_images=embed)


@pytest.mark.parametrize("embed", [False, True])
def test_evaluation_batches_group_a_pair_and_score_like_one_row_at_a_time(judge, tmp_path, embed):
    pairs = PreferencePairs(fill_dataset(tmp_path, embed=embed), "test")
    batches = pairs.pair_batches(8)
    assert sorted(i for batch in batches for i in batch) == list(range(len(pairs)))
    assert all(len(batch) <= 8 for batch in batches)
    for batch in batches:  # a pair's four rows together, whatever the order of the file
        sets = [pairs.row(i)["candidate_set_id"] for i in batch]
        assert all(sets.count(s) in (4, 5) for s in sets)

    calls, handle = count_tower_images(judge)
    try:
        rows = score_pairs(judge, pairs, batch_size=8)
    finally:
        handle.remove()
    # Two distinct pictures per set, and the file's other picture, instead of two per row.
    assert sum(calls) == 7
    assert [r["pair_id"] for r in rows] == [pairs.row(i)["pair_id"] for i in range(len(pairs))]
    for index, scored in enumerate(rows):
        item = pairs[index]
        alone = judge.score([item["winner"]], [item["loser"]], [item["query"]], both_orders=True)
        assert scored["p_forward"] == pytest.approx(float(alone["p_yes_renormalised"][0]), abs=1e-5)
        assert scored["p_reversed"] == pytest.approx(float(alone["p_yes_reversed_renormalised"][0]), abs=1e-5)
    reused = next(r for r in rows if r["pair_id"] == "reused-names")
    same_names = next(r for r in rows if r["candidate_set_id"] == 0 and r["dimension"] == "text_alignment")
    assert reused["p_forward"] != pytest.approx(same_names["p_forward"], abs=1e-6)
