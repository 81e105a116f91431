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

import logging
import sys

from mlcore.cli import parse_config

from .config import ConfigError, OneRewardConfig
from .evaluate import format_table
from .onereward import OneRewardTrainer


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(OneRewardConfig, argv, prog="python -m rl.core.train",
                              description=__doc__.split("\n\n")[0])
        config.check_inputs()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(update: dict) -> None:
        reward = update["reward_mean"]
        reward = reward if reward is None else round(reward, 4)
        print(f"step {update['step']}/{update['total_steps']}  loss {update['loss']:.4f}  "
              f"reward {reward}  eta {update['eta_seconds']:.0f} s", flush=True)

    try:
        result = OneRewardTrainer(config).train(progress=progress)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.get("stopped_at"):
        print(f"stopped at step {result['stopped_at']} of {result['total_steps']}; run again to resume", flush=True)
    elif result.get("generator_settings"):
        print(f"policy: {result['policy']}  final reward: {result['final_reward']}", flush=True)
        if result.get("evaluation"):
            print(format_table(result["evaluation"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
