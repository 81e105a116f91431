"""OneReward RL: seconds per step and peak memory of `OneRewardTrainer.step()`.

    .venv/bin/python bench/rl_step.py                          # tiny models, CPU
    .venv/bin/python bench/rl_step.py --size 128 --rollout-steps 12 --batch 4 --steps 8
    .venv/bin/python bench/rl_step.py --speed --size 128 --batch 4   # micro-batches, compile, judge attention
    .venv/bin/python bench/rl_step.py --full-size              # FLUX.1 Fill + Qwen2.5-VL-7B layouts, CUDA, bf16
    .venv/bin/python bench/rl_step.py --full-size --dry-run    # the same code path with tiny models on CPU

Tiny (tests/generation/tiny_flux.py and tests/rewardmodel/tiny_qwen.py, saved and loaded through the
real loading code): each variant runs in its own process, so that its peak resident memory (RSS,
`getrusage`) is its own; the first step is a warm-up and left out of the median. Variants, the
first being the baseline of the ratios:
    Algorithm 1, LoRA, no gradient checkpointing
    Algorithm 1, LoRA, gradient checkpointing (transformer, VAE decoder, judge)
    Algorithm 2, LoRA, gradient checkpointing
    Algorithm 1, full fine-tuning, gradient checkpointing
Python's tracemalloc does not see torch's allocations, hence RSS: "peak" is the process's peak
(models included), "step growth" the peak minus the resident size before the first step.

--full-size builds FLUX.1-Fill-dev's transformer (12B) and VAE layouts and Qwen2.5-VL-7B's layout
with random weights in bf16 directly on the GPU (text encoders are one-layer models of the real
widths: they run once per prompt), LoRA rank 32 with gradient checkpointing, batch 1 (one
condition, image fill: four dimensions judged, true CFG 4 with "nsfw", --rollout-steps steps) at
512x512 and 1024x1024, Algorithm 1 and Algorithm 2, and prints seconds per step and
torch.cuda.max_memory_allocated. An out-of-memory step is reported, not fatal.
Prints figures; never judges them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "alg1-lora": ("Algorithm 1, LoRA, no checkpointing", dict(algorithm="fixed", gradient_checkpointing=False)),
    "alg1-lora-ckpt": ("Algorithm 1, LoRA, checkpointing", dict(algorithm="fixed", gradient_checkpointing=True)),
    "alg2-lora-ckpt": ("Algorithm 2, LoRA, checkpointing", dict(algorithm="dynamic", gradient_checkpointing=True)),
    "alg1-full-ckpt": ("Algorithm 1, full fine-tune, checkpointing",
                       dict(algorithm="fixed", gradient_checkpointing=True, lora_rank=None)),
}
# --speed: micro-batches, torch.compile and the judge's attention, Algorithm 1 with LoRA, no checkpointing;
# the first is the baseline (today's one sample at a time).
SPEED_VARIANTS = {
    "mb1": ("micro_batch 1 (one at a time)", dict(algorithm="fixed", gradient_checkpointing=False)),
    "mb2": ("micro_batch 2", dict(algorithm="fixed", gradient_checkpointing=False, micro_batch=2)),
    "mb4": ("micro_batch 4", dict(algorithm="fixed", gradient_checkpointing=False, micro_batch=4)),
    "mb1-compile": ("micro_batch 1, compile", dict(algorithm="fixed", gradient_checkpointing=False, compile=True)),
    "mb4-compile": ("micro_batch 4, compile",
                    dict(algorithm="fixed", gradient_checkpointing=False, micro_batch=4, compile=True)),
    "mb1-eager-judge": ("micro_batch 1, judge attention eager",
                        dict(algorithm="fixed", gradient_checkpointing=False, judge_attention="eager")),
}


def quiet() -> None:
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def single_input_conditions(directory: Path, size: int) -> Path:
    """One image-fill input (size x size, the middle half masked) in the seeded taxonomy."""
    from rl.core.conditions import write_conditions
    from tests.rl import box_mask, canvas, rl_taxonomy

    quarter = size // 4
    return write_conditions(directory, rl_taxonomy(), [{
        "id": "bench", "task": "image_fill", "prompt": "a red cup on a wooden table",
        "source": canvas(size, size, seed=0),
        "mask": box_mask(size, size, (quarter, quarter, size - quarter, size - quarter))}])


def timed_steps(trainer, steps: int, device: torch.device) -> list[float]:
    seconds = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        trainer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


# --- tiny models, CPU, one process per variant ---------------------------------------------------------


def child(args) -> None:
    """Run one variant and print its figures as one JSON line."""
    import psutil

    from rl.core.config import OneRewardConfig
    from rl.core.onereward import OneRewardTrainer

    quiet()
    work = Path(args.work)
    label, options = {**VARIANTS, **SPEED_VARIANTS}[args.child]
    config = OneRewardConfig.from_dict({
        "conditions_dir": str(work / "conditions"), "output_dir": str(work / f"out-{args.child}"),
        "base_generator": {"base": str(work / "flux"), "device": "cpu", "dtype": "float32", "max_sequence_length": 32},
        "judge": str(work / "judge"), "batch_size": args.batch, "max_steps": 10**6, "lora_rank": 8,
        "learning_rate": 1e-4, "rollout": {"steps": args.rollout_steps, "guidance": 1.0, "true_cfg": 4.0,
                                           "negative_prompt": "nsfw"},
        "seed": 0, **options})
    trainer = OneRewardTrainer(config)
    before = psutil.Process().memory_info().rss
    seconds = timed_steps(trainer, args.steps, torch.device("cpu"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    trainable = sum(p.numel() for _, p in trainer.trainable)
    print(json.dumps({"variant": args.child, "seconds": seconds, "peak_rss": peak, "rss_before": before,
                      "trainable": trainable}))


def bench_speed(args) -> None:
    """Seconds per step of micro_batch 1, 2 and 4, compile off and on, the judge's attention: each
    variant in its own process on the same models and input, ratios against micro_batch 1. The
    first step (warm-up; with compile, the compilation) is reported apart from the median of the
    others; with compile the second step is left out too (a recompilation once the batch
    dimension turns dynamic)."""
    from generation.core.demo_flux import save_tiny_flux_fill
    from rewardmodel.core.demo_judge import save_tiny_qwen

    with tempfile.TemporaryDirectory(prefix="bench-rl-speed-") as work:
        work = Path(work)
        save_tiny_flux_fill(work / "flux")
        save_tiny_qwen(work / "judge", seed=0)
        single_input_conditions(work / "conditions", args.size)
        print(f"tiny FLUX Fill + tiny Qwen2.5-VL judge, CPU, {torch.get_num_threads()} threads; "
              f"one {args.size}x{args.size} image-fill input (4 dimensions), batch {args.batch}, "
              f"{args.rollout_steps} rollout steps with true CFG, Algorithm 1, LoRA, {args.steps} steps; "
              f"load average {os.getloadavg()[0]:.2f}")
        # Variants take turns, round after round, so that what else the machine runs weighs on all alike.
        runs = {name: [] for name in SPEED_VARIANTS}
        for _ in range(args.rounds):
            for name in SPEED_VARIANTS:
                command = [sys.executable, __file__, "--child", name, "--work", str(work), "--batch",
                           str(args.batch), "--rollout-steps", str(args.rollout_steps), "--steps", str(args.steps)]
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                if done.returncode != 0:
                    print(f"  {SPEED_VARIANTS[name][0]}: failed\n{done.stderr[-3000:]}")
                    continue
                runs[name].append((json.loads(done.stdout.strip().splitlines()[-1])["seconds"], os.getloadavg()[0]))
        baseline = None
        for name, (label, options) in SPEED_VARIANTS.items():
            if not runs[name]:
                continue
            skip = 2 if options.get("compile") else 1
            medians = [statistics.median(seconds[skip:] or seconds) for seconds, _ in runs[name]]
            median = statistics.median(medians)
            baseline = baseline or median
            first = statistics.median(seconds[0] for seconds, _ in runs[name])
            loads = ", ".join(f"{load:.1f}" for _, load in runs[name])
            print(f"  {label:<38} {median:7.3f} s/step  x{median / baseline:.2f} of micro_batch 1   "
                  f"first step {first:7.2f} s   per round: {', '.join(f'{m:.3f}' for m in medians)}   "
                  f"load after each: {loads}")


def bench_tiny(args) -> None:
    from generation.core.demo_flux import save_tiny_flux_fill
    from rewardmodel.core.demo_judge import save_tiny_qwen

    with tempfile.TemporaryDirectory(prefix="bench-rl-") as work:
        work = Path(work)
        save_tiny_flux_fill(work / "flux")
        save_tiny_qwen(work / "judge", seed=0)
        single_input_conditions(work / "conditions", args.size)
        print(f"tiny FLUX Fill + tiny Qwen2.5-VL judge, CPU, {torch.get_num_threads()} threads; "
              f"one {args.size}x{args.size} image-fill input (4 dimensions), batch {args.batch}, "
              f"{args.rollout_steps} rollout steps with true CFG, median of {args.steps - 1} steps after a warm-up")
        results = {}
        for name in VARIANTS:
            command = [sys.executable, __file__, "--child", name, "--work", str(work), "--batch", str(args.batch),
                       "--rollout-steps", str(args.rollout_steps), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                print(f"  {VARIANTS[name][0]}: failed\n{done.stderr[-3000:]}")
                continue
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        baseline = None
        for name, result in results.items():
            seconds = statistics.median(result["seconds"][1:] or result["seconds"])
            baseline = baseline or seconds
            growth = (result["peak_rss"] - result["rss_before"]) / 2**20
            print(f"  {VARIANTS[name][0]:<46} {seconds:7.3f} s/step  x{seconds / baseline:.2f}   "
                  f"peak RSS {result['peak_rss'] / 2**20:7.1f} MiB  (step growth {growth:6.1f} MiB)   "
                  f"trainable {result['trainable'] / 1e3:.1f} k")


# --- full size, CUDA --------------------------------------------------------------------------------------


def full_size_components(dry: bool, judge_max_pixels: int):
    """(backend, judge) built in memory: FLUX.1 Fill and Qwen2.5-VL-7B layouts in bf16 on CUDA,
    or (dry) the tiny ones on CPU through the same code."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from generation.core.backends.flux_fill import FluxFillBackend, FluxFillConfig
    from generation.core.demo_flux import build_pipeline
    from rewardmodel.core.demo_judge import build_tokenizer
    from rewardmodel.core.judge import Judge
    from rewardmodel.core.preprocessing import VisionGeometry

    sys.path.insert(0, str(ROOT / "bench"))
    from reward_model import qwen25_vl_7b_config

    device = torch.device("cpu" if dry else "cuda")
    dtype = torch.float32 if dry else torch.bfloat16
    pipeline = build_pipeline(seed=0, full_size=not dry, device=device, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    backend = FluxFillBackend(pipeline, FluxFillConfig(base="(in memory)", device=str(device),
                                                       dtype="float32" if dry else "bfloat16",
                                                       max_sequence_length=32 if dry else 512))
    tokenizer = build_tokenizer()
    config = qwen25_vl_7b_config(tokenizer, shrink=dry)
    torch.manual_seed(1)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    judge = Judge(model, tokenizer, VisionGeometry.from_model_config(config, max_pixels=judge_max_pixels))
    return backend, judge


def bench_full_size(args) -> None:
    from rl.core.config import OneRewardConfig
    from rl.core.onereward import OneRewardTrainer, _activate_judge_checkpointing

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        sys.exit("--full-size needs a CUDA GPU (--dry-run runs the same code with tiny models on CPU)")
    device = torch.device("cpu" if dry else "cuda")
    sizes = [64, 96] if dry else [512, 1024]
    backend, judge = full_size_components(dry, args.judge_max_pixels)
    judge.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _activate_judge_checkpointing(judge)
    flux_params = sum(p.numel() for p in backend.pipeline.transformer.parameters())
    judge_params = sum(p.numel() for p in judge.parameters())
    print(f"\nFLUX.1 Fill transformer {flux_params / 1e9:.2f} B + Qwen2.5-VL-7B layout {judge_params / 1e9:.2f} B "
          f"parameters{' (tiny, dry run)' if dry else ''}, "
          f"{'float32 CPU' if dry else 'bf16 ' + torch.cuda.get_device_name()}; "
          f"LoRA rank 32, gradient checkpointing, batch 1, {args.rollout_steps} rollout steps, true CFG 4, "
          f"judge max_pixels {args.judge_max_pixels}")
    if device.type == "cuda":
        print(f"  weights on the GPU: {torch.cuda.memory_allocated() / 2**30:.1f} GiB")
    first = True
    with tempfile.TemporaryDirectory(prefix="bench-rl-full-") as work:
        work = Path(work)
        for size in sizes:
            conditions = single_input_conditions(work / f"conditions-{size}", size)
            for algorithm in ("fixed", "dynamic"):
                config = OneRewardConfig.from_dict({
                    "conditions_dir": str(conditions), "output_dir": str(work / f"out-{size}-{algorithm}"),
                    "base_generator": {"base": "(in memory)"}, "judge": "(in memory)", "algorithm": algorithm,
                    "batch_size": 1, "max_steps": 10**6, "lora_rank": 32, "gradient_checkpointing": True,
                    "mixed_precision": "no" if dry else "bf16",
                    "rollout": {"steps": args.rollout_steps, "guidance": 1.0, "true_cfg": 4.0,
                                "negative_prompt": "nsfw"}})
                if first:
                    from rl.core.conditions import ConditionPool

                    trainer = OneRewardTrainer(config, backend=backend, judge=judge, pool=ConditionPool(conditions))
                    first = False
                else:
                    # One LoRA policy for every case: swap the condition pool, algorithm and rollout.
                    from rl.core.conditions import ConditionPool

                    trainer.config, trainer.rollout = config, config.rollout
                    trainer.pool = ConditionPool(conditions)
                    trainer.probabilities = trainer.pool.probabilities()
                label = f"{size}x{size}, Algorithm {1 if algorithm == 'fixed' else 2}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                try:
                    seconds = timed_steps(trainer, args.steps, device)
                except torch.OutOfMemoryError:
                    trainer.optimizer.zero_grad(set_to_none=True)
                    torch.cuda.empty_cache()
                    print(f"  {label:<26} out of memory (peak before failing "
                          f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB)")
                    continue
                median = statistics.median(seconds[1:] or seconds)
                peak = (
                    f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a on CPU"
                )
                each = ", ".join(f"{s:.2f}" for s in seconds)
                print(f"  {label:<26} {median:8.2f} s/step   peak {peak}   (steps: {each})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="tiny: canvas side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="tiny: conditions per step")
    parser.add_argument(
        "--rollout-steps", type=int, default=None, help="sampling steps (default 8 tiny, 50 full size)"
    )
    parser.add_argument("--steps", type=int, default=None,
                        help="RL steps timed, the first a warm-up (default 5 tiny, 3 full)")
    parser.add_argument("--full-size", action="store_true", help="FLUX.1 Fill + Qwen2.5-VL-7B layouts on CUDA, bf16")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --full-size: the same path with tiny models on CPU")
    parser.add_argument("--judge-max-pixels", type=int, default=28 * 28 * 1280,
                        help="full size: the judge's resize bound per image (Qwen2.5-VL's default)")
    parser.add_argument("--speed", action="store_true",
                        help="tiny: micro_batch 1/2/4, compile off/on, judge attention eager (batch 4, 128x128)")
    parser.add_argument("--rounds", type=int, default=3, help="--speed: rounds of all the variants in turn")
    parser.add_argument("--child", choices=sorted({**VARIANTS, **SPEED_VARIANTS}), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    quiet()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"torch {torch.__version__}, {device}")
    if args.full_size:
        args.rollout_steps = args.rollout_steps or (4 if args.dry_run else 50)
        args.steps = args.steps or 3
        bench_full_size(args)
        return
    args.rollout_steps = args.rollout_steps or 8
    if args.speed:
        args.steps = args.steps or 6
        bench_speed(args)
        return
    args.steps = args.steps or 5
    bench_tiny(args)


if __name__ == "__main__":
    if "--child" in sys.argv:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    main()
