"""The demo FLUX.1 Fill model: a tiny pipeline built from configs, with tokenizers trained on a few
sentences, for machines without the 12B weights (seed_demo registers it as the demo generator).

Nothing is downloaded: every component is made from a config with seeded random weights and saved
with `save_pretrained`, so the backend's real loading code reads it back. The shapes follow the
real FLUX.1-Fill-dev layout (VAE scale factor 8, packed 2x2 latents, a 256-channel packed mask),
only narrower, so padding and packing are exercised as they are on the 12B model.

Its weights are random (seeded), fast on a CPU. A random VAE decoder paints the same grey noise
whatever the latents (its group norms remove their level), so candidates would differ in nothing a
person or an oracle could prefer; `fit_vae_steps` fits the small VAE as an autoencoder of smooth
coloured textures first (seeded, on one thread: about 10 s for 300 steps), and its decodes of the
transformer's latents are then smooth colour fields whose brightness and colour vary from seed to
seed (the mean brightness under a mask spreads by about 0.05 between candidates, against 0.006
with the random VAE). The demo generator is built that way; the tests that do not look at the
pictures keep the random VAE. The full-size layout (`full_size=True`) measures speed and memory on
a GPU. Needs diffusers, transformers and tokenizers.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

SENTENCES = [
    "a red cup on a wooden table",
    "a cat sleeping on the sofa next to a window",
    "remove the person from the photo",
    "high-definition, perfect composition",
    "a sign that says OPEN in neon letters",
    "blurry, low quality, nsfw",
    "a mountain lake at sunrise with mist over the water",
    "the quick brown fox jumps over the lazy dog",
]

# VAE: four blocks give FLUX's scale factor 8; latents are packed in 2x2 patches, so canvases must
# be multiples of 16 pixels, as on the real model.
LATENT_CHANNELS = 4
VAE_BLOCKS = (8, 8, 8, 8)
VAE_SCALE_FACTOR = 2 ** (len(VAE_BLOCKS) - 1)
# Fill transformer input = packed noisy latents (C*4) + packed masked-image latents (C*4) + the
# mask folded from 8x8 pixels per latent cell into 64 channels, then packed 2x2 (64*4 = 256).
PACKED_LATENT_CHANNELS = LATENT_CHANNELS * 4
FILL_IN_CHANNELS = 2 * PACKED_LATENT_CHANNELS + VAE_SCALE_FACTOR * VAE_SCALE_FACTOR * 4
TEXT_DIM = 32  # T5 d_model = transformer joint_attention_dim; CLIP hidden = pooled_projection_dim


def tiny_transformer_config(**overrides) -> dict:
    config = dict(
        patch_size=1,
        in_channels=FILL_IN_CHANNELS,
        out_channels=PACKED_LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=TEXT_DIM,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
    )
    config.update(overrides)
    return config


def full_transformer_config() -> dict:
    """FLUX.1-Fill-dev's transformer: 19 double + 38 single blocks, 24 heads x 128 = 3072 hidden."""
    return dict(
        patch_size=1,
        in_channels=384,  # 64 latents + 64 masked-image latents + 256 mask
        out_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )


class _Building:
    """Create parameters directly on `device` in `dtype`: the full-size transformer is 12B
    parameters, 48 GB in float32 on the CPU before a cast could shrink it."""

    def __init__(self, device, dtype):
        self.device, self.dtype = torch.device(device), dtype

    def __enter__(self):
        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        self.device.__enter__()

    def __exit__(self, *exc):
        self.device.__exit__(*exc)
        torch.set_default_dtype(self.previous)


def build_transformer(seed: int = 0, full_size: bool = False, device="cpu", dtype=torch.float32):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    with _Building(device, dtype):
        return FluxTransformer2DModel(**(full_transformer_config() if full_size else tiny_transformer_config()))


def build_clip_tokenizer():
    """A byte-level BPE with CLIP's normalisation and word-end suffix, trained on SENTENCES.

    The merges are learnt here rather than by the tokenizers library's trainer, whose ties between
    equally frequent pairs fall as its hash maps iterate, differently in every process: the demo
    model's token ids, hence its text embeddings and every candidate, changed from one build to
    the next. Here a tie goes to the smallest pair."""
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    bos, eos, suffix = "<|startoftext|>", "<|endoftext|>", "</w>"
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    words = Counter(piece for sentence in SENTENCES
                    for piece, _ in splitter.pre_tokenize_str(normalizer.normalize_str(sentence)))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = [bos, eos, *alphabet, *(character + suffix for character in alphabet)]
    merges = bpe_merges({(*word[:-1], word[-1] + suffix): count for word, count in words.items()}, 64)
    vocab += ["".join(pair) for pair in merges]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, model_max_length=77)


def bpe_merges(words: dict[tuple[str, ...], int], count: int) -> list[tuple[str, str]]:
    """Up to `count` BPE merges learnt from words (tuples of symbols) and their frequencies: each
    time the most frequent adjacent pair, the smallest pair among equals, merged everywhere."""
    words = dict(words)
    merges = []
    while len(merges) < count:
        pairs = Counter()
        for word, frequency in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += frequency
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        words = {_merged(word, best): frequency for word, frequency in words.items()}
    return merges


def _merged(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    symbols, i = [], 0
    while i < len(word):
        if word[i:i + 2] == pair:
            symbols.append(pair[0] + pair[1])
            i += 2
        else:
            symbols.append(word[i])
            i += 1
    return tuple(symbols)


def build_t5_tokenizer():
    """A Unigram tokenizer with T5's special-token layout (<pad>=0, </s>=1, <unk>=2).

    Its pieces are SENTENCES' words (after "▁", the word start) and their characters, scored by
    log frequency, ties by piece: made here, not by the tokenizers library's Unigram trainer, which
    gives another vocabulary in every process (see build_clip_tokenizer)."""
    from transformers import T5TokenizerFast

    counts = Counter()
    for sentence in SENTENCES:
        for word in sentence.split():
            counts["▁" + word] += 1
            counts.update(word)
            counts["▁"] += 1
    total = sum(counts.values())
    pieces = sorted(((piece, math.log(n / total)) for piece, n in counts.items()), key=lambda e: (-e[1], e[0]))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)


def build_pipeline(seed: int = 0, full_size: bool = False, device="cpu", dtype=torch.float32):
    """A FluxFillPipeline with seeded random weights, its parameters made on `device` in `dtype`.

    full_size: FLUX.1-Fill-dev's transformer and VAE layout (12B parameters: needs a GPU); the text
    encoders stay one-layer models with the real output widths (T5 4096, CLIP pooled 768), since
    they run once per prompt and do not matter for denoising throughput.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_t5_tokenizer()
    clip_dim, t5_dim = (768, 4096) if full_size else (TEXT_DIM, TEXT_DIM)

    with _Building(device, dtype):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=clip_dim,
                intermediate_size=37,
                num_hidden_layers=1 if full_size else 2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=clip_dim,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        torch.manual_seed(seed + 1)
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer_2),
                d_model=t5_dim,
                d_kv=8,
                d_ff=37,
                num_layers=1 if full_size else 2,
                num_heads=4,
                relative_attention_num_buckets=8,
                pad_token_id=tokenizer_2.pad_token_id,
                eos_token_id=tokenizer_2.eos_token_id,
                decoder_start_token_id=tokenizer_2.pad_token_id,
            )
        )
        torch.manual_seed(seed + 2)
        if full_size:
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=16, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False,
            )
        else:
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=VAE_BLOCKS, layers_per_block=1,
                latent_channels=LATENT_CHANNELS, norm_num_groups=4, sample_size=32,
                scaling_factor=0.5, shift_factor=0.1, use_quant_conv=False, use_post_quant_conv=False,
            )
    transformer = build_transformer(seed + 3, full_size=full_size, device=device, dtype=dtype)
    # FLUX's scheduler: resolution-dependent shift of the sigmas (mu from calculate_shift).
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096,
        base_shift=0.5, max_shift=1.15,
    )
    return FluxFillPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )


def save_tiny_flux_fill(directory, seed: int = 0, fit_vae_steps: int = 0) -> Path:
    """Build the tiny pipeline (its VAE fitted for `fit_vae_steps`, see the module docstring) and
    save it as a diffusers repository; returns the directory."""
    directory = Path(directory)
    pipeline = build_pipeline(seed)
    if fit_vae_steps:
        fit_vae(pipeline.vae, fit_vae_steps, seed=seed)
    pipeline.save_pretrained(directory)
    return directory


def smooth_textures(count: int, size: int, generator) -> torch.Tensor:
    """(count, 3, size, size) in [0, 1]: 4x4 colour noise around a random colour, upsampled bicubically."""
    colour = torch.rand(count, 3, 1, 1, generator=generator) * 0.6
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 0.5 + colour
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def fit_vae(vae, steps: int, seed: int = 0, size: int = 32, batch_size: int = 16, learning_rate: float = 3e-3) -> None:
    """Fit the VAE as an autoencoder of smooth textures (reconstruction + a small KL term), in place.

    On one CPU thread: how a sum is split over threads changes its last bits, and 300 Adam steps
    grow those into another model, so the demo model would depend on the machine's core count."""
    generator = torch.Generator("cpu").manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    vae.train()
    try:
        for _ in range(steps):
            pixels = smooth_textures(batch_size, size, generator) * 2 - 1
            posterior = vae.encode(pixels).latent_dist
            decoded = vae.decode(posterior.sample(generator=generator)).sample
            loss = (decoded - pixels).pow(2).mean() + 1e-4 * posterior.kl().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
        vae.eval()


def save_tiny_transformer(directory, seed: int = 7, subfolder: bool = True) -> Path:
    """A replacement transformer (same shapes, other weights), saved the way OneReward checkpoints are:
    a repository with a "transformer" subfolder, or (subfolder=False) the model directory itself."""
    directory = Path(directory)
    build_transformer(seed).save_pretrained(directory / "transformer" if subfolder else directory)
    return directory


def save_tiny_lora(pipeline_dir, directory, seed: int = 11, rank: int = 4) -> Path:
    """A LoRA on the transformer's attention projections with non-zero B (so it changes the output),
    saved by FluxFillPipeline.save_lora_weights; returns the .safetensors file."""
    from diffusers import FluxFillPipeline, FluxTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer")
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    directory = Path(directory)
    FluxFillPipeline.save_lora_weights(
        directory, transformer_lora_layers=get_peft_model_state_dict(transformer), safe_serialization=True
    )
    return directory / "pytorch_lora_weights.safetensors"
