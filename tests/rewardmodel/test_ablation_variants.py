"""The plumbing of judge ablations: the query wordings as versioned data (version 1 exactly the
method's text of before), the query without the prompt, the marked source image placed before the
two candidates in the judge's input, and the explicit override that lets an ablation ask a judge in
a wording it was not trained on."""
import pytest
import torch

from inputs import taxonomy_seed
from rewardmodel.core.ablation import Variant, VariantError, mark_mask, parse_variants, score_variant
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.judge import Judge
from rewardmodel.core.pairs import PreferencePairs
from rewardmodel.core.query import TEMPLATE_VERSION, TEMPLATES, build_query
from tests.rewardmodel import synthetic_pairs
from tests.rewardmodel.synthetic_pairs import row, save_image, texture, write_dataset
from tests.rewardmodel.test_query import seeded_taxonomy

PROMPT = "a sign that says OPEN in neon letters"


# A frozen copy of build_query as it was before the wordings became versioned data: version 1 must
# give these bytes for every task, dimension and prompt, or every judge trained so far is asked
# something it never learned.
def build_query_before(taxonomy: dict, task: str, dimension: str, prompt: str) -> str:
    from inputs.core import taxonomy as rules

    task_spec, dimension_spec = taxonomy["tasks"][task], taxonomy["dimensions"][dimension]

    def sentence(text):
        text = " ".join((text or "").split())
        return text + "." if text and text[-1] not in ".!?" else text

    name = dimension_spec["name"].strip()
    lines = ["You compare two results of the same image editing task.",
             f"Task: {task_spec['name'].strip()}. {sentence(task_spec.get('description'))}"]
    if dimension_spec.get("uses_prompt"):
        lines.append(f'Prompt: "{rules.entry_effective_prompt(task_spec, prompt)}"')
    lines.append(f"Dimension: {name}. {sentence(dimension_spec.get('definition'))}")
    lines.append(f"Judge only this dimension. Is the first image better than the second image on {name.lower()}? "
                 "Answer Yes or No.")
    return "\n".join(line.strip() for line in lines)


def every_query():
    """Every seeded (task, dimension) with a prompt and without (where the task can go without)."""
    taxonomy = seeded_taxonomy()
    for spec in taxonomy_seed.TASKS:
        for dimension, _ in spec["dimensions"]:
            for prompt in (PROMPT, "  "):
                if taxonomy["dimensions"][dimension]["uses_prompt"] and not taxonomy["tasks"][spec["slug"]][
                        "default_prompt"] and not prompt.strip():
                    continue
                yield taxonomy, spec["slug"], dimension, prompt


def test_version_1_is_the_text_of_before_byte_for_byte():
    assert TEMPLATE_VERSION == 1
    assert len(list(every_query())) > 20
    for taxonomy, task, dimension, prompt in every_query():
        expected = build_query_before(taxonomy, task, dimension, prompt)
        assert build_query(taxonomy, task, dimension, prompt) == expected
        assert build_query(taxonomy, task, dimension, prompt, version=1) == expected
        assert build_query(taxonomy, task, dimension, prompt, version=1).encode() == expected.encode()


def test_version_2_words_the_same_facts_differently():
    assert set(TEMPLATES) >= {1, 2}
    for taxonomy, task, dimension, prompt in every_query():
        v1 = build_query(taxonomy, task, dimension, prompt)
        v2 = build_query(taxonomy, task, dimension, prompt, version=2)
        assert v1 != v2
        assert not set(v1.splitlines()) & set(v2.splitlines())  # every line is reworded
        task_spec, dimension_spec = taxonomy["tasks"][task], taxonomy["dimensions"][dimension]
        for fact in (task_spec["name"], task_spec["description"], dimension_spec["name"],
                     dimension_spec["definition"]):
            assert fact in v2
        assert (f'"{PROMPT}"' in v2) == (dimension_spec["uses_prompt"] and prompt == PROMPT)
        assert v2.endswith("Reply Yes or No.")
    with pytest.raises(ValueError, match="unknown query template version 7; the versions are 1, 2"):
        build_query(seeded_taxonomy(), "image_fill", "aesthetics", "", version=7)


@pytest.mark.parametrize("version", sorted(TEMPLATES))
def test_without_the_prompt_the_query_lacks_the_prompt_line(version):
    taxonomy = seeded_taxonomy()
    with_prompt = build_query(taxonomy, "image_fill", "text_alignment", PROMPT, version=version)
    without = build_query(taxonomy, "image_fill", "text_alignment", PROMPT, version=version, include_prompt=False)
    prompt_line = next(line for line in with_prompt.splitlines() if PROMPT in line)
    assert without.splitlines() == [line for line in with_prompt.splitlines() if line != prompt_line]
    assert PROMPT not in without
    # No prompt is needed then, even where the dimension would quote it.
    assert "Prompt" not in build_query(taxonomy, "image_fill", "text_alignment", "", include_prompt=False)
    # A dimension that never quotes the prompt is asked the same either way.
    assert build_query(taxonomy, "image_fill", "aesthetics", PROMPT, version=version, include_prompt=False) == \
        build_query(taxonomy, "image_fill", "aesthetics", PROMPT, version=version)


@pytest.mark.parametrize("version", sorted(TEMPLATES))
def test_with_the_source_the_query_says_which_image_is_which(version):
    taxonomy = seeded_taxonomy()
    plain = build_query(taxonomy, "image_fill", "aesthetics", PROMPT, version=version).splitlines()
    marked = build_query(taxonomy, "image_fill", "aesthetics", PROMPT, version=version, source=True).splitlines()
    wording = TEMPLATES[version]
    assert marked[1] == wording.source_line and "tinted red" in marked[1] and "third" in marked[1]
    assert marked[0] == plain[0] and marked[2:-1] == plain[1:-1]
    assert marked[-1] != plain[-1] and "first image" not in marked[-1] and "Yes or No" in marked[-1]


def test_variant_names_parse_and_bad_ones_say_how_to_write_them():
    assert Variant.parse("v1") == Variant(1, True, False)
    assert Variant.parse("v2+source+no-prompt") == Variant(2, False, True)
    assert Variant.parse(" V2 + no-prompt ").name == "v2+no-prompt"
    assert [v.name for v in parse_variants(["v1", "v1+source", "v1", "v2+no-prompt+source"])] == \
        ["v1", "v1+source", "v2+no-prompt+source"]
    assert parse_variants([]) == [Variant(TEMPLATE_VERSION, True, False)]
    for bad in ("v1+mask", "one", "v1+source+source", "+source"):
        with pytest.raises(VariantError, match="write v<template>"):
            Variant.parse(bad)
    with pytest.raises(VariantError, match="no query template version 9"):
        Variant.parse("v9")


def test_the_marked_source_tints_the_masked_area_red():
    source = torch.full((3, 4, 6), 0.4)
    source[1] = 0.2
    mask = torch.zeros(3, 2, 3)  # half the size: resized by nearest neighbour
    mask[:, 0, 1] = 1.0  # -> rows 0-1, columns 2-3 of the source
    marked = mark_mask(source, mask)
    inside, outside = marked[:, 0:2, 2:4], torch.cat([marked[:, :, :2], marked[:, 2:, 2:4]], dim=1)
    assert torch.allclose(inside[0], torch.full((2, 2), 0.4 * 0.5 + 0.5))
    assert torch.allclose(inside[1], torch.full((2, 2), 0.2 * 0.5))
    assert torch.allclose(inside[2], torch.full((2, 2), 0.4 * 0.5))
    assert torch.equal(outside[0], torch.full_like(outside[0], 0.4))
    assert torch.equal(marked[:, :, 4:], source[:, :, 4:])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), seed=0)


@pytest.fixture(scope="module")
def judge(tiny_dir):
    return Judge.from_pretrained(str(tiny_dir))


def images(*sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=generator) for h, w in sizes]


def image_runs(input_ids: torch.Tensor, image_token_id: int) -> list[int]:
    """Lengths of the runs of image tokens in one row, in order."""
    runs, current = [], 0
    for token in input_ids.tolist():
        if token == image_token_id:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


@pytest.mark.parametrize("chat_template", [True, False])
def test_the_source_is_a_third_image_placed_before_the_two_candidates(judge, tiny_dir, tmp_path, chat_template):
    if not chat_template:
        judge = Judge.from_pretrained(str(save_tiny_qwen(tmp_path / "plain", seed=0, chat_template=False)))
    # 56x56 -> 4 tokens, 56x84 -> 6, 112x112 -> 16 (2x2 merging of 14 px patches).
    context, first, second = images((56, 56)), images((56, 84), seed=1), images((112, 112), seed=2)
    two = judge.model_inputs(first, second, ["q"])
    three = judge.model_inputs(first, second, ["q"], context=context)
    assert two["image_grid_thw"].tolist() == [[1, 4, 6], [1, 8, 8]]
    assert three["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 6], [1, 8, 8]]
    assert image_runs(two["input_ids"][0], judge.image_token_id) == [6, 16]
    assert image_runs(three["input_ids"][0], judge.image_token_id) == [4, 6, 16]
    assert three["pixel_values"].shape[0] == two["pixel_values"].shape[0] + 16  # the source's 16 patches first
    torch.testing.assert_close(three["pixel_values"][16:], two["pixel_values"])
    text = judge.chat_text("q", [4, 6, 16])
    assert text.count("<|vision_start|>") == 3 and text.count("<|image_pad|>") == 26
    assert text.endswith("q<|im_end|>\n<|im_start|>assistant\n")


def test_the_judge_reads_the_source_and_the_default_stays_two_images(judge):
    first, second = images((56, 56), (56, 56), seed=3), images((56, 56), (56, 56), seed=4)
    queries = ["q one", "q two"]
    with torch.no_grad():
        plain = judge.answer_logprobs(first, second, queries)
        again = judge.answer_logprobs(first, second, queries, context=None)
        source_a = judge.answer_logprobs(first, second, queries, context=images((56, 56), (56, 56), seed=5))
        source_b = judge.answer_logprobs(first, second, queries, context=images((56, 56), (56, 56), seed=6))
    torch.testing.assert_close(plain, again)
    assert not torch.allclose(plain[0], source_a[0]) and not torch.allclose(source_a[0], source_b[0])
    # Both orders in one call: the candidates swap, the source stays in front.
    context = images((56, 56), (56, 56), seed=5)
    scores = judge.score(first, second, queries, both_orders=True, context=context)
    with torch.no_grad():
        yes, no = judge.answer_logprobs(second, first, queries, context=context)
    torch.testing.assert_close(scores["p_yes_reversed_renormalised"], torch.sigmoid(yes - no))
    with pytest.raises(ValueError, match="1 context images for 2 queries"):
        judge.answer_logprobs(first, second, queries, context=context[:1])


def test_another_wording_is_refused_unless_an_ablation_asks_for_it(judge):
    taxonomy = seeded_taxonomy()
    assert judge.template_version == 1
    assert judge.query(taxonomy, "image_fill", "aesthetics", "") == \
        build_query(taxonomy, "image_fill", "aesthetics", "")
    with pytest.raises(ValueError, match="trained with query template version 1, not 2"):
        judge.query(taxonomy, "image_fill", "aesthetics", "", version=2)
    assert judge.query(taxonomy, "image_fill", "aesthetics", "", version=2, allow_other_version=True) == \
        build_query(taxonomy, "image_fill", "aesthetics", "", version=2)
    trained_on_2 = Judge(judge.model, judge.tokenizer, judge.geometry, template_version=2)
    with pytest.raises(ValueError, match="the code has version 1"):
        trained_on_2.query(taxonomy, "image_fill", "aesthetics", "")
    assert trained_on_2.query(taxonomy, "image_fill", "aesthetics", "", version=2).endswith("Reply Yes or No.")


def source_dataset(folder, with_source=True):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for index in range(5):
        winner = save_image(texture(rng, 56, 0.7), folder / "images" / f"{index}-w.png", False)
        loser = save_image(texture(rng, 56, 0.3), folder / "images" / f"{index}-l.png", False)
        source = save_image(texture(rng, 56, 0.5), folder / "images" / f"{index}-s.png", False)
        mask_pixels = np.zeros((56, 56, 3), dtype=np.uint8)
        mask_pixels[14:42, 14:42] = 255
        mask = save_image(mask_pixels, folder / "images" / f"{index}-m.png", False)
        rows.append(row(split="test", input_id=index, task="image_fill",
                        dimension=("text_alignment", "aesthetics")[index % 2], prompt="a red cup on a wooden table",
                        candidate_set_id=index, winner_image=winner, loser_image=loser,
                        source=source if with_source else None, mask=mask if with_source else None))
    return write_dataset(folder, rows)


def test_a_variant_is_scored_with_its_own_query_and_images(judge, tmp_path):
    pairs = PreferencePairs(source_dataset(tmp_path / "data"), "test")
    done = []
    method = score_variant(judge, pairs, Variant(), batch_size=2, on_batch=done.append)
    assert done == [2, 4, 5] and len(method) == 5
    # The method's variant is the method: the queries the dataset reader builds, two images.
    items = [pairs[i] for i in range(5)]
    direct = judge.score([i["winner"] for i in items], [i["loser"] for i in items], [i["query"] for i in items],
                         both_orders=True)
    assert [p for i in items for p in method[i["pair_id"]]] == pytest.approx(
        [p for pair in zip(direct["p_yes_renormalised"].tolist(), direct["p_yes_reversed_renormalised"].tolist())
         for p in pair], abs=1e-5)
    no_prompt = score_variant(judge, pairs, Variant(prompt=False))
    for index, item in enumerate(items):  # only text alignment quotes the prompt: only its rows change
        same = item["dimension"] == "aesthetics"
        assert (no_prompt[item["pair_id"]] == pytest.approx(method[item["pair_id"]], abs=1e-6)) == same, index
    source = score_variant(judge, pairs, Variant(source=True))
    reworded = score_variant(judge, pairs, Variant(template=2))
    for item in items:
        assert source[item["pair_id"]] != pytest.approx(method[item["pair_id"]], abs=1e-6)
        assert reworded[item["pair_id"]] != pytest.approx(method[item["pair_id"]], abs=1e-6)
    bare = PreferencePairs(source_dataset(tmp_path / "bare", with_source=False), "test")
    with pytest.raises(ValueError, match=r"no source image or mask; the \+source variants"):
        score_variant(judge, bare, Variant(source=True))
    assert synthetic_pairs.taxonomy()["dimensions"]["text_alignment"]["uses_prompt"]
