"""A world where the truth is known, for the learning claims of the loop: the demo FLUX Fill (its
VAE fitted, generation/core/demo_flux.py) paints the candidates, a brightness oracle computed here
from the pixels ranks them, the tiny judge learns from that ranking, and what RL delivers is
measured by the oracle again, never by the trainers' own figures.

The oracle (`brightness`): the mean of the candidate's pixels under the mask, all channels. It is
written here on purpose, not imported from annotation.core.oracles, so that the code under test
does not compute its own ground truth.

LOOP holds the settings the loop test (tests/rl/test_learning_loop.py) runs with and that
bench/learning_loop.py repeats over seeds to justify its bars. Plain Python + torch: no Django.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32  # canvases (pixels); the demo VAE is fitted at this size
PROMPT = "a red cup on a wooden table"
# What each task is judged on in this world (the seeded taxonomy's rows the RL pool draws from).
DIMENSIONS = {"image_fill": ["consistency", "aesthetics"], "object_removal": ["removal_quality"]}

LOOP = {
    "train_inputs": 120, "held_out_inputs": 16, "candidates": 4, "sampling_steps": 4, "vae_steps": 300,
    # The reward model: the demo judge, full fine-tuning as the runs' defaults, on best/worst-all pairs.
    "judge": {"learning_rate": 2e-3, "batch_size": 16, "max_steps": 300, "warmup_steps": 10},
    # RL: LoRA rank 4, lr 3e-2 (the tiny random model needs far more than the paper's 1e-5), the
    # rollout of the candidates (4 steps, FLUX Fill's usual guidance, no true CFG).
    "rl": {"learning_rate": 3e-2, "batch_size": 4, "max_steps": 60, "lora_rank": 4, "ema_decay": 0.99,
           "t_range": (0.5, 0.75), "reward_cap": 0.9},
    "rollout": {"steps": 4, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""},
}


def unit(pixels) -> np.ndarray:
    """Pixels (H, W, 3) as float64 in [0, 1]: uint8 divided by 255, floats as they are."""
    pixels = np.asarray(pixels)
    return pixels.astype(np.float64) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float64)


def brightness(pixels, mask) -> float:
    """The oracle: mean of `pixels` (H, W, 3; uint8, or float in [0, 1]) where mask (H, W) >= 128."""
    return float(unit(pixels)[np.asarray(mask) >= 128].mean())


def canvas(rng: np.random.Generator, level: float) -> np.ndarray:
    """A smooth colour texture around `level`: uint8 (SIZE, SIZE, 3)."""
    coarse = rng.uniform(-1, 1, size=(4, 4, 3))
    smooth = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8), "RGB").resize(
        (SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64) / 127.5 - 1
    return (np.clip(level + 0.15 * smooth, 0, 1) * 255).round().astype(np.uint8)


def oracle_inputs(count: int, seed: int) -> list[dict]:
    """`count` inputs, image fill and object removal in turn: {"name", "task", "prompt", "source"
    (uint8 H x W x 3), "mask" (uint8 H x W, 255 = generate)}, a box mask of half to most of the canvas."""
    rng = np.random.default_rng(seed)
    inputs = []
    for index in range(count):
        width, height = (int(rng.integers(SIZE // 2, SIZE - 2)) for _ in range(2))
        left, top = int(rng.integers(0, SIZE - width)), int(rng.integers(0, SIZE - height))
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[top:top + height, left:left + width] = 255
        task = "image_fill" if index % 2 == 0 else "object_removal"
        inputs.append({"name": f"s{seed}-{index:03d}", "task": task, "prompt": PROMPT if task == "image_fill" else "",
                       "source": canvas(rng, float(rng.uniform(0.3, 0.6))), "mask": mask})
    return inputs


def write_input_folder(folder: Path, inputs: list[dict]) -> Path:
    """The inputs as an import folder (NAME.png, NAME_mask.png, NAME.txt), as `import_inputs` reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in inputs:
        Image.fromarray(item["source"], "RGB").save(folder / f"{item['name']}.png")
        Image.fromarray(item["mask"], "L").save(folder / f"{item['name']}_mask.png")
        if item["prompt"]:
            (folder / f"{item['name']}.txt").write_text(item["prompt"])
    return folder


def oracle_agreement(judge, pairs: list[dict]) -> dict:
    """How often the judge picks the oracle's winner of held-out pairs, in each order.

    pairs: {"first", "second" (H x W x 3, uint8 or float in [0, 1]), "mask", "query"}. The oracle's winner is the
    brighter under the mask (ties are left out); the judge picks `first` when its Yes/No-renormalised
    P(Yes) exceeds 0.5. Returns {"pairs", "forward", "reversed", "averaged"} in per cent, where
    forward asks about (oracle winner, loser) and reversed about (loser, winner)."""
    import torch

    def tensor(pixels):
        return torch.from_numpy(np.ascontiguousarray(unit(pixels))).permute(2, 0, 1).float()

    winners, losers, queries = [], [], []
    for pair in pairs:
        first, second = brightness(pair["first"], pair["mask"]), brightness(pair["second"], pair["mask"])
        if first == second:
            continue
        winner, loser = (pair["first"], pair["second"]) if first > second else (pair["second"], pair["first"])
        winners.append(tensor(winner))
        losers.append(tensor(loser))
        queries.append(pair["query"])
    scores = judge.score(winners, losers, queries, both_orders=True)
    forward = float((scores["p_yes_renormalised"] > 0.5).float().mean()) * 100
    reversed_ = float((scores["p_yes_reversed_renormalised"] < 0.5).float().mean()) * 100
    return {"pairs": len(queries), "forward": forward, "reversed": reversed_, "averaged": (forward + reversed_) / 2}


def oracle_gain(policy: list[np.ndarray], base: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    """The oracle's verdict on paired candidates (same input, same seed, same settings): the mean
    and spread of brightness(policy) - brightness(base), and the share of pairs the policy wins."""
    gains = np.array([brightness(p, m) - brightness(b, m) for p, b, m in zip(policy, base, masks)])
    base_scores = np.array([brightness(b, m) for b, m in zip(base, masks)])
    return {"pairs": len(gains), "mean_gain": float(gains.mean()), "sd_gain": float(gains.std(ddof=1)),
            "policy_wins": float((gains > 0).mean()), "base_mean": float(base_scores.mean()),
            "base_sd": float(base_scores.std(ddof=1))}
