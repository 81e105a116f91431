"""The files of a preference dataset: one row per (pair, dimension), written batch by batch.

Plain Python + pyarrow, no Django: the export hands rows to `DatasetWriter`, as tables of many
rows (`write_table`, row_tables.pair_table) or one dict at a time (`write`); it keeps one open
writer per split and format and writes every `BATCH_ROWS` rows, so memory stays flat however many
pairs there are.

Layout of a dataset folder:
    manifest.json                    counts, content hash, schema version, the build's options
    data/{split}-00000.parquet       split = train, validation, test; a new shard every SHARD_ROWS rows
    jsonl/{split}-00000.jsonl        on request: the same rows as JSON lines
    trl/{split}-00000.parquet        on request: the chosen/rejected/images layout

Shards bound memory: a Parquet writer keeps every row group's metadata until it closes its file.
Load a dataset with `datasets.load_dataset("parquet", data_files={"train": "data/train-*.parquet", ...})`
or `pandas.read_parquet("data")`. With embedded images the Parquet schema carries the `datasets` feature
metadata, so image columns load as images.
"""
import base64
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .splits import SPLITS

SCHEMA_VERSION = 1

FORMATS = ("jsonl", "trl")
BATCH_ROWS = 5000  # rows per Parquet row group (one write per split)
SHARD_ROWS = 500_000  # rows per file
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


# The columns of a row, in the files' order (the content hash reads them in this order too).
ROW_COLUMNS = tuple(row_schema(False).names)
IMAGE_POSITIONS = tuple(ROW_COLUMNS.index(name) for name in IMAGE_COLUMNS)


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
    """The bytes of a row that the content hash covers: every column's value, in the schema's order,
    but embedded image bytes (those are the referenced files themselves, identified by their
    storage names). repr() of the list of values: exact for text, integers and floats, and cheap
    enough for millions of rows (a sorted JSON dump of every row was a fifth of the export's time)."""
    values = list(map(row.__getitem__, ROW_COLUMNS))
    for position in IMAGE_POSITIONS:
        if isinstance(values[position], dict):
            values[position] = values[position]["path"]
    return repr(values).encode()


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
        # Rows waiting for their split's next write: tables (write_table), then row dicts (write).
        self._pending: dict[str, list[pa.Table]] = {split: [] for split in SPLITS}
        self._pending_rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
        self._shard: dict[str, int] = {}  # split -> index of its open shard
        self._parquet: dict[str, pq.ParquetWriter] = {}  # open writers by relative name
        self._jsonl: dict[str, object] = {}

    def write(self, row: dict) -> None:
        self.digest.update(canonical_row(row))
        self.digest.update(b"\n")
        split = row["split"]
        self._pending_rows[split].append(row)
        if self._waiting(split) >= BATCH_ROWS:
            self._write_full(split)

    def write_table(self, table: pa.Table, text) -> None:
        """Rows built column by column (row_tables.pair_table), in the order `write` would take
        them one by one: `text` is their hashed bytes, canonical_row's and a newline per row."""
        self.digest.update(text)
        for split in SPLITS:
            part = table.filter(pc.equal(table["split"], split))
            if part.num_rows:
                self._tabulate(split)
                self._pending[split].append(part)
                if self._waiting(split) >= BATCH_ROWS:
                    self._write_full(split)

    def _waiting(self, split: str) -> int:
        return sum(table.num_rows for table in self._pending[split]) + len(self._pending_rows[split])

    def _tabulate(self, split: str) -> None:
        """Row dicts waiting in `split` join its tables, keeping their order."""
        rows = self._pending_rows[split]
        if rows:
            self._pending_rows[split] = []
            self._pending[split].append(pa.Table.from_pydict(
                {name: [row[name] for row in rows] for name in self.schema.names}, schema=self.schema))

    def _write_full(self, split: str) -> None:
        """Write BATCH_ROWS rows at a time, as row by row writing did; the rest keeps waiting."""
        self._tabulate(split)
        waiting = pa.concat_tables(self._pending[split])
        while waiting.num_rows >= BATCH_ROWS:
            self._write_rows(split, waiting.slice(0, BATCH_ROWS).combine_chunks())
            waiting = waiting.slice(BATCH_ROWS)
        self._pending[split] = [waiting] if waiting.num_rows else []

    def _flush(self, split: str) -> None:
        self._tabulate(split)
        if self._pending[split]:
            rows = pa.concat_tables(self._pending[split]).combine_chunks()
            self._pending[split] = []
            self._write_rows(split, rows)

    def _write_rows(self, split: str, table: pa.Table) -> None:
        shard = self._shard.setdefault(split, 0)
        if self.rows.get(f"data/{split}-{shard:05d}.parquet", 0) >= SHARD_ROWS:
            self._close_shard(split, shard)
            shard = self._shard[split] = shard + 1
        stem = f"{split}-{shard:05d}"
        self._write_parquet(f"data/{stem}.parquet", table)
        rows = table.to_pylist() if self.formats else []
        if "trl" in self.formats:
            trl = [trl_row(row) for row in rows]
            self._write_parquet(f"trl/{stem}.parquet", pa.Table.from_pydict(
                {name: [row[name] for row in trl] for name in self.trl_schema.names}, schema=self.trl_schema))
        if "jsonl" in self.formats:
            relative = f"jsonl/{stem}.jsonl"
            if relative not in self._jsonl:
                (self.folder / "jsonl").mkdir(parents=True, exist_ok=True)
                self._jsonl[relative] = open(self.folder / relative, "w", encoding="utf-8")
                self.rows[relative] = 0
            handle = self._jsonl[relative]
            for row in rows:
                handle.write(json.dumps({key: _jsonable(value) for key, value in row.items()}, ensure_ascii=False))
                handle.write("\n")
            self.rows[relative] += len(rows)

    def _write_parquet(self, relative: str, table: pa.Table) -> None:
        if relative not in self._parquet:
            path = self.folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            self._parquet[relative] = pq.ParquetWriter(path, table.schema, compression="zstd")
            self.rows[relative] = 0
        self._parquet[relative].write_table(table)
        self.rows[relative] += table.num_rows

    def _close_shard(self, split: str, shard: int) -> None:
        stem = f"{split}-{shard:05d}"
        for relative in (f"data/{stem}.parquet", f"trl/{stem}.parquet"):
            if relative in self._parquet:
                self._parquet.pop(relative).close()
        if f"jsonl/{stem}.jsonl" in self._jsonl:
            self._jsonl.pop(f"jsonl/{stem}.jsonl").close()

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
