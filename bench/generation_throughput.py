"""Candidates per second: FluxFillBackend (one batched call) vs diffusers' FluxFillPipeline (one call
per candidate), N candidates of one input with the same settings and seeds.

    .venv/bin/python bench/generation_throughput.py                      # tiny model, CPU
    .venv/bin/python bench/generation_throughput.py --size 256x256
    .venv/bin/python bench/generation_throughput.py --full-size          # FLUX.1 Fill layout, CUDA, bf16
    .venv/bin/python bench/generation_throughput.py --full-size --dry-run  # the same path, tiny, on CPU

The tiny model is built from configs (generation/core/demo_flux.py), saved to a temporary
directory and loaded through FluxFillBackend.from_config. --full-size builds FLUX.1-Fill-dev's
transformer (19 double + 38 single blocks, 3072 wide, 384 input channels) and VAE with random
weights directly on the GPU in bfloat16 (about 24 GB), at 1024x1024 unless --size says otherwise.
Prints figures; never judges them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import timed_alternately  # noqa: E402
from generation.core.backends.base import CandidateSettings, GenerationRequest  # noqa: E402
from generation.core.backends.flux_fill import FluxFillBackend, FluxFillConfig  # noqa: E402
from generation.core.demo_flux import build_pipeline, save_tiny_flux_fill  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def make_input(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1), np.full_like(x, 128.0)], axis=-1)
    image = Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8), "RGB")
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cpu; cuda with --full-size)")
    parser.add_argument("--size", default=None, help="WxH canvas (default 64x64; 1024x1024 with --full-size)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 4; 28 with --full-size)")
    parser.add_argument("--candidates", type=int, default=4, help="N candidates per input")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 10; 2 with --full-size)")
    parser.add_argument("--guidance", type=float, default=30.0)
    parser.add_argument("--full-size", action="store_true", help="FLUX.1 Fill transformer + VAE, random bf16 weights")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --full-size: the same path (weights built in place, no loading) with the tiny "
                             "layout on the CPU, 64x64, 2 steps, 1 repetition")
    args = parser.parse_args()
    dry = args.full_size and args.dry_run
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    full = args.full_size and not dry
    device = torch.device(args.device or ("cuda" if full else "cpu"))
    width, height = parse_size(args.size or ("1024x1024" if full else "64x64"))
    steps = args.steps or (28 if full else 2 if dry else 4)
    repeats = args.repeats or (2 if full else 1 if dry else 10)
    seq = 512 if full else 32

    if args.full_size:
        if full and (device.type != "cuda" or not torch.cuda.is_available()):
            parser.error("--full-size needs a CUDA device (12B parameters in bfloat16; --dry-run runs the path tiny)")
        dtype = torch.bfloat16 if full else torch.float32
        pipeline = build_pipeline(full_size=full, device=device, dtype=dtype)
        pipeline.set_progress_bar_config(disable=True)
        backend = FluxFillBackend(pipeline, FluxFillConfig(base="(random weights)", device=str(device),
                                                           dtype="bfloat16" if full else "float32",
                                                           max_sequence_length=seq, max_batch=args.candidates))
        model = ("FLUX.1 Fill layout (11.9B transformer), random weights, bfloat16" if full
                 else "dry run: the full-size path with the tiny layout, float32")
    else:
        directory = save_tiny_flux_fill(Path(tempfile.mkdtemp(prefix="tiny-flux-fill-")))
        backend = FluxFillBackend.from_config({"base": str(directory), "device": str(device), "dtype": "float32",
                                               "max_sequence_length": seq, "max_batch": max(args.candidates, 1)})
        pipeline = backend.pipeline
        model = "tiny FLUX Fill (generation/core/demo_flux.py), float32"

    image, mask = make_input(width, height)
    prompt = "a red cup on a wooden table"
    seeds = list(range(args.candidates))
    requests = [
        GenerationRequest(image=image, mask=mask, prompt=prompt, task="fill",
                          settings=CandidateSettings(seed=seed, steps=steps, guidance=args.guidance))
        for seed in seeds
    ]

    def batched():
        return backend.generate(requests)

    def one_by_one():
        return [
            pipeline(prompt=prompt, image=image, mask_image=mask, height=height, width=width,
                     num_inference_steps=steps, guidance_scale=args.guidance, max_sequence_length=seq,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            for seed in seeds
        ]

    if device.type == "cuda":
        # Peak memory is measured on a separate pass per method (timing runs both alternately); the
        # pass also serves as the warm-up.
        peaks = {}
        for name, fn in (("batched", batched), ("one_by_one", one_by_one)):
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
    seconds, images = timed_alternately({"batched": batched, "one_by_one": one_by_one}, device, repeats,
                                warm_up=device.type != "cuda")
    labels = {"batched": "FluxFillBackend.generate, batched", "one_by_one": "FluxFillPipeline, one call per candidate"}

    print(f"model: {model}")
    print(
        f"device: {device}"
        + (
            f" ({torch.get_num_threads()} CPU threads)"
            if device.type == "cpu"
            else f" ({torch.cuda.get_device_name(device)})"
        )
    )
    print(f"input: {width}x{height}, N={args.candidates} candidates, steps={steps}, guidance={args.guidance}, "
          f"true_cfg=1, seeds {seeds[0]}..{seeds[-1]}; median of {repeats} alternating runs after a warm-up")
    for name, median in seconds.items():
        line = (
            f"{labels[name]:42s} {args.candidates / median:8.2f} candidates/s   {median / args.candidates:8.4f} "
            "s/candidate"
        )
        if device.type == "cuda":
            line += f"   peak GPU memory {peaks[name]:.1f} GiB"
        print(line)
    (ours, ours_images), (base, base_images) = ((seconds[k], images[k]) for k in ("batched", "one_by_one"))
    print(f"ratio (batched / one-by-one candidates per second): {base / ours:.2f}x")
    if width % 16 or height % 16:
        print(
            "(the pipeline resizes a canvas off the 16-pixel grid to a smaller one; the backend pads it: not the "
            "same work)"
        )
    else:
        difference = max(int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())
                         for a, b in zip(ours_images, base_images))
        print(f"largest pixel difference between the two methods' images (0-255): {difference}")


if __name__ == "__main__":
    main()
