"""Tests of the OneReward RL trainer. Shared builders of the tiny world they run in:

- a tiny FLUX Fill pipeline (generation/core/demo_flux.py) and a tiny Qwen2.5-VL judge
  (rewardmodel/core/demo_judge.py), both saved to disk and read back by the real loading code;
- conditions directories written by rl.core.conditions.write_conditions with the seeded taxonomy
  (annotation/taxonomy_seed.py) in the export's shape, plus the two RL fields of a task.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SEQ = 16  # T5 tokens per prompt: enough for the test prompts, keeps the tiny T5 fast


def rl_taxonomy(tasks: dict | None = None) -> dict:
    """The seeded taxonomy with rl_probability, dimensions and dimensions_with_prompt_only per task.
    tasks: {slug: {field: value}} overrides (e.g. another rl_probability or dimensions list)."""
    from inputs.taxonomy_seed import TASKS
    from tests.rewardmodel.synthetic_pairs import taxonomy

    result = taxonomy()
    for spec in TASKS:
        result["tasks"][spec["slug"]].update(
            rl_probability=spec["rl_probability"],
            dimensions=[slug for slug, _ in spec["dimensions"]],
            dimensions_with_prompt_only=[slug for slug, only in spec["dimensions"] if only],
        )
    for slug, values in (tasks or {}).items():
        result["tasks"][slug].update(values)
    return result


def canvas(width: int, height: int, seed: int, level: float = 0.45) -> np.ndarray:
    """A smooth colour texture around `level`: uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(4, 4, 3))
    smooth = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8), "RGB").resize(
        (width, height), Image.Resampling.BICUBIC), dtype=np.float64) / 127.5 - 1
    return (np.clip(level + 0.15 * smooth, 0, 1) * 255).round().astype(np.uint8)


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 (H, W): 255 inside box = (left, top, right, bottom), 0 elsewhere."""
    mask = np.zeros((height, width), np.uint8)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 255
    return mask


def default_inputs() -> list[dict]:
    """Inputs of three tasks; one canvas is not a multiple of 16 (padded), one extend input has
    no prompt (its text alignment is not judged)."""
    return [
        {"id": "fill-1", "task": "image_fill", "prompt": "a red cup on a wooden table",
         "source": canvas(32, 32, 1), "mask": box_mask(32, 32, (6, 6, 26, 26))},
        {"id": "fill-2", "task": "image_fill", "prompt": "a cat sleeping on the sofa",
         "source": canvas(40, 24, 2), "mask": box_mask(40, 24, (8, 4, 30, 20))},
        {"id": "extend-1", "task": "image_extend", "prompt": "",
         "source": canvas(32, 32, 3), "mask": 255 - box_mask(32, 32, (8, 8, 24, 24))},
        {"id": "removal-1", "task": "object_removal", "prompt": "",
         "source": canvas(32, 32, 4), "mask": box_mask(32, 32, (10, 10, 22, 22))},
    ]


def write_default_conditions(directory, taxonomy: dict | None = None, inputs: list[dict] | None = None) -> Path:
    from rl.core.conditions import write_conditions

    return write_conditions(directory, taxonomy or rl_taxonomy(), inputs if inputs is not None else default_inputs())


def base_generator(flux_dir, **overrides) -> dict:
    """FluxFillConfig settings of the tiny model; candidates delivered composited on the source (as
    the demo generator delivers them), so RL judges composited images unless a test says otherwise."""
    return {"base": str(flux_dir), "device": "cpu", "dtype": "float32", "max_sequence_length": SEQ,
            "composite_source": True, **overrides}


def rl_config(flux_dir, judge_dir, conditions_dir, output_dir, **overrides):
    """A small, fast OneRewardConfig on the tiny models: 2 rollout steps, plain guidance."""
    from rl.core.config import OneRewardConfig

    values = dict(
        conditions_dir=str(conditions_dir), output_dir=str(output_dir), base_generator=base_generator(flux_dir),
        judge=str(judge_dir), algorithm="fixed", batch_size=2, max_steps=2, lora_rank=4, learning_rate=1e-3,
        rollout={"steps": 2, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""},
        t_range=(0.5, 0.5), gradient_checkpointing=False, log_every=1, save_every=100, seed=0,
    )
    values.update(overrides)
    return OneRewardConfig.from_dict(values)
