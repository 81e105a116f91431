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

import sys

from mlcore.cli import run_trainer

from .config import TrainingConfig
from .evaluation import format_table
from .training import train


def progress(update: dict) -> None:
    print(f"step {update['step']}/{update['total_steps']}  loss {update['loss']:.4f}  "
          f"{update['samples_per_second']:.1f} pairs/s  eta {update['eta_seconds']:.0f} s", flush=True)


def report(result: dict) -> None:
    if result.get("evaluation"):
        print(format_table(result["evaluation"], result.get("zero_shot")), flush=True)
    elif result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)


def main(argv=None) -> int:
    return run_trainer(TrainingConfig, lambda config: train(config, progress=progress), report, argv,
                       prog="python -m rewardmodel.core.train", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
