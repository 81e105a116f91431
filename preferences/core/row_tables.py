"""Rows of many (candidate set, dimension) units at once, built column by column.

`pair_table` turns the pairs of a buffer of units (pair_arrays) into the dataset's row table and
the text the content hash reads of each row, the same bytes `files.canonical_row` makes of a row
dict (the repr of its list of values): values that belong to a set or a candidate are written once
per set or candidate and repeated by index (Arrow `take`), numbers are formatted by Arrow, and
each row's text is joined in C. Only the pair id, a hash of each row's key, is made row by row.
"""
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .files import ROW_COLUMNS
from .pair_arrays import PairArrays
from .pairing import ORIGINS

# Row columns read from the set a row belongs to (both images of a pair come from one set).
SET_COLUMNS = {
    "split": "split", "input_id": "input_id", "input_hash": "input_hash", "task": "task", "prompt": "prompt",
    "prompt_given": "prompt_given", "source": "source", "mask": "mask", "candidate_set_id": "set_id",
    "winner_generator": "generator", "winner_generator_id": "generator_id", "winner_batch_id": "batch_id",
    "loser_generator": "generator", "loser_generator_id": "generator_id", "loser_batch_id": "batch_id",
}
# Row columns read from a candidate: (side, position in the candidate's (public id, image, settings)).
CANDIDATE_COLUMNS = {
    "winner_candidate": ("winner", 0), "winner_image": ("winner", 1), "winner_settings": ("winner", 2),
    "loser_candidate": ("loser", 0), "loser_image": ("loser", 1), "loser_settings": ("loser", 2),
}
ORIGIN_VALUES = pa.array(list(ORIGINS))
ORIGIN_TEXT = pa.array([repr(origin) for origin in ORIGINS])


def _text(value) -> str:
    """A value as canonical_row writes it: an embedded image by its storage name."""
    return repr(value["path"] if isinstance(value, dict) else value)


def _repeated(values: list, index: pa.Array, arrow_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """The column and its text for `values` taken at `index`."""
    return (pa.array(values, type=arrow_type).take(index),
            pa.array([_text(value) for value in values], type=pa.string()).take(index))


def _numbers(values: np.ndarray, arrow_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    column = pa.array(values.astype(arrow_type.to_pandas_dtype()))
    if pa.types.is_floating(arrow_type):
        # Few distinct values (ratios of small counts): Python's repr of each, repeated.
        distinct, inverse = np.unique(values, return_inverse=True)
        return column, pa.array([repr(float(value)) for value in distinct]).take(pa.array(inverse.ravel()))
    return column, pc.cast(column, pa.string())


def pair_table(pairs: PairArrays, unit_set: np.ndarray, unit_dimension: list[str], sets: list[dict],
               candidates: list[list[tuple]], schema: pa.Schema) -> tuple[pa.Table, pa.Array]:
    """The rows of `pairs` and each row's hashed text ("[...]\\n", canonical_row's bytes and a newline).

    `unit_set[u]`: the position in `sets` of unit u's set; `unit_dimension[u]`: its dimension slug;
    `sets`: per set, the values named by SET_COLUMNS; `candidates[s]`: set s's candidates by index,
    each (public id, image, settings JSON).
    """
    types = {field.name: field.type for field in schema}
    columns, text = {}, {}
    row_set = pa.array(unit_set[pairs.unit])
    for column, key in SET_COLUMNS.items():
        columns[column], text[column] = _repeated([values[key] for values in sets], row_set, types[column])
    columns["dimension"], text["dimension"] = _repeated(unit_dimension, pa.array(pairs.unit), pa.string())
    starts = np.cumsum([0] + [len(per_set) for per_set in candidates[:-1]], dtype=np.int64)
    flat = [candidate for per_set in candidates for candidate in per_set]
    at = {"winner": pa.array(starts[unit_set[pairs.unit]] + pairs.winner),
          "loser": pa.array(starts[unit_set[pairs.unit]] + pairs.loser)}
    for column, (side, position) in CANDIDATE_COLUMNS.items():
        columns[column], text[column] = _repeated([candidate[position] for candidate in flat], at[side],
                                                  types[column])
    for column, values in (("winner_index", pairs.winner), ("loser_index", pairs.loser),
                           ("votes_for", pairs.votes_for), ("votes_against", pairs.votes_against),
                           ("discards", pairs.discards), ("soft_label", pairs.soft_label),
                           ("weight", pairs.weight)):
        columns[column], text[column] = _numbers(values, types[column])
    origin = pa.array(pairs.origin)
    columns["origin"], text["origin"] = ORIGIN_VALUES.take(origin), ORIGIN_TEXT.take(origin)
    annotators = pa.ListArray.from_arrays(pa.array(pairs.annotator_offsets.astype(np.int32)),
                                          pa.array(pairs.annotator_values, type=pa.int64()))
    names = pc.cast(annotators, pa.list_(pa.string()))
    columns["annotators"] = annotators
    text["annotators"] = pc.binary_join_element_wise("[", pc.binary_join(names, ", "), "]", "")
    # The pair id: a hash of "set:dimension:winner:loser:annotator,annotator".
    prefixes = pa.array([f"{values['set_id']}:{dimension}" for values, dimension in
                         zip((sets[s] for s in unit_set), unit_dimension)]).take(pa.array(pairs.unit))
    keys = pc.binary_join_element_wise(prefixes, text["winner_index"], text["loser_index"],
                                       pc.binary_join(names, ","), ":")
    sha256 = hashlib.sha256
    ids = pa.array([sha256(key.encode()).hexdigest()[:20] for key in keys.to_pylist()], type=pa.string())
    columns["pair_id"] = ids
    text["pair_id"] = pc.binary_join_element_wise("'", ids, "'", "")
    table = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
    joined = pc.binary_join_element_wise(*(text[name] for name in ROW_COLUMNS), ", ")
    lines = pc.binary_join_element_wise("[", joined, "]\n", "")
    return table, lines


def text_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a string array, without copying."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:end] if len(lines) else memoryview(b"")
