"""Algorithm 1's reference pool: transformer calls and seconds per RL step without a pool (a fresh
full reference rollout per sample, today's cost) and with K = 1, 4, 16 reference images per
condition, in the same run, on tiny models on the CPU at the OneReward release's rollout settings
(50 steps, true CFG 4 with "nsfw": both branches in one batched call).

    .venv/bin/python bench/reference_pool.py
    .venv/bin/python bench/reference_pool.py --steps 6 --conditions 4 --batch 2 --size 64

For each K, two phases: the first steps of a run (the pool fills lazily: a member's rollout is paid
the first time a sample draws it), then steps with the pool made ahead (`prepare_reference_pool`),
which is every step of a long run once each condition's K members exist (conditions x K rollouts in
all, against steps x batch without a pool). Calls are counted with a forward hook on the policy's
transformer (reference rollouts included: with LoRA the reference is the same module, its adapter
off). Prints figures and ratios against K = 0; never judges them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rl_step import quiet  # noqa: E402


def conditions(directory: Path, count: int, size: int) -> Path:
    from rl.core.conditions import write_conditions
    from tests.rl import box_mask, canvas, rl_taxonomy

    quarter = size // 4
    return write_conditions(directory, rl_taxonomy(), [{
        "id": f"bench-{number}", "task": "image_fill", "prompt": "a red cup on a wooden table",
        "source": canvas(size, size, seed=number),
        "mask": box_mask(size, size, (quarter, quarter, size - quarter, size - quarter))} for number in range(count)])


def measure(trainer, steps: int) -> tuple[float, float]:
    """(transformer calls per step, median seconds per step) over `steps` steps."""
    calls = [0]
    handle = trainer.transformer.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    seconds = []
    try:
        for _ in range(steps):
            started = time.perf_counter()
            trainer.step()
            seconds.append(time.perf_counter() - started)
    finally:
        handle.remove()
    return calls[0] / steps, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="canvas side in pixels")
    parser.add_argument("--conditions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="steps measured per phase")
    parser.add_argument("--rollout-steps", type=int, default=50)
    parser.add_argument("--pools", default="0,1,4,16")
    args = parser.parse_args()
    quiet()
    from generation.core.demo_flux import save_tiny_flux_fill
    from rewardmodel.core.demo_judge import save_tiny_qwen
    from rl.core.config import OneRewardConfig
    from rl.core.onereward import OneRewardTrainer

    with tempfile.TemporaryDirectory(prefix="bench-pool-") as work:
        work = Path(work)
        flux, judge = save_tiny_flux_fill(work / "flux"), save_tiny_qwen(work / "judge", seed=0)
        pool_dir = conditions(work / "conditions", args.conditions, args.size)
        print(f"tiny FLUX Fill + tiny judge, CPU, {args.size}x{args.size}, {args.conditions} conditions, batch "
              f"{args.batch}, rollout {args.rollout_steps} steps, true CFG 4, t in [0.6, 0.75]; load average "
              f"{os.getloadavg()[0]:.2f}")
        header = f"{'K':>3} {'phase':<14} {'calls/step':>11} {'s/step':>8} {'calls vs K=0':>13} {'time vs K=0':>12}"
        print(header)
        print("-" * len(header))
        base = None
        for size in (int(k) for k in args.pools.split(",")):
            config = OneRewardConfig.from_dict({
                "conditions_dir": str(pool_dir), "output_dir": str(work / f"out-{size}"),
                "base_generator": {"base": str(flux), "device": "cpu", "dtype": "float32",
                                   "max_sequence_length": 32},
                "judge": str(judge), "algorithm": "fixed", "batch_size": args.batch, "max_steps": 10**6,
                "lora_rank": 4, "learning_rate": 1e-4, "gradient_checkpointing": False,
                "rollout": {"steps": args.rollout_steps, "guidance": 1.0, "true_cfg": 4.0, "negative_prompt": "nsfw"},
                "reference_pool": size, "seed": 0})
            trainer = OneRewardTrainer(config)
            trainer.step()  # warm-up (threads, caches), left out
            phases = [("first steps", measure(trainer, args.steps))]
            if size:
                trainer.prepare_reference_pool()
                phases.append(("pool ahead", measure(trainer, args.steps)))
            for phase, (calls, seconds) in phases:
                if base is None:
                    base = (calls, seconds)
                print(f"{size:>3} {phase:<14} {calls:>11.1f} {seconds:>8.3f} {calls / base[0]:>12.2f}x "
                      f"{seconds / base[1]:>11.2f}x", flush=True)
            del trainer


if __name__ == "__main__":
    main()
