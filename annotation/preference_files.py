"""The files of a preference dataset: one row per (pair, dimension), written batch by batch.

Plain Python + pyarrow, no Django: the export hands rows (dicts) to `DatasetWriter`, which keeps
one open writer per split and format and flushes every `BATCH_ROWS` rows, so memory stays flat
however many pairs there are.

Layout of a dataset folder:
    manifest.json                    counts, content hash, schema version, the build's options
    data/{train,validation,test}.parquet
    jsonl/{split}.jsonl              on request: the same rows as JSON lines
    trl/{split}.parquet              on request: the chosen/rejected/images layout

Load it with `datasets.load_dataset("parquet", data_files={"train": "data/train.parquet", ...})`
or `pandas.read_parquet`. With embedded images the Parquet schema carries the `datasets` feature
metadata, so image columns load as images.
"""
import base64
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
FORMATS = ("jsonl", "trl")
BATCH_ROWS = 5000
IMAGE_COLUMNS = ("source", "mask", "winner_image", "loser_image")

# An embedded image, as `datasets.Image` stores it.
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def row_schema(embed_images: bool) -> pa.Schema:
    image = IMAGE_TYPE if embed_images else pa.string()
    fields = [
        ("pair_id", pa.string()),
        ("split", pa.string()),
        ("input_id", pa.int64()),
        ("input_hash", pa.string()),
        ("task", pa.string()),
        ("dimension", pa.string()),
        ("prompt", pa.string()),
        ("prompt_given", pa.bool_()),
        ("source", image),
        ("mask", image),
        ("candidate_set_id", pa.int64()),
        ("winner_candidate", pa.string()),
        ("loser_candidate", pa.string()),
        ("winner_index", pa.int16()),
        ("loser_index", pa.int16()),
        ("winner_image", image),
        ("loser_image", image),
        ("origin", pa.string()),
        ("votes_for", pa.int32()),
        ("votes_against", pa.int32()),
        ("discards", pa.int32()),
        ("soft_label", pa.float64()),
        ("weight", pa.float64()),
        ("annotators", pa.list_(pa.int64())),
        ("winner_generator", pa.string()),
        ("winner_generator_id", pa.int64()),
        ("winner_batch_id", pa.int64()),
        ("winner_settings", pa.string()),
        ("loser_generator", pa.string()),
        ("loser_generator_id", pa.int64()),
        ("loser_batch_id", pa.int64()),
        ("loser_settings", pa.string()),
    ]
    schema = pa.schema(fields)
    if embed_images:
        schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": _features(schema)}})})
    return schema


def trl_schema(embed_images: bool) -> pa.Schema:
    image = IMAGE_TYPE if embed_images else pa.string()
    schema = pa.schema([
        ("prompt", pa.string()),
        ("images", pa.list_(image)),
        ("chosen", image),
        ("rejected", image),
        ("task", pa.string()),
        ("dimension", pa.string()),
        ("soft_label", pa.float64()),
        ("weight", pa.float64()),
        ("pair_id", pa.string()),
    ])
    if embed_images:
        schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": _features(schema)}})})
    return schema


def _feature(arrow_type: pa.DataType) -> dict:
    """The `datasets` feature dict of an arrow type (written by hand: `datasets` is not needed to export)."""
    if arrow_type == IMAGE_TYPE:
        return {"_type": "Image"}
    if pa.types.is_list(arrow_type):
        return {"feature": _feature(arrow_type.value_type), "_type": "Sequence"}
    names = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32", pa.int16(): "int16",
             pa.float64(): "float64", pa.bool_(): "bool"}
    return {"dtype": names[arrow_type], "_type": "Value"}


def _features(schema: pa.Schema) -> dict:
    return {field.name: _feature(field.type) for field in schema}


def trl_row(row: dict) -> dict:
    """The chosen/rejected/images layout read by TRL-style preference tools: the conditioning
    (source image and mask) under `images`, the winner as `chosen`, the loser as `rejected`."""
    return {
        "prompt": row["prompt"],
        "images": [row["source"], row["mask"]],
        "chosen": row["winner_image"],
        "rejected": row["loser_image"],
        "task": row["task"],
        "dimension": row["dimension"],
        "soft_label": row["soft_label"],
        "weight": row["weight"],
        "pair_id": row["pair_id"],
    }


def canonical_row(row: dict) -> bytes:
    """The bytes of a row that the content hash covers: everything but embedded image bytes
    (those are the referenced files themselves, identified by their storage names)."""
    plain = {key: (value["path"] if isinstance(value, dict) and "bytes" in value else value)
             for key, value in row.items()}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _jsonable(value):
    if isinstance(value, dict) and "bytes" in value:
        return {"path": value["path"], "bytes": base64.b64encode(value["bytes"]).decode() if value["bytes"] else None}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


class DatasetWriter:
    """Writes rows into a folder, split by split, in Parquet (always) and the asked formats.

    Files are opened when their first row comes, so an empty split leaves no file; `close()` ends
    them all and returns {relative path: rows}. `digest` hashes every row in the order written.
    """

    def __init__(self, folder: Path, *, embed_images: bool, formats=()):
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
        self.folder = Path(folder)
        self.formats = tuple(formats)
        self.schema = row_schema(embed_images)
        self.trl_schema = trl_schema(embed_images)
        self.digest = hashlib.sha256()
        self.rows: dict[str, int] = {}
        self._pending: dict[str, list[dict]] = {split: [] for split in SPLITS}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._jsonl: dict[str, object] = {}

    def write(self, row: dict) -> None:
        self.digest.update(canonical_row(row))
        self.digest.update(b"\n")
        pending = self._pending[row["split"]]
        pending.append(row)
        if len(pending) >= BATCH_ROWS:
            self._flush(row["split"])

    def _open_parquet(self, relative: str, schema: pa.Schema) -> pq.ParquetWriter:
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows.setdefault(relative, 0)
        return pq.ParquetWriter(path, schema, compression="zstd")

    def _flush(self, split: str) -> None:
        rows = self._pending[split]
        if not rows:
            return
        self._pending[split] = []
        data = f"data/{split}.parquet"
        if data not in self._parquet:
            self._parquet[data] = self._open_parquet(data, self.schema)
        self._parquet[data].write_table(pa.Table.from_pylist(rows, schema=self.schema))
        self.rows[data] += len(rows)
        if "trl" in self.formats:
            trl = f"trl/{split}.parquet"
            if trl not in self._parquet:
                self._parquet[trl] = self._open_parquet(trl, self.trl_schema)
            self._parquet[trl].write_table(pa.Table.from_pylist([trl_row(row) for row in rows], schema=self.trl_schema))
            self.rows[trl] += len(rows)
        if "jsonl" in self.formats:
            jsonl = f"jsonl/{split}.jsonl"
            if jsonl not in self._jsonl:
                (self.folder / "jsonl").mkdir(parents=True, exist_ok=True)
                self._jsonl[jsonl] = open(self.folder / jsonl, "w", encoding="utf-8")
                self.rows[jsonl] = 0
            handle = self._jsonl[jsonl]
            for row in rows:
                handle.write(json.dumps({key: _jsonable(value) for key, value in row.items()}, ensure_ascii=False))
                handle.write("\n")
            self.rows[jsonl] += len(rows)

    def close(self) -> dict[str, int]:
        for split in SPLITS:
            self._flush(split)
        for writer in self._parquet.values():
            writer.close()
        for handle in self._jsonl.values():
            handle.close()
        return dict(sorted(self.rows.items()))

    def abort(self) -> None:
        """Close what is open without caring about the files (the caller removes the folder)."""
        for writer in self._parquet.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the folder is thrown away
                pass
        for handle in self._jsonl.values():
            handle.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
