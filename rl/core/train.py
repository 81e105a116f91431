"""OneReward RL from the command line.

    python -m rl.core.train --config config.json [--max-steps N] [--output DIR] ...
    accelerate launch --config_file rl/accelerate/ddp.yaml --num_processes 8 -m rl.core.train --config config.json
    accelerate launch --config_file rl/accelerate/fsdp.yaml --num_processes 8 -m rl.core.train --config config.json
    accelerate launch --multi_gpu --num_processes 2 -m rl.core.train --config config.json   # CPU-only host: gloo

config.json holds OneRewardConfig fields (rl/onereward.py); flags override it. Running again with the
same output directory resumes from its last checkpoint. Exit code 2 on a bad config, 1 when
training fails.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

# flag -> (OneRewardConfig field, type, help). Types parse the text; OneRewardConfig checks values.
FLAGS = {
    "--conditions": ("conditions_dir", str, "conditions directory (manifest.json + inputs)"),
    "--output": ("output_dir", str, "output folder: checkpoints, metrics, policy, result.json"),
    "--judge": ("judge", str, "saved judge directory"),
    "--algorithm": ("algorithm", str, "fixed (Algorithm 1) or dynamic (Algorithm 2)"),
    "--reward-cap": ("reward_cap", float, "lambda (default 0.9)"),
    "--ema-decay": ("ema_decay", float, "tau (default 0.99)"),
    "--lr": ("learning_rate", float, "learning rate (default 1e-5)"),
    "--batch-size": ("batch_size", int, "conditions per step over all processes (default 8)"),
    "--max-steps": ("max_steps", int, "optimisation steps (default 8000)"),
    "--lora-rank": ("lora_rank", int, "LoRA rank (default 32)"),
    "--seed": ("seed", int, "seed of conditions, noises and stop steps"),
    "--log-every": ("log_every", int, "steps between metric lines"),
    "--save-every": ("save_every", int, "steps between checkpoints"),
    "--stop-at-step": ("stop_at_step", int, "checkpoint and stop at this step (resume later)"),
    "--mixed-precision": ("mixed_precision", str, "auto, no, bf16 or fp16"),
    "--eval-inputs": ("eval_inputs", str, "conditions directory of held-out inputs, judged at the end"),
}
SWITCHES = {
    "--full-fine-tune": ("lora_rank", None),
    "--no-gradient-checkpointing": ("gradient_checkpointing", False),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rl.core.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="JSON file of OneRewardConfig fields")
    for flag, (name, kind, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=name, type=kind, default=argparse.SUPPRESS, help=help_text)
    for flag, (name, value) in SWITCHES.items():
        parser.add_argument(flag, dest=name, action="store_const", const=value, default=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_values(args: argparse.Namespace) -> dict:
    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read --config {args.config}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"--config {args.config} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {args.config} must hold a JSON object")
    for name, value in vars(args).items():
        if name != "config":
            values[name] = value
    return values


def main(argv=None) -> int:
    from .onereward import ConfigError, OneRewardConfig, OneRewardTrainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = OneRewardConfig.from_dict(config_values(args))
        config.check_inputs()
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(update: dict) -> None:
        reward = update["reward_mean"]
        print(f"step {update['step']}/{update['total_steps']}  loss {update['loss']:.4f}  "
              f"reward {reward if reward is None else round(reward, 4)}  eta {update['eta_seconds']:.0f} s", flush=True)

    try:
        trainer = OneRewardTrainer(config)
        result = trainer.train(progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)
    elif result.get("generator_settings"):
        print(f"policy: {result['policy']}  final reward: {result['final_reward']}", flush=True)
        if result.get("evaluation"):
            from .evaluate import format_table

            print(format_table(result["evaluation"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
