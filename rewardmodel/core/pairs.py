"""Annotated preference pairs read from an exported dataset folder, as a torch Dataset.

A dataset folder (annotation/preference_files.py) holds manifest.json, whose "taxonomy" names the
tasks and dimensions, and data/{split}-NNNNN.parquet shards with one row per (pair, dimension).
The narrow columns of a split (ids, task, dimension, prompt, votes, weights, image URIs) are read
once and kept as Arrow arrays; images are read only when an item is asked for:

- a storage URI: file:///... or s3://bucket/key (boto3; credentials and endpoint from the
  environment: the standard AWS_* variables, or the platform's ONEREWARD_S3_* ones);
- an embedded image {"bytes", "path"}: its column is read one row group at a time, and only the
  last few row groups are kept (`cache_row_groups`). `order()` shuffles row groups and rows within
  them for such datasets, so that a pass reads every row group once instead of once per row.

Plain Python + torch + pyarrow: no Django.
"""
from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import Dataset

from .layout import read_manifest, split_shards
from .query import build_query

IMAGE_COLUMNS = ("winner_image", "loser_image")
# Read for every row up front: small per row, and needed to build queries and weights.
NARROW_COLUMNS = ("pair_id", "input_id", "task", "dimension", "prompt", "candidate_set_id", "soft_label", "weight",
                  "votes_for", "votes_against")
# Which candidate each image is, when the files say (older exports may not): rows that show the
# same candidates (a pair's other dimensions, its other order) can then share the decoded image.
CANDIDATE_COLUMNS = ("winner_candidate", "loser_candidate")


class ImageReader:
    """Opens an image from a URI or an embedded struct; float (3, H, W) in [0, 1]."""

    def __init__(self, dataset_dir: Path, image_size=None):
        self.dataset_dir = Path(dataset_dir)
        self.image_size = _size(image_size)
        self._s3 = None  # made on first use, so that every DataLoader worker makes its own

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_s3"] = None  # a boto3 client does not pickle (spawned DataLoader workers)
        return state

    def read(self, value) -> torch.Tensor:
        if isinstance(value, dict):
            if value.get("bytes"):
                data = value["bytes"]
            elif value.get("path"):
                data = self._read_location(value["path"])
            else:
                raise ValueError("an embedded image with neither bytes nor path")
        elif isinstance(value, str) and value:
            data = self._read_location(value)
        else:
            raise ValueError(f"not an image reference: {value!r}")
        return self.decode(data)

    def decode(self, data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            if self.image_size is not None and image.size != (self.image_size[1], self.image_size[0]):
                image = image.resize((self.image_size[1], self.image_size[0]), Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.uint8).copy()
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)

    def _read_location(self, location: str) -> bytes:
        parsed = urlparse(location)
        if parsed.scheme == "file":
            return Path(url2pathname(unquote(parsed.path))).read_bytes()
        if parsed.scheme == "s3":
            response = self._s3_client().get_object(Bucket=parsed.netloc, Key=unquote(parsed.path.lstrip("/")))
            return response["Body"].read()
        if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a plain path (a drive letter is no scheme)
            path = Path(location)
            return (path if path.is_absolute() else self.dataset_dir / path).read_bytes()
        raise ValueError(f"cannot read images from {parsed.scheme}:// URIs ({location})")

    def _s3_client(self):
        if self._s3 is None:
            import boto3

            env = os.environ.get
            self._s3 = boto3.client(
                "s3",
                endpoint_url=(env("ONEREWARD_S3_ENDPOINT_URL") or env("AWS_ENDPOINT_URL_S3")
                              or env("AWS_ENDPOINT_URL") or None),
                region_name=env("ONEREWARD_S3_REGION") or None,
                aws_access_key_id=env("ONEREWARD_S3_ACCESS_KEY_ID") or None,
                aws_secret_access_key=env("ONEREWARD_S3_SECRET_ACCESS_KEY") or None,
            )
        return self._s3


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    height, width = image_size
    return (int(height), int(width))


class PreferencePairs(Dataset):
    """The pairs of one split. Item i:

        winner, loser: float (3, H, W) in [0, 1] (H, W the stored size, or `image_size`)
        query: the judge's question, build_query(manifest taxonomy, task, dimension, prompt)
        task, dimension, pair_id: str; candidate_set_id, input_id, votes_for, votes_against: int
        soft_label, weight: float

    image_size: None keeps each image's size; an int or (height, width) resizes both images.
    """

    def __init__(self, dataset_dir, split: str, *, image_size=None, cache_row_groups: int = 2):
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.manifest = read_manifest(self.dataset_dir)
        self.taxonomy = self.manifest["taxonomy"]
        self.shards = split_shards(self.dataset_dir, split)
        self.reader = ImageReader(self.dataset_dir, image_size)
        self.cache_row_groups = max(1, cache_row_groups)
        self._cache: OrderedDict = OrderedDict()

        tables, groups = [], []  # groups: (shard index, row group, first row of the group in the split)
        self.embedded = False
        self.has_candidates = False
        offset = 0
        for shard_index, path in enumerate(self.shards):
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
            missing = [name for name in (*NARROW_COLUMNS, *IMAGE_COLUMNS) if name not in schema.names]
            if missing:
                raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
            embedded = [pa.types.is_struct(schema.field(name).type) for name in IMAGE_COLUMNS]
            if any(embedded) != all(embedded) or (shard_index and any(embedded) != self.embedded):
                raise ValueError(f"{path}: image columns mix embedded images and URIs")
            self.embedded = all(embedded)
            columns = list(NARROW_COLUMNS) + ([] if self.embedded else list(IMAGE_COLUMNS))
            has_candidates = all(name in schema.names for name in CANDIDATE_COLUMNS)
            if shard_index and has_candidates != self.has_candidates:
                raise ValueError(f"{path}: some shards of the {split} split name the candidates, others do not")
            self.has_candidates = has_candidates
            columns += list(CANDIDATE_COLUMNS) if has_candidates else []
            tables.append(parquet.read(columns=columns))
            for group in range(parquet.num_row_groups):
                groups.append((shard_index, group, offset))
                offset += parquet.metadata.row_group(group).num_rows
        self._groups = groups
        self._group_starts = np.array([start for _, _, start in groups], dtype=np.int64)
        if tables:
            self.table = pa.concat_tables(tables).combine_chunks()
        else:
            self.table = pa.table({name: pa.array([], type=pa.string()) for name in NARROW_COLUMNS})
        self._columns = {name: self.table.column(name) for name in self.table.column_names}
        self.weights = self._numeric("weight", default=1.0)
        self.soft_labels = self._numeric("soft_label", default=1.0)
        self._queries: dict[tuple[str, str, str], str] = {}

    def _numeric(self, name: str, default: float) -> np.ndarray:
        if not len(self.table):
            return np.zeros(0, dtype=np.float64)
        column = self.table.column(name).to_numpy(zero_copy_only=False)
        return np.nan_to_num(np.asarray(column, dtype=np.float64), nan=default)

    def __len__(self) -> int:
        return self.table.num_rows

    def query(self, task: str, dimension: str, prompt: str) -> str:
        key = (task, dimension, prompt)
        if key not in self._queries:
            self._queries[key] = build_query(self.taxonomy, task, dimension, prompt or "")
        return self._queries[key]

    def row(self, index: int) -> dict:
        """The narrow columns of row `index` (no image read)."""
        return {name: column[index].as_py() for name, column in self._columns.items()}

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} of a split of {len(self)}")
        row = self.row(index)
        if self.embedded:
            winner, loser = self._embedded_images(index)
        else:
            winner, loser = row["winner_image"], row["loser_image"]
        return {
            "winner": self.reader.read(winner),
            "loser": self.reader.read(loser),
            "query": self.query(row["task"], row["dimension"], row["prompt"]),
            "task": row["task"],
            "dimension": row["dimension"],
            "pair_id": row["pair_id"],
            "candidate_set_id": row["candidate_set_id"],
            "input_id": row["input_id"],
            "soft_label": float(self.soft_labels[index]),
            "weight": float(self.weights[index]),
            "votes_for": int(row["votes_for"] or 0),
            "votes_against": int(row["votes_against"] or 0),
            "winner_key": _image_key(row.get("winner_candidate"), winner),
            "loser_key": _image_key(row.get("loser_candidate"), loser),
        }

    def pair_batches(self, batch_size: int) -> list[list[int]]:
        """Every row index once, in batches of at most batch_size, where the rows that show the same
        two candidates (a pair's dimensions, either order) are adjacent and in one batch (a group
        larger than batch_size is cut), so that the judge encodes the pair once per batch. Without
        candidate columns: the rows in order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not self.has_candidates:
            rows = range(len(self))
            return [list(rows[start:start + batch_size]) for start in range(0, len(self), batch_size)]
        winners = self._columns["winner_candidate"].to_pylist()
        losers = self._columns["loser_candidate"].to_pylist()
        groups: dict[tuple, list[int]] = {}
        for index, (winner, loser) in enumerate(zip(winners, losers)):
            # A row without candidate names is a group of its own.
            key = tuple(sorted((winner, loser))) if winner and loser else ("row", index)
            groups.setdefault(key, []).append(index)
        batches: list[list[int]] = []
        current: list[int] = []
        for rows in groups.values():  # in order of first appearance
            for start in range(0, len(rows), batch_size):
                part = rows[start:start + batch_size]
                if len(current) + len(part) > batch_size:
                    batches.append(current)
                    current = []
                current.extend(part)
        return batches + ([current] if current else [])

    def _embedded_images(self, index: int):
        position = int(np.searchsorted(self._group_starts, index, side="right")) - 1
        shard, group, start = self._groups[position]
        key = (shard, group)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._cache[key] = pq.ParquetFile(self.shards[shard]).read_row_group(group, columns=list(IMAGE_COLUMNS))
            while len(self._cache) > self.cache_row_groups:
                self._cache.popitem(last=False)
        images = self._cache[key]
        return (images.column("winner_image")[index - start].as_py(),
                images.column("loser_image")[index - start].as_py())

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """A permutation of the rows, fixed by (seed, epoch). With embedded images the row groups
        are shuffled and then the rows within each group, so that a pass reads each group once."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
        if not self.embedded or not len(self):
            return rng.permutation(len(self))
        ends = [*self._group_starts[1:], len(self)]
        blocks = [rng.permutation(np.arange(start, end)) for start, end in zip(self._group_starts, ends)]
        return np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])


def _image_key(candidate, image) -> tuple | None:
    """What makes two rows' images the same image: the candidate and where its picture is (a name
    alone may be reused by files written elsewhere), or None when the row does not say."""
    location = image.get("path") if isinstance(image, dict) else image
    return (candidate, location) if candidate and location else None


def collate_pairs(items: list[dict]) -> dict:
    """Items -> a batch: images stay lists of (3, H, W) tensors (sizes may differ); weight and
    soft_label become float tensors (B,); everything else a list. Rows that show the same candidate
    get the same tensor object for it, which the judge encodes once (see Judge.answer_logprobs)."""
    batch = {key: [item[key] for item in items] for key in items[0]}
    shared: dict[tuple, torch.Tensor] = {}
    for side in ("winner", "loser"):
        keys = batch.get(f"{side}_key") or [None] * len(items)
        batch[side] = [shared.setdefault(key, image) if key else image for key, image in zip(keys, batch[side])]
    batch["weight"] = torch.tensor(batch["weight"], dtype=torch.float32)
    batch["soft_label"] = torch.tensor(batch["soft_label"], dtype=torch.float32)
    return batch
