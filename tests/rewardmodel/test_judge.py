"""The judge, on a tiny random Qwen2.5-VL written to disk and loaded back through the real code."""
import json

import pytest
import torch

from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.judge import Judge
from rewardmodel.core.preprocessing import VisionGeometry
from rewardmodel.core.query import TEMPLATE_VERSION

QUERY = "Is the first image better than the second image on aesthetics? Answer Yes or No."
LONG_QUERY = ("Task: Image fill. Prompt: \"a red cup on a wooden table\". Is the first image better than the "
              "second image on text alignment? Answer Yes or No.")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), seed=0)


@pytest.fixture(scope="module")
def judge(tiny_dir):
    return Judge.from_pretrained(str(tiny_dir))


def images(*sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=generator) for h, w in sizes]


def mixed_batch(seed=0):
    """Four pairs whose images and queries differ in size, so rows are padded differently."""
    first = images((56, 56), (84, 112), (56, 56), (70, 60), seed=seed)
    second = images((56, 56), (56, 84), (112, 56), (56, 56), seed=seed + 1)
    queries = [QUERY, LONG_QUERY, QUERY, LONG_QUERY + " Look closely."]
    return first, second, queries


def test_loads_back_through_from_pretrained(judge, tiny_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    assert isinstance(judge.model, Qwen2_5_VLForConditionalGeneration)
    assert next(judge.model.parameters()).dtype == torch.float32  # "auto" on a CPU
    assert judge.geometry == VisionGeometry(patch_size=14, merge_size=2, temporal_patch_size=2)
    assert judge.tokenizer.convert_ids_to_tokens([judge.yes_token_id, judge.no_token_id]) == ["Yes", "No"]
    assert judge.template_version == TEMPLATE_VERSION
    assert judge.use_chat_template and judge.base_model == str(tiny_dir)


def test_chat_text_holds_one_image_token_per_merged_patch(judge):
    # 56x84 -> a 4x6 patch grid -> 6 tokens after 2x2 merging; 112x112 -> 16 tokens.
    text = judge.chat_text(QUERY, [6, 16])
    assert text.count("<|image_pad|>") == 22
    assert "<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|><|vision_start|>" in text
    assert text.endswith(QUERY + "<|im_end|>\n<|im_start|>assistant\n")
    yes, no = judge.answer_logprobs(images((56, 84)), images((112, 112)), [QUERY])
    assert yes.shape == no.shape == (1,)


def test_score_gives_probabilities_and_their_renormalisation(judge):
    first, second, queries = mixed_batch()
    scores = judge.score(first, second, queries)
    assert set(scores) == {"p_yes", "p_yes_renormalised"}
    for value in scores.values():
        assert value.shape == (4,) and value.dtype == torch.float32
        assert ((value > 0) & (value < 1)).all()
    with torch.no_grad():
        yes, no = judge.answer_logprobs(first, second, queries)
    p_yes, p_no = yes.exp(), no.exp()
    assert (p_yes + p_no <= 1).all()
    torch.testing.assert_close(scores["p_yes"], p_yes)
    torch.testing.assert_close(scores["p_yes_renormalised"], p_yes / (p_yes + p_no))
    torch.testing.assert_close(1 - scores["p_yes_renormalised"], p_no / (p_yes + p_no))


def test_p_yes_is_the_next_token_probability_of_the_word_yes(judge):
    """Read independently of the judge's own reading: the model's generate() for one new token on
    the same prompt, its raw logits, and the id the tokenizer gives the word "Yes". A judge that
    swapped Yes and No, or read the answer one position early, gives other numbers."""
    from rewardmodel.core.preprocessing import preprocess

    first, second = images((56, 56), (56, 84), seed=5)
    pixel_values, grid = preprocess([first, second], judge.geometry)
    image_tokens = (grid.prod(-1) // judge.geometry.merge_size**2).tolist()
    encoded = judge.tokenizer(judge.chat_text(QUERY, image_tokens), return_tensors="pt")
    extra = {"mm_token_type_ids": (encoded["input_ids"] == judge.image_token_id).int()} \
        if judge._pass_token_types else {}
    with torch.no_grad():
        generated = judge.model.generate(**encoded, **extra, pixel_values=pixel_values, image_grid_thw=grid,
                                         max_new_tokens=1, do_sample=False, output_logits=True,
                                         return_dict_in_generate=True)
    probabilities = generated.logits[0][0].float().softmax(-1)
    [yes_id] = judge.tokenizer.encode("Yes", add_special_tokens=False)
    [no_id] = judge.tokenizer.encode("No", add_special_tokens=False)
    scores = judge.score([first], [second], [QUERY])
    assert float(scores["p_yes"][0]) == pytest.approx(float(probabilities[yes_id]), rel=1e-4)
    p_yes, p_no = float(probabilities[yes_id]), float(probabilities[no_id])
    assert float(scores["p_yes_renormalised"][0]) == pytest.approx(p_yes / (p_yes + p_no), rel=1e-4)
    assert abs(p_yes - p_no) > 1e-4 * (p_yes + p_no)  # the case tells a swap of Yes and No


def test_both_orders_in_one_batch_equal_separate_calls(judge):
    first, second, queries = mixed_batch(seed=3)
    both = judge.score(first, second, queries, both_orders=True, batch_size=3)
    forward = judge.score(first, second, queries)
    reversed_ = judge.score(second, first, queries)
    assert set(both) == {"p_yes", "p_yes_renormalised", "p_yes_reversed", "p_yes_reversed_renormalised"}
    tolerance = dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both["p_yes"], forward["p_yes"], **tolerance)
    torch.testing.assert_close(both["p_yes_renormalised"], forward["p_yes_renormalised"], **tolerance)
    torch.testing.assert_close(both["p_yes_reversed"], reversed_["p_yes"], **tolerance)
    torch.testing.assert_close(both["p_yes_reversed_renormalised"], reversed_["p_yes_renormalised"], **tolerance)


def test_a_batch_scores_like_its_pairs_one_by_one(judge):
    first, second, queries = mixed_batch(seed=5)
    batched = judge.score(first, second, queries)["p_yes_renormalised"]
    single = torch.cat([judge.score([a], [b], [q])["p_yes_renormalised"] for a, b, q in zip(first, second, queries)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)


def test_the_order_of_the_images_matters(judge):
    first, second, queries = mixed_batch(seed=7)
    scores = judge.score(first, second, queries, both_orders=True)
    assert not torch.allclose(scores["p_yes"], scores["p_yes_reversed"])


def test_answer_logprobs_reach_weights_and_pixels(judge):
    first, second, queries = mixed_batch(seed=9)
    first = [image.clone().requires_grad_(True) for image in first]
    judge.zero_grad(set_to_none=True)
    yes, no = judge.answer_logprobs(first, second, queries)
    assert yes.requires_grad and no.requires_grad
    (-(yes.mean() + no.mean()) / 2).backward()
    for image in first:
        assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    grads = {name: p.grad for name, p in judge.model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    vision = [g for name, g in grads.items() if ".visual." in f".{name}" and g is not None]
    language = [g for name, g in grads.items() if "language_model" in name and g is not None]
    assert vision and any(g.abs().sum() > 0 for g in vision)
    assert language and any(g.abs().sum() > 0 for g in language)
    assert grads["lm_head.weight"].abs().sum() > 0
    judge.zero_grad(set_to_none=True)


def test_save_and_load_round_trip(judge, tmp_path):
    first, second, queries = mixed_batch(seed=11)
    before = judge.score(first, second, queries)
    judge.save_pretrained(tmp_path / "judge")
    info = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert info["yes_token"] == "Yes" and info["no_token"] == "No"
    assert info["template_version"] == TEMPLATE_VERSION
    assert VisionGeometry.from_dict(info["geometry"]) == judge.geometry
    assert info["adapter"] is False
    loaded = Judge.from_pretrained(str(tmp_path / "judge"))
    after = loaded.score(first, second, queries)
    torch.testing.assert_close(after["p_yes"], before["p_yes"])


def perturb_lora(judge, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in judge.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_lora_add_save_load_round_trip(tiny_dir, tmp_path):
    first, second, queries = mixed_batch(seed=13)
    judge = Judge.from_pretrained(str(tiny_dir))
    base = judge.score(first, second, queries)["p_yes"]
    judge.add_lora(rank=4, alpha=8)
    assert judge.has_adapter
    trainable = [name for name, p in judge.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and "language_model" in name for name in trainable)
    assert not any("visual" in name for name in trainable)
    torch.testing.assert_close(judge.score(first, second, queries)["p_yes"], base)  # B starts at zero
    perturb_lora(judge)
    tuned = judge.score(first, second, queries)
    assert not torch.allclose(tuned["p_yes"], base)

    judge.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    info = json.loads((tmp_path / "adapter" / "judge.json").read_text())
    assert info["adapter"] is True and info["base_model"] == str(tiny_dir)

    for loaded in (Judge.from_pretrained(str(tmp_path / "adapter")),
                   Judge.from_pretrained(str(tiny_dir), adapter=str(tmp_path / "adapter"))):
        assert loaded.has_adapter
        assert not any(p.requires_grad for p in loaded.model.parameters())
        torch.testing.assert_close(loaded.score(first, second, queries)["p_yes"], tuned["p_yes"])

    trainable_again = Judge.from_pretrained(str(tmp_path / "adapter"), trainable_adapter=True)
    assert any(p.requires_grad for p in trainable_again.model.parameters())

    judge.save_pretrained(tmp_path / "merged", merged=True)
    assert not judge.has_adapter
    merged = Judge.from_pretrained(str(tmp_path / "merged"))
    assert not merged.has_adapter
    assert json.loads((tmp_path / "merged" / "judge.json").read_text())["adapter"] is False
    torch.testing.assert_close(merged.score(first, second, queries)["p_yes"], tuned["p_yes"], rtol=1e-4, atol=1e-7)


def test_a_lora_step_moves_the_reward(tiny_dir):
    judge = Judge.from_pretrained(str(tiny_dir), gradient_checkpointing=True).add_lora(rank=4)
    judge.train()
    first, second, queries = mixed_batch(seed=15)
    before = judge.score(first, second, queries)["p_yes"]
    optimizer = torch.optim.SGD([p for p in judge.parameters() if p.requires_grad], lr=1.0)
    for _ in range(3):
        yes, _ = judge.answer_logprobs(first, second, queries)
        (-yes.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert (judge.score(first, second, queries)["p_yes"] > before).all()


def test_answer_words_must_be_single_tokens(tiny_dir, judge):
    with pytest.raises(ValueError, match=r"yes_token 'Affirmative' is not a single token"):
        Judge.from_pretrained(str(tiny_dir), yes_token="Affirmative")
    with pytest.raises(ValueError, match=r"no_token 'No way' is not a single token"):
        Judge(judge.model, judge.tokenizer, judge.geometry, no_token="No way")
    with pytest.raises(ValueError, match="same token"):
        Judge(judge.model, judge.tokenizer, judge.geometry, yes_token="Yes", no_token="Yes")


def test_without_a_chat_template_the_fixed_qwen_format_is_used(tmp_path):
    directory = save_tiny_qwen(tmp_path / "plain", chat_template=False)
    judge = Judge.from_pretrained(str(directory))
    assert not judge.use_chat_template
    text = judge.chat_text("Q?", [4, 6])
    assert text == ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|><|vision_start|>"
                    + "<|image_pad|>" * 6 + "<|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n")
    first, second, queries = mixed_batch()
    scores = judge.score(first, second, queries, both_orders=True)
    assert ((scores["p_yes"] > 0) & (scores["p_yes"] < 1)).all()


def test_a_qwen2_vl_model_loads_and_scores(tmp_path):
    from transformers import Qwen2VLForConditionalGeneration

    judge = Judge.from_pretrained(str(save_tiny_qwen(tmp_path / "qwen2", architecture="qwen2_vl")))
    assert isinstance(judge.model, Qwen2VLForConditionalGeneration)
    first, second, queries = mixed_batch()
    scores = judge.score(first, second, queries)
    assert ((scores["p_yes_renormalised"] > 0) & (scores["p_yes_renormalised"] < 1)).all()


def test_max_pixels_caps_the_image_tokens(tiny_dir):
    judge = Judge.from_pretrained(str(tiny_dir), max_pixels=56 * 56, dtype="float32", device="cpu")
    assert judge.geometry.max_pixels == 56 * 56
    yes, _ = judge.answer_logprobs(images((224, 224)), images((112, 112)), [QUERY])
    assert yes.shape == (1,)
    assert judge.chat_text(QUERY, [4, 4]).count("<|image_pad|>") == 8


def test_the_query_of_a_judge_checks_its_template_version(judge):
    taxonomy = {"tasks": {"t": {"name": "T", "description": "", "default_prompt": "", "prompt_mode": "required"}},
                "dimensions": {"d": {"name": "D", "definition": "", "uses_prompt": False}}}
    assert judge.query(taxonomy, "t", "d", "").endswith("Answer Yes or No.")
    old = Judge(judge.model, judge.tokenizer, judge.geometry, template_version=TEMPLATE_VERSION + 1)
    with pytest.raises(ValueError, match="template version"):
        old.query(taxonomy, "t", "d", "")


def test_unknown_dtype_and_foreign_models_are_refused(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown dtype"):
        Judge.from_pretrained(str(tiny_dir), dtype="int3")
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="Qwen2-VL family"):
        Judge.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("processor_config", [
    {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 256},
    {"size": {"shortest_edge": 28 * 28 * 4, "longest_edge": 28 * 28 * 256}},
])
def test_resize_bounds_come_from_the_checkpoints_processor_config(tmp_path, processor_config):
    directory = save_tiny_qwen(tmp_path / "with-processor")
    (directory / "preprocessor_config.json").write_text(json.dumps(
        {**processor_config, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "patch_size": 99}))
    judge = Judge.from_pretrained(str(directory))
    assert (judge.geometry.min_pixels, judge.geometry.max_pixels) == (28 * 28 * 4, 28 * 28 * 256)
    assert judge.geometry.image_mean == (0.5, 0.5, 0.5)
    assert judge.geometry.patch_size == 14  # the model's config decides the patch layout
    assert Judge.from_pretrained(str(directory), max_pixels=56 * 56).geometry.max_pixels == 56 * 56
