"""RL learns what the judge wants: a tiny FLUX Fill policy becomes brighter for a judge that prefers
the brighter image, with both algorithms (CPU, fixed seeds).

The judge is the tiny Qwen2.5-VL trained for the RL tests on brightness pairs
(tests/rewardmodel/synthetic_pairs.py, `trained_rl_brightness_judge`, once per session): leads of
0.05 to 0.4 in brightness and a tie in every third pair, on 32x32 images. On two canvases of the
kind used here its P(Yes) is about 0.5 when they are equally bright, 0.73 when the first is 0.05
brighter, 0.87 at 0.1 and about 0.97 (its ceiling) from 0.2 on.

The policy starts as the base, so its reward against the reference starts near 0.5: the first 5
steps' mean must lie in [0.35, 0.65], and some 10-step mean must then reach 0.65 within 60 steps.
Measured, with either algorithm: first 5 steps 0.48-0.50; the bar is reached at step 15-23; best
10-step mean 0.92-0.97, last 0.91-0.96. The run-to-run spread of CPU float arithmetic moves that
step by a few and the means by a few hundredths, against margins of about 0.13 at the start and
0.27 over the bar.

Sizes: 32x32 canvases masked but for a 2-pixel border, 4 rollout steps, batch 4, LoRA rank 4 on the
default targets, learning rate 3e-2 (the tiny random model needs far more than the paper's 1e-5),
tau 0.99. Measured on 2 idle cores: 11-13 s per run of 60 steps, plus about 15 s once per session
for the judge's training and the tiny FLUX (about 40 s for this file).
"""
import json
import time

import pytest

from generation.core.demo_flux import save_tiny_flux_fill
from rl.core.conditions import write_conditions
from rl.core.onereward import OneRewardTrainer
from tests.rewardmodel.synthetic_pairs import trained_rl_brightness_judge

from . import box_mask, canvas, rl_config, rl_taxonomy

START = (0.35, 0.65)  # the first 5 steps' mean reward lies in this range (about 0.5) ...
BAR = 0.65            # ... and some 10-step window's mean reward reaches this ...
WITHIN = 60           # ... within this many steps
WINDOW = 10


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    judge_run, _ = trained_rl_brightness_judge(tmp_path_factory)
    root = tmp_path_factory.mktemp("rl-learning")
    flux = save_tiny_flux_fill(root / "flux")
    # The judge learned these rows (task x dimension) of the brightness set.
    taxonomy = rl_taxonomy({"image_fill": {"dimensions": ["consistency", "aesthetics"], "rl_probability": 0.5},
                            "object_removal": {"rl_probability": 0.5}, "image_extend": {"rl_probability": 0.0}})
    inputs = [{"id": f"in-{i}", "task": "image_fill" if i % 2 == 0 else "object_removal",
               "prompt": "a red cup on a wooden table" if i % 2 == 0 else "",
               "source": canvas(32, 32, seed=i), "mask": box_mask(32, 32, (2, 2, 30, 30))} for i in range(6)]
    conditions = write_conditions(root / "conditions", taxonomy, inputs)
    return flux, judge_run / "model", conditions, root


@pytest.mark.parametrize("algorithm", ["fixed", "dynamic"])
def test_the_policy_learns_to_win_against_its_reference(setup, algorithm):
    flux, judge, conditions, root = setup
    config = rl_config(
        flux,
        judge,
        conditions,
        root / algorithm,
        algorithm=algorithm,
        learning_rate=3e-2,
        batch_size=4,
        max_steps=WITHIN,
        lora_rank=4,
        ema_decay=0.99,
        t_range=(0.5, 0.75),
        log_every=1,
        save_every=1000,
        rollout={"steps": 4, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""},
    )
    started = time.monotonic()
    OneRewardTrainer(config).train()
    seconds = time.monotonic() - started
    lines = (root / algorithm / "metrics.jsonl").read_text().splitlines()
    rewards = [json.loads(line)["reward_mean"] for line in lines]
    assert len(rewards) == WITHIN
    windows = [sum(rewards[i - WINDOW:i]) / WINDOW for i in range(WINDOW, len(rewards) + 1)]
    reached = next((WINDOW + i for i, mean in enumerate(windows) if mean >= BAR), None)
    start = sum(rewards[:5]) / 5
    print(f"{algorithm}: reward {start:.3f} (first 5 steps) -> {windows[-1]:.3f} (last {WINDOW}); "
          f"best {WINDOW}-step mean {max(windows):.3f}; bar {BAR} reached at step {reached}; {seconds:.1f} s")
    assert START[0] <= start <= START[1], f"the first 5 steps' mean reward {start:.3f} is not about 0.5"
    assert reached is not None, f"best {WINDOW}-step mean reward {max(windows):.3f} < {BAR}"
