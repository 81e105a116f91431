"""Train the judge from the command line.

    python -m rewardmodel.core.train --config config.json
    python -m rewardmodel.core.train --dataset DIR --output DIR --base-model DIR_OR_ID [--lora-rank 16] [--lr 1e-6] \
        [--batch-size 16] [--max-steps N] ...
    accelerate launch [--config_file rewardmodel/accelerate/fsdp.yaml] -m rewardmodel.core.train --config config.json
    accelerate launch --multi_gpu --num_processes 2 -m rewardmodel.core.train ...   # on a CPU-only host: DDP over gloo

config.json holds TrainingConfig fields (rewardmodel/training.py); flags override it. Running again
with the same output directory resumes from its last checkpoint. Exit code 2 on a bad config,
1 when training fails.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

# flag -> (TrainingConfig field, type, help). Types parse the text; TrainingConfig checks values.
FLAGS = {
    "--dataset": ("dataset_dir", str, "exported preference dataset folder (manifest.json + data/)"),
    "--output": ("output_dir", str, "output folder: checkpoints, metrics, model, evaluation"),
    "--base-model": ("base_model", str, "Qwen2-VL family model: directory or hub id"),
    "--lora-rank": ("adapter_rank", int, "LoRA rank (default: full fine-tune)"),
    "--lora-alpha": ("adapter_alpha", float, "LoRA alpha (default: 2 x rank)"),
    "--lr": ("learning_rate", float, "learning rate (default 1e-6)"),
    "--batch-size": ("batch_size", int, "global batch in pairs (default 16)"),
    "--per-device-batch-size": ("per_device_batch_size", int, "pairs per device per micro-batch"),
    "--epochs": ("epochs", int, "epochs (default 1)"),
    "--max-steps": ("max_steps", int, "optimizer steps (overrides --epochs)"),
    "--warmup-steps": ("warmup_steps", int, "linear warmup steps"),
    "--weight-decay": ("weight_decay", float, "AdamW weight decay"),
    "--max-grad-norm": ("max_grad_norm", float, "gradient clipping norm"),
    "--mixed-precision": ("mixed_precision", str, "auto, no, bf16 or fp16"),
    "--model-dtype": ("model_dtype", str, "float32 or bfloat16 weights"),
    "--seed": ("seed", int, "seed of the data order and initialisation"),
    "--log-every": ("log_every", int, "steps between metric lines"),
    "--eval-every": ("eval_every", int, "steps between validation evaluations"),
    "--eval-batch-size": ("eval_batch_size", int, "pairs per evaluation forward"),
    "--save-every": ("save_every", int, "steps between checkpoints"),
    "--keep-checkpoints": ("keep_checkpoints", int, "checkpoints kept (older ones are deleted)"),
    "--stop-at-step": ("stop_at_step", int, "checkpoint and stop at this step (resume later)"),
    "--max-pixels": ("max_pixels", int, "judge resize bound in pixels per image"),
    "--num-workers": ("num_workers", int, "DataLoader worker processes"),
}
SWITCHES = {
    "--gradient-checkpointing": ("gradient_checkpointing", True),
    "--weighted-loss": ("weighted_loss", True),
    "--no-zero-shot-eval": ("zero_shot_eval", False),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rewardmodel.core.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="JSON file of TrainingConfig fields")
    for flag, (field, kind, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=help_text)
    for flag, (field, value) in SWITCHES.items():
        parser.add_argument(flag, dest=field, action="store_const", const=value, default=None)
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
    for field in [*(spec[0] for spec in FLAGS.values()), *(spec[0] for spec in SWITCHES.values())]:
        value = getattr(args, field)
        if value is not None:
            values[field] = value
    return values


def main(argv=None) -> int:
    from .training import ConfigError, TrainingConfig, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = TrainingConfig.from_dict(config_values(args))
        config.check_inputs()
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(update: dict) -> None:
        eta = update["eta_seconds"]
        print(f"step {update['step']}/{update['total_steps']}  loss {update['loss']:.4f}  "
              f"{update['samples_per_second']:.1f} pairs/s  eta {eta:.0f} s", flush=True)

    try:
        result = train(config, progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.get("evaluation"):
        from .evaluation import format_table

        print(format_table(result["evaluation"], result.get("zero_shot")), flush=True)
    elif result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
