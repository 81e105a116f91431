"""Small preference datasets written to disk the way the platform exports them (no database).

`write_dataset` puts rows through annotation/preference_files.py's DatasetWriter and writes a
manifest with the seeded taxonomy, so the trainer reads exactly the export format.

`brightness_pairs` is the learning set: every image is a smooth random texture around a grey
level, and the winner of a pair is the BRIGHTER image (its level is higher than the loser's by
0.2 to 0.4 on a [0, 1] scale). Winner and loser are different textures, and the levels of winners
and losers overlap (a loser can be brighter than another pair's winner), so the judge has to
compare the two images rather than read the first one alone. Mean brightness survives the vision
tower's patch embedding and merging linearly, which is why a tiny random model learns it in a
few hundred steps.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from inputs.taxonomy_seed import DIMENSIONS, QUERY_WITH_PROMPT, TASKS
from preferences.core.files import SCHEMA_VERSION, SPLITS, DatasetWriter

# (task, dimension, prompt) cycled over the pairs: several rows of the evaluation table.
TASK_DIMENSIONS = [
    ("image_fill", "consistency", "a red cup on a wooden table"),
    ("image_fill", "aesthetics", "a red cup on a wooden table"),
    ("image_fill", "text_alignment", "a red cup on a wooden table"),
    ("image_extend", "structure", ""),
    ("object_removal", "removal_quality", ""),
]


def taxonomy() -> dict:
    """The seeded taxonomy as the export's manifest carries it."""
    return {
        "tasks": {task["slug"]: {"name": task["name"], "description": task["description"],
                                 "default_prompt": task["default_prompt"], "prompt_mode": task["prompt_mode"]}
                  for task in TASKS},
        "dimensions": {slug: {"name": name, "definition": definition, "uses_prompt": slug in QUERY_WITH_PROMPT}
                       for slug, name, definition in DIMENSIONS},
    }


def row(**values) -> dict:
    """A full export row; `values` override the defaults."""
    defaults = {
        "pair_id": "", "split": "train", "input_id": 1, "input_hash": "", "task": "image_fill",
        "dimension": "aesthetics", "prompt": "", "prompt_given": False, "source": None, "mask": None,
        "candidate_set_id": 1, "winner_candidate": "w", "loser_candidate": "l", "winner_index": 0, "loser_index": 1,
        "winner_image": None, "loser_image": None, "origin": "best_worst", "votes_for": 1, "votes_against": 0,
        "discards": 0, "soft_label": 1.0, "weight": 1.0, "annotators": [1], "winner_generator": "synthetic",
        "winner_generator_id": 1, "winner_batch_id": 1, "winner_settings": "{}", "loser_generator": "synthetic",
        "loser_generator_id": 1, "loser_batch_id": 1, "loser_settings": "{}",
    }
    unknown = set(values) - set(defaults)
    if unknown:
        raise KeyError(f"not export columns: {sorted(unknown)}")
    result = {**defaults, **values}
    if not result["pair_id"]:
        key = f"{result['candidate_set_id']}:{result['dimension']}:{result['winner_index']}:{result['loser_index']}"
        result["pair_id"] = hashlib.sha256(key.encode()).hexdigest()[:20]
    result["prompt_given"] = bool(result["prompt"])
    return result


def write_dataset(folder, rows: list[dict], *, embed_images: bool = False) -> Path:
    """Write `rows` (image columns as file:// URIs, or {"bytes", "path"} with embed_images) and a manifest."""
    folder = Path(folder)
    writer = DatasetWriter(folder, embed_images=embed_images)
    counts: dict = {}
    for item in rows:
        writer.write(item)
        per_split = counts.setdefault(item["task"], {}).setdefault(item["dimension"], dict.fromkeys(SPLITS, 0))
        per_split[item["split"]] += 1
    files = writer.close()
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": folder.name, "version": 1,
        "content_hash": writer.digest.hexdigest(), "pairs": len(rows), "counts": counts, "taxonomy": taxonomy(),
        "files": {name: {"rows": count} for name, count in files.items()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def save_image(pixels: np.ndarray, path: Path, embed: bool):
    """pixels: uint8 (H, W, 3). A file:// URI, or an embedded image struct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    if embed:
        return {"bytes": buffer.getvalue(), "path": path.name}
    return path.resolve().as_uri()


def texture(rng: np.random.Generator, size: int, level: float) -> np.ndarray:
    """A smooth colour texture (upsampled 4x4 noise) with mean close to `level` in [0, 1]; uint8 (H, W, 3)."""
    coarse = rng.uniform(-1, 1, size=(4, 4, 3))
    smooth = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8), "RGB").resize(
        (size, size), Image.Resampling.BICUBIC), dtype=np.float64) / 127.5 - 1
    pixels = np.clip(level + 0.12 * smooth, 0.0, 1.0)
    return (pixels * 255).round().astype(np.uint8)


def brightness_pairs(folder, counts: dict[str, int], *, size: int = 56, seed: int = 0, embed_images: bool = False,
                     votes=None, weights=None, inverted=None, gaps: tuple[float, float] = (0.2, 0.4)) -> Path:
    """A dataset where the winner is the brighter image; counts = pairs per split.
    votes(i) -> (votes_for, votes_against) and weights(i) -> weight of pair i (defaults (1, 0) and 1.0);
    inverted(i) -> True makes pair i's winner the darker image (annotators against the rule);
    gaps: the range of the winner's lead in level."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows, index = [], 0
    for split in ("train", "validation", "test"):
        for _ in range(counts.get(split, 0)):
            loser_level = rng.uniform(0.15, 0.55)
            winner_level = loser_level + rng.uniform(*gaps)
            if inverted and inverted(index):
                winner_level, loser_level = loser_level, winner_level
            task, dimension, prompt = TASK_DIMENSIONS[index % len(TASK_DIMENSIONS)]
            winner = save_image(texture(rng, size, winner_level), folder / "images" / f"{index}-w.png", embed_images)
            loser = save_image(texture(rng, size, loser_level), folder / "images" / f"{index}-l.png", embed_images)
            votes_for, votes_against = votes(index) if votes else (1, 0)
            rows.append(row(split=split, input_id=1000 + index, input_hash=f"h{index}", task=task, dimension=dimension,
                            prompt=prompt, candidate_set_id=index // 2 + 1, winner_index=index % 4,
                            loser_index=(index + 1) % 4, winner_image=winner, loser_image=loser,
                            votes_for=votes_for, votes_against=votes_against,
                            soft_label=votes_for / max(1, votes_for + votes_against),
                            weight=float(weights(index)) if weights else 1.0,
                            annotators=list(range(votes_for + votes_against))))
            index += 1
    return write_dataset(folder, rows, embed_images=embed_images)


# --- the learning run, shared by the learning and evaluation tests ----------------------------------------

LEARNING_SET = {"train": 512, "test": 160}
LEARNING_STEPS = 120
_trained: dict = {}


def trained_brightness_judge(tmp_path_factory) -> tuple[Path, dict]:
    """Train the tiny judge on the brightness set once per test session (CPU, fixed seeds):
    batch 16, lr 1e-3 (the tiny random model needs far more than the paper's 1e-6 for a 7B one),
    10 warmup steps, 120 steps (about 4 epochs of 512 pairs). Returns (output_dir, result)."""
    from rewardmodel.core.config import TrainingConfig
    from rewardmodel.core.demo_judge import save_tiny_qwen
    from rewardmodel.core.training import train

    if "run" not in _trained:
        root = tmp_path_factory.mktemp("learning")
        model = save_tiny_qwen(root / "tiny", seed=0)
        data = brightness_pairs(root / "data", LEARNING_SET, seed=1)
        config = TrainingConfig(dataset_dir=str(data), output_dir=str(root / "run"), base_model=str(model),
                                learning_rate=1e-3, batch_size=16, max_steps=LEARNING_STEPS, warmup_steps=10,
                                log_every=10, save_every=1000, seed=0, zero_shot_eval=True)
        _trained["run"] = (root / "run", train(config))
    return _trained["run"]
