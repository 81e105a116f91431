"""Train the judge from the command line.

    python -m rewardmodel.core.train --config config.json
    python -m rewardmodel.core.train --dataset DIR --output DIR --base-model DIR_OR_ID [--lora-rank 16] [--lr 1e-6] \
        [--batch-size 16] [--max-steps N] ...
    accelerate launch [--config_file rewardmodel/core/accelerate/fsdp.yaml] -m rewardmodel.core.train \
        --config config.json
    accelerate launch --multi_gpu --num_processes 2 -m rewardmodel.core.train ...   # on a CPU-only host: DDP over gloo

config.json holds TrainingConfig fields (rewardmodel/core/config.py); every field also has an
option (--help lists them), which overrides the file. Running again with the same output directory
resumes from its last checkpoint. Exit code 2 on a bad config, 1 when training fails.
"""
from __future__ import annotations

import logging
import sys

from mlcore.cli import parse_config

from .config import ConfigError, TrainingConfig
from .evaluation import format_table
from .training import train


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(TrainingConfig, argv, prog="python -m rewardmodel.core.train",
                              description=__doc__.split("\n\n")[0])
        config.check_inputs()
    except ConfigError as exc:
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
        print(format_table(result["evaluation"], result.get("zero_shot")), flush=True)
    elif result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
