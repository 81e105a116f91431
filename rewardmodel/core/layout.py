"""Where an exported preference dataset keeps what the trainer reads: manifest.json and the
Parquet shards of each split (preferences/core/files.py writes them). No torch, so that a config
can be checked where only the web side is installed.
"""
from __future__ import annotations

import json
from pathlib import Path

from preferences.core.files import SPLITS


def read_manifest(dataset_dir) -> dict:
    """manifest.json of an exported dataset; FileNotFoundError / ValueError say what is wrong."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {dataset_dir} is not an exported preference dataset")
    manifest = json.loads(path.read_text())
    if not isinstance(manifest.get("taxonomy"), dict):
        raise ValueError(f"{path} has no taxonomy: export the dataset again with a current platform")
    return manifest


def split_shards(dataset_dir, split: str) -> list[Path]:
    """The Parquet files of one split (train, validation, test), in order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return sorted((Path(dataset_dir) / "data").glob(f"{split}-*.parquet"))
