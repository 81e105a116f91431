"""Held-out accuracy of a judge per task x dimension, beside the paper's figures and the human ceiling.

For every pair (winner w, loser l) of a split the judge is asked in both orders:
    p_forward  = P(Yes | w, l, q) renormalised over {Yes, No}  -> right when > 0.5
    p_reversed = P(Yes | l, w, q) renormalised                 -> right when < 0.5
and the accuracy of a (task, dimension) row is reported per order and averaged (METHOD.md §3).

Two references sit beside each row:
- paper_accuracy: the OneReward paper's held-out accuracy (%), where the paper reports one;
- human_ceiling: over pairs with more than one vote, the mean share of votes that agree with the
  majority. Against individual annotators no judge can agree more often than that, so it is the
  bar a row's `vote_agreement` (the judge's agreement with the individual votes of those pairs,
  deciding by the mean of both orders) is read against.

All accuracies are percentages. Plain Python + torch: no Django.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch

from .pairs import PreferencePairs, collate_pairs

# METHOD.md §3: the paper's held-out accuracy (%), by (task slug, dimension slug).
PAPER_ACCURACY = {
    ("image_fill", "text_alignment"): 83.77,
    ("image_fill", "consistency"): 74.23,
    ("image_fill", "structure"): 74.63,
    ("image_fill", "aesthetics"): 72.10,
    ("image_extend", "text_alignment"): 80.36,
    ("image_extend", "consistency"): 72.50,
    ("image_extend", "structure"): 74.29,
    ("image_extend", "aesthetics"): 71.10,
    ("object_removal", "removal_quality"): 84.93,
}

SCORE_COLUMNS = ("pair_id", "candidate_set_id", "input_id", "task", "dimension", "p_forward", "p_reversed",
                 "votes_for", "votes_against")
ALL = "all"


@torch.no_grad()
def score_pairs(judge, pairs: PreferencePairs, batch_size: int = 16, num_workers: int = 0) -> list[dict]:
    """One row per pair (SCORE_COLUMNS), in the split's order: the judge's renormalised P(Yes) in
    both orders. Batches group the rows of one image pair, which the judge then encodes once."""
    batches = pairs.pair_batches(batch_size)
    loader = torch.utils.data.DataLoader(pairs, batch_sampler=batches, num_workers=num_workers,
                                         collate_fn=collate_pairs)
    rows: list[tuple[int, dict]] = []
    for indices, batch in zip(batches, loader):
        scores = judge.score(batch["winner"], batch["loser"], batch["query"], both_orders=True, batch_size=batch_size)
        forward = _floats(scores["p_yes_renormalised"])
        reversed_ = _floats(scores["p_yes_reversed_renormalised"])
        for i in range(len(forward)):
            rows.append((indices[i], {
                "pair_id": batch["pair_id"][i],
                "candidate_set_id": batch["candidate_set_id"][i],
                "input_id": batch["input_id"][i],
                "task": batch["task"][i],
                "dimension": batch["dimension"][i],
                "p_forward": forward[i],
                "p_reversed": reversed_[i],
                "votes_for": batch["votes_for"][i],
                "votes_against": batch["votes_against"][i],
            }))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def _floats(values) -> list[float]:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().tolist()
    return [float(value) for value in values]


def first_wins(forward: list[float], reversed_: list[float]) -> tuple[int, int]:
    """The one rule for reading the judge, in reward-model and RL evaluation alike: on P(Yes)
    renormalised over {Yes, No}, the image shown first wins when it is above 0.5. `forward` holds
    the scores with the candidate under test first, `reversed_` with it second; returns how often
    it won in each order."""
    return sum(p > 0.5 for p in forward), sum(p < 0.5 for p in reversed_)


def summarise(rows: list[dict], split: str = "test") -> dict:
    """The evaluation of scored pairs: one row per (task, dimension), sorted by task then
    dimension, and an "all" row over every pair.

    Row keys: task, dimension, pairs, forward_accuracy, reversed_accuracy, accuracy (the mean of
    the two), paper_accuracy (None where the paper has none), multi_vote_pairs, human_ceiling and
    vote_agreement (None without multi-vote pairs). Percentages; None for an empty row.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["dimension"])].append(row)
    table = [_row(task, dimension, groups[(task, dimension)]) for task, dimension in sorted(groups)]
    table.append(_row(ALL, ALL, rows))
    return {"split": split, "pairs": len(rows), "rows": table}


def _row(task: str, dimension: str, rows: list[dict]) -> dict:
    n = len(rows)
    forward, reversed_ = first_wins([row["p_forward"] for row in rows], [row["p_reversed"] for row in rows])
    shares, agreements = [], []
    for row in rows:
        votes_for, votes_against = int(row["votes_for"] or 0), int(row["votes_against"] or 0)
        votes = votes_for + votes_against
        if votes > 1:
            shares.append(max(votes_for, votes_against) / votes)
            # The judge's pick from both orders; it agrees with every vote for the side it picks.
            picks_winner = (row["p_forward"] + 1.0 - row["p_reversed"]) / 2 > 0.5
            agreements.append((votes_for if picks_winner else votes_against) / votes)
    return {
        "task": task,
        "dimension": dimension,
        "pairs": n,
        "forward_accuracy": _percent(forward, n),
        "reversed_accuracy": _percent(reversed_, n),
        "accuracy": _percent(forward + reversed_, 2 * n),
        "paper_accuracy": PAPER_ACCURACY.get((task, dimension)),
        "multi_vote_pairs": len(shares),
        "human_ceiling": 100.0 * sum(shares) / len(shares) if shares else None,
        "vote_agreement": 100.0 * sum(agreements) / len(agreements) if agreements else None,
    }


def _percent(count: int, total: int) -> float | None:
    return 100.0 * count / total if total else None


def write_scores(rows: list[dict], path) -> Path:
    """test_scores.parquet: one row per scored pair (SCORE_COLUMNS)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("pair_id", pa.string()), ("candidate_set_id", pa.int64()), ("input_id", pa.int64()),
        ("task", pa.string()), ("dimension", pa.string()), ("p_forward", pa.float64()), ("p_reversed", pa.float64()),
        ("votes_for", pa.int32()), ("votes_against", pa.int32()),
    ])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist([{name: row[name] for name in SCORE_COLUMNS} for row in rows], schema=schema),
                   partial)
    partial.replace(path)
    return path


def evaluate(judge, dataset_dir, split: str = "test", batch_size: int = 16, *, scores_path=None, image_size=None,
             num_workers: int = 0) -> dict:
    """Score every pair of `split` in both orders and summarise (see `summarise`); with
    `scores_path`, also write the per-pair scores there as Parquet."""
    pairs = PreferencePairs(dataset_dir, split, image_size=image_size)
    rows = score_pairs(judge, pairs, batch_size=batch_size, num_workers=num_workers) if len(pairs) else []
    if scores_path is not None:
        write_scores(rows, scores_path)
    if not rows:
        # An accuracy over no pairs is no figure: say so, instead of a table of zeros.
        return {"split": split, "pairs": 0, "rows": [], "not_evaluated": not_evaluated(split)}
    return summarise(rows, split)


def not_evaluated(split: str) -> str:
    return (f"not evaluated: the dataset version has no {split} pairs; build a version whose {split} split "
            "has inputs (see its warnings) and train on it")


def format_table(evaluation: dict, zero_shot: dict | None = None) -> str:
    """A plain-text table of an evaluation (and, when given, the zero-shot accuracy beside it)."""
    if evaluation.get("not_evaluated"):
        return evaluation["not_evaluated"]
    headers = ["task", "dimension", "pairs", "forward %", "reversed %", "accuracy %"]
    if zero_shot is not None:
        headers.append("zero-shot %")
    headers += ["paper %", "human ceiling %", "vote agreement %"]
    before = {(row["task"], row["dimension"]): row for row in (zero_shot or {}).get("rows", [])}
    lines = []
    for row in evaluation.get("rows", []):
        cells = [row["task"], row["dimension"], str(row["pairs"]), _cell(row["forward_accuracy"]),
                 _cell(row["reversed_accuracy"]), _cell(row["accuracy"])]
        if zero_shot is not None:
            cells.append(_cell(before.get((row["task"], row["dimension"]), {}).get("accuracy")))
        cells += [_cell(row["paper_accuracy"]), _cell(row["human_ceiling"]), _cell(row["vote_agreement"])]
        lines.append(cells)
    widths = [max(len(headers[i]), *(len(cells[i]) for cells in lines)) if lines else len(headers[i])
              for i in range(len(headers))]

    def render(cells):
        return "  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    title = f"{evaluation.get('split', 'test')} split, {evaluation.get('pairs', 0)} pairs"
    return "\n".join([title, render(headers), render(["-" * width for width in widths]), *map(render, lines)])


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"
