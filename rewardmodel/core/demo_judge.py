"""The demo judge: a tiny Qwen2.5-VL built from a config, with a tokenizer trained on a few
sentences, for machines without the 7B weights (seed_demo makes it the default base model of
reward-model runs).

Nothing is downloaded: the config has the real model's layout (a windowed vision tower with full
attention in its last block, 2x2 patch merging into the language model, multimodal RoPE) at toy
widths, the tokenizer is a byte-level BPE with Qwen's special tokens, and both are written with
`save_pretrained`, so `Judge.from_pretrained(directory)` exercises the real loading code.

Its weights are random (seeded) until a reward-model run trains it. The platform's demo, the
tests and the benchmarks use it.
"""
from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]
PAD_TOKEN = "<|endoftext|>"

# The BPE learns whole words from these; the query template's wording and the seeded taxonomy's
# words are in them, and "Yes"/"No" open lines so that each becomes one token, as in Qwen's vocabulary.
SENTENCES = [
    "You compare two results of the same image editing task.",
    "Task: Image fill. Inpainting: generate the masked area from the prompt.",
    "Task: Image extend. Outpainting: the source sits on a larger canvas and the new border is generated, "
    "with or without a prompt.",
    "Task: Object removal. Remove the masked object and fill the hole with plausible background.",
    "Task: Text rendering. A fill whose prompt asks for words to be written in the masked area.",
    'Prompt: "a red cup on a wooden table"',
    'Prompt: "a sign that says OPEN in neon letters"',
    'Prompt: "high-definition, perfect composition"',
    'Prompt: "remove"',
    "Dimension: Text alignment. The generated content matches the prompt: the object, its attributes, "
    "its position, and any spelled text.",
    "Dimension: Consistency. The edit blends with its surroundings in colour, texture and light; "
    "no visible seam at the mask border.",
    "Dimension: Structure. Geometry and layout agree with the rest of the image: contours, perspective "
    "and scene logic are right.",
    "Dimension: Aesthetics. Overall visual appeal: composition, realism and image quality.",
    "Dimension: Removal quality. The object is fully gone, the hole is filled cleanly, and nothing new "
    "appears in its place.",
    "Dimension: Text rendering. The requested words are spelled exactly, legible, and drawn in a style "
    "that fits the scene.",
    "Judge only this dimension. Is the first image better than the second image on aesthetics? "
    "Answer Yes or No.",
    "You are a helpful assistant.",
    "Yes", "No", "Yes.", "No.", "Yes, the first one.", "No, the second one.",
    "user", "assistant", "system",
]

# Qwen2-VL's chat template, reduced to what a judge query uses: a system turn, images as one
# placeholder each (the judge expands it to the image's token count), text, generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TEXT_HIDDEN = 64
TEXT_HEADS = 4


def build_tokenizer(chat_template: bool = True):
    """A byte-level BPE (every string encodes) with Qwen's special tokens, as PreTrainedTokenizerFast."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token=PAD_TOKEN,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE if chat_template else None,
        model_max_length=32768,
    )


def tiny_config(tokenizer, architecture: str = "qwen2_5_vl", **vision_overrides):
    """Qwen2.5-VL (or Qwen2-VL) layout at toy widths; token ids taken from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    head_dim = TEXT_HIDDEN // TEXT_HEADS
    token_id = tokenizer.convert_tokens_to_ids
    if architecture == "qwen2_5_vl":
        config_class = Qwen2_5_VLConfig
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            # 56 px windows = 2x2 merged tokens: a 56x56 image is one window, larger ones are cut.
            window_size=56, fullatt_block_indexes=[1], out_hidden_size=TEXT_HIDDEN,
        )
    elif architecture == "qwen2_vl":
        config_class = Qwen2VLConfig
        vision = dict(
            depth=2, embed_dim=32, hidden_size=TEXT_HIDDEN, mlp_ratio=2, num_heads=2, in_channels=3,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        )
    else:
        raise ValueError(f"unknown architecture {architecture!r}")
    vision.update(vision_overrides)
    vocab_size = -(-len(tokenizer) // 64) * 64
    text = dict(
        vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=TEXT_HEADS, num_key_value_heads=2, max_position_embeddings=4096,
        # mrope sections (temporal, height, width) split the head's head_dim/2 rotary frequencies.
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                         "mrope_section": [2, 3, head_dim // 2 - 5]},
        bos_token_id=token_id("<|endoftext|>"), eos_token_id=token_id("<|im_end|>"),
        pad_token_id=token_id(PAD_TOKEN),
    )
    return config_class(
        text_config=text, vision_config=vision,
        image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def save_tiny_qwen(directory, *, seed: int = 0, chat_template: bool = True, architecture: str = "qwen2_5_vl") -> Path:
    """Write a tiny random Qwen2.5-VL model and its tokenizer to `directory`; returns the path.
    chat_template=False leaves the tokenizer without a chat template (the judge's fixed format);
    architecture="qwen2_vl" writes a Qwen2-VL model instead."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=chat_template)
    config = tiny_config(tokenizer, architecture)
    model_class = (
        Qwen2_5_VLForConditionalGeneration if architecture == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    )
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
