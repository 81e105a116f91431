"""OneReward RL from the command line.

    python -m rl.core.train --config config.json [--max-steps N] [--output DIR] [--rollout.steps 28] ...
    accelerate launch --config_file rl/core/accelerate/ddp.yaml --num_processes 8 -m rl.core.train --config config.json
    accelerate launch --config_file rl/core/accelerate/fsdp.yaml --num_processes 8 -m rl.core.train \
        --config config.json
    accelerate launch --multi_gpu --num_processes 2 -m rl.core.train --config config.json   # CPU-only host: gloo

config.json holds OneRewardConfig fields (rl/core/config.py); every field also has an option
(--help lists them), which overrides the file. Running again with the same output directory
resumes from its last checkpoint. Exit code 2 on a bad config, 1 when training fails.
"""
from __future__ import annotations

import sys

from mlcore.cli import run_trainer

from .config import OneRewardConfig
from .evaluate import format_table
from .onereward import OneRewardTrainer


def progress(update: dict) -> None:
    reward = update["reward_mean"]
    reward = reward if reward is None else round(reward, 4)
    print(f"step {update['step']}/{update['total_steps']}  loss {update['loss']:.4f}  "
          f"reward {reward}  eta {update['eta_seconds']:.0f} s", flush=True)


def report(result: dict) -> None:
    if result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)
    elif result.get("generator_settings"):
        print(f"policy: {result['policy']}  final reward: {result['final_reward']}", flush=True)
        if result.get("evaluation"):
            print(format_table(result["evaluation"]), flush=True)


def main(argv=None) -> int:
    return run_trainer(OneRewardConfig, lambda config: OneRewardTrainer(config).train(progress=progress), report,
                       argv, prog="python -m rl.core.train", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
