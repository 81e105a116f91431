"""Judge ablations: one or several judges scored on a test split under query variants, and their
agreement with the held-out human judgments, side by side.

A variant is how the judge is asked, written `v<template>[+no-prompt][+source]`:
- `v<template>`: the query wording (rewardmodel/core/query.py TEMPLATES). A judge trained on v1 asked
  in v2 is allowed here on purpose (Judge.query(allow_other_version=True)): the report marks it.
- `+no-prompt`: no prompt line, even for the dimensions that quote the prompt.
- `+source`: a third image, shown BEFORE the two candidates: the input's source image with its
  mask's area tinted red (`mark_mask`: one image rather than source and mask apart, so the judge
  sees where the edit is at the cost of one image's tokens); the query then says what each image is.
`v1` alone is the method's query: two images, the prompt where the dimension uses it.

Every variant is scored in both orders, so the orders are columns, not variants:
    p_f = P(Yes | w, l, q) and p_r = P(Yes | l, w, q), renormalised over {Yes, No};
    forward right when p_f > 0.5, reversed right when p_r < 0.5 (as evaluation.first_wins);
    averaged: the judge's verdict from both orders, s = (p_f + 1 - p_r) / 2, right when s > 0.5,
    half right when s = 0.5 (as the bias audit);
    mean: (forward right + reversed right) / (2 x rows), the evaluation table's (and the paper's) figure.
Accuracy is over the split's rows (w beat l in the exported dataset).

Agreement with people is over judged pairs: the rows of one (candidate set, dimension, unordered pair
of candidates), oriented as the first of them, with their voters V = {annotator: +1 for w, -1 for l}
(who voted which way: the rows list who backed their winner; who voted against is read from the
annotation judgments by the platform). With f and a the votes for and against w, and d the judge's
averaged verdict (1: w, 0.5: a tie, 0: l):
- agreement with annotator k: d when k voted for w, 1 - d otherwise, over the pairs k judged;
- agreement with the human majority: d when f > a, 1 - d when a > f, 1/2 on a tie, over the pairs with
  at least two votes;
- human ceiling (leave-one-out): over every vote on a pair with at least two votes, whether the voter
  agrees with the majority of the OTHER voters (1/2 when the others tie); the best agreement a single
  person shows with the rest, the bar for the two figures above;
- judge in an annotator's place: the same instances with the judge's verdict in the left-out voter's
  place, the like-for-like comparison with the ceiling.
Each rate carries a Wilson 95 % interval; instances within one pair are not independent, so the
intervals are a little narrow. Plain Python + torch + pyarrow: no Django.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from preferences.core.pairing import relations

from .bias_audit import Rate, sides_with_people
from .layout import split_shards
from .query import TEMPLATE_VERSION, TEMPLATES

if TYPE_CHECKING:  # torch only where images are scored: the web side reads variants and reports
    import torch

    from .pairs import PreferencePairs

ORDERS = ("forward", "reversed", "averaged")
ALL = "all"
NO_PROMPT, SOURCE = "no-prompt", "source"
# Tint of the area to edit in the marked source: red at this opacity.
MASK_TINT = (1.0, 0.0, 0.0)
MASK_OPACITY = 0.5
# Columns of the test rows the report reads besides the judge's scores.
ROW_COLUMNS = ("pair_id", "candidate_set_id", "task", "dimension", "winner_index", "loser_index", "votes_for",
               "votes_against", "annotators")


class VariantError(ValueError):
    """A variant name that does not parse; the message says how to write one."""


@dataclass(frozen=True)
class Variant:
    template: int = TEMPLATE_VERSION
    prompt: bool = True
    source: bool = False

    @property
    def name(self) -> str:
        return (f"v{self.template}" + (f"+{NO_PROMPT}" if not self.prompt else "")
                + (f"+{SOURCE}" if self.source else ""))

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """`v<template>[+no-prompt][+source]` (parts in any order after the template)."""
        parts = [part.strip().lower() for part in str(text).split("+")]
        match = re.fullmatch(r"v(\d+)", parts[0])
        rest = parts[1:]
        if match is None or len(set(rest)) != len(rest) or set(rest) - {NO_PROMPT, SOURCE}:
            raise VariantError(
                f"unknown variant {text!r}: write v<template>[+{NO_PROMPT}][+{SOURCE}], e.g. v1, v2+{NO_PROMPT}, "
                f"v1+{SOURCE}; the templates are {', '.join(map(str, sorted(TEMPLATES)))}")
        version = int(match.group(1))
        if version not in TEMPLATES:
            raise VariantError(f"variant {text!r}: there is no query template version {version}; the versions are "
                               f"{', '.join(map(str, sorted(TEMPLATES)))}")
        return cls(template=version, prompt=NO_PROMPT not in rest, source=SOURCE in rest)


def parse_variants(names: Iterable[str]) -> list[Variant]:
    """Variants in the order given, each once; the method's query (v{TEMPLATE_VERSION}) when none."""
    variants: list[Variant] = []
    for name in names or ():
        variant = Variant.parse(name)
        if variant not in variants:
            variants.append(variant)
    return variants or [Variant()]


def mark_mask(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The source (3, H, W) in [0, 1] with the mask's white area (mask: (C, h, w) in [0, 1], resized to
    H x W by nearest neighbour when its size differs) tinted red at MASK_OPACITY."""
    import torch

    area = mask.float().mean(dim=0, keepdim=True)
    if area.shape[-2:] != source.shape[-2:]:
        area = torch.nn.functional.interpolate(area[None], size=source.shape[-2:], mode="nearest")[0]
    alpha = (area >= 0.5).to(source.dtype) * MASK_OPACITY
    tint = torch.tensor(MASK_TINT, dtype=source.dtype, device=source.device).view(3, 1, 1)
    return source * (1 - alpha) + tint * alpha


# --- the split's rows and images --------------------------------------------------------------------


def read_rows(dataset_dir, split: str = "test") -> list[dict]:
    """ROW_COLUMNS of every row of `split`, in the order PreferencePairs reads them."""
    return [row for shard in split_shards(dataset_dir, split)
            for row in pq.read_table(shard, columns=list(ROW_COLUMNS)).to_pylist()]


class SourceImages:
    """The marked source image of each row of a split (`mark_mask`), read a row group at a time."""

    def __init__(self, pairs: PreferencePairs):
        self.pairs = pairs
        self._groups: list[tuple[int, int, int]] = []  # (shard, row group, first row)
        offset = 0
        for shard, path in enumerate(pairs.shards):
            metadata = pq.ParquetFile(path).metadata
            for group in range(metadata.num_row_groups):
                self._groups.append((shard, group, offset))
                offset += metadata.row_group(group).num_rows
        self._cached: tuple[tuple[int, int], pa.Table] | None = None

    def __getitem__(self, index: int) -> torch.Tensor:
        shard, group, start = next(entry for entry in reversed(self._groups) if entry[2] <= index)
        if self._cached is None or self._cached[0] != (shard, group):
            table = pq.ParquetFile(self.pairs.shards[shard]).read_row_group(group, columns=["source", "mask"])
            self._cached = ((shard, group), table)
        table = self._cached[1]
        source, mask = table.column("source")[index - start].as_py(), table.column("mask")[index - start].as_py()
        if not source or not mask:
            raise ValueError(f"row {index} of the {self.pairs.split} split has no source image or mask; the "
                             f"+{SOURCE} variants need a dataset exported with them")
        return mark_mask(self.pairs.reader.read(source), self.pairs.reader.read(mask))


# --- scoring -------------------------------------------------------------------------------------


def score_variant(judge, pairs: PreferencePairs, variant: Variant, *, batch_size: int = 16,
                  on_batch: Callable[[int], None] | None = None) -> dict[str, tuple[float, float]]:
    """{pair_id: (p_f, p_r)}: the judge's renormalised P(Yes) with the winner first and second, asked
    as `variant` says (Judge.score runs without gradient). on_batch(rows scored so far) after every
    batch; it may raise to stop."""
    sources = SourceImages(pairs) if variant.source else None
    queries: dict[tuple[str, str, str], str] = {}

    def query(row) -> str:
        key = (row["task"], row["dimension"], row["prompt"] or "")
        if key not in queries:
            queries[key] = judge.query(pairs.taxonomy, *key, version=variant.template, include_prompt=variant.prompt,
                                       source=variant.source, allow_other_version=True)
        return queries[key]

    from .pairs import collate_pairs  # torch: a worker's import, never the web side's

    scores: dict[str, tuple[float, float]] = {}
    done = 0
    for indices in pairs.pair_batches(batch_size):  # a pair's rows together: the judge encodes it once
        batch = collate_pairs([pairs[i] for i in indices])
        context = None
        if sources is not None:
            # One marked source per input in the batch, read once and shared like the candidates.
            by_input: dict = {}
            for i, input_id in zip(indices, batch["input_id"]):
                if input_id not in by_input:
                    by_input[input_id] = sources[i]
            context = [by_input[input_id] for input_id in batch["input_id"]]
        result = judge.score(batch["winner"], batch["loser"], [query(pairs.row(i)) for i in indices],
                             both_orders=True, batch_size=batch_size, context=context)
        forward = result["p_yes_renormalised"].tolist()
        reversed_ = result["p_yes_reversed_renormalised"].tolist()
        for pair_id, p_f, p_r in zip(batch["pair_id"], forward, reversed_):
            scores[pair_id] = (float(p_f), float(p_r))
        done += len(indices)
        if on_batch is not None:
            on_batch(done)
    return scores


def write_scores(scores: dict[str, tuple[float, float]], path) -> Path:
    """One column's scores as Parquet (pair_id, p_forward, p_reversed), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    table = pa.table({"pair_id": pa.array(list(scores), pa.string()),
                      "p_forward": pa.array([s[0] for s in scores.values()], pa.float64()),
                      "p_reversed": pa.array([s[1] for s in scores.values()], pa.float64())})
    pq.write_table(table, partial)
    partial.replace(path)
    return path


def read_scores(path) -> dict[str, tuple[float, float]]:
    table = pq.read_table(path).to_pydict()
    return {pair: (f, r) for pair, f, r in zip(table["pair_id"], table["p_forward"], table["p_reversed"])}


# --- who voted which way -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedPair:
    """The rows of one (candidate set, dimension, unordered pair), oriented as the first row."""

    pair_id: str  # the first row's: the judge's scores of it decide
    task: str
    dimension: str
    votes_for: int  # for the first row's winner w
    votes_against: int
    voters: dict = field(default_factory=dict)  # annotator -> +1 (for w) / -1 (for l), those identified

    @property
    def votes(self) -> int:
        return self.votes_for + self.votes_against

    @property
    def identified(self) -> bool:
        """Whether every vote has its annotator (per-annotator agreement needs it)."""
        return (sum(v > 0 for v in self.voters.values()) >= self.votes_for
                and sum(v < 0 for v in self.voters.values()) >= self.votes_against)


def preference(best: int, worst: int, x: int, y: int) -> int:
    """+1 when a best/worst pick orders x over y, -1 when y over x, 0 when it does not order them
    (two middle candidates), by the pairing policy's relations (preferences/core/pairing.py)."""
    implied = relations(best, worst, max(best, worst, x, y) + 1)
    return 1 if (x, y) in implied else -1 if (y, x) in implied else 0


def judged_pairs(rows: list[dict], picks: dict | None = None) -> list[JudgedPair]:
    """Rows (ROW_COLUMNS) grouped into judged pairs, with their voters.

    picks: {(candidate_set_id, dimension): [(annotator, best index, worst index), ...]}, the
    annotation judgments behind the rows (None: only the rows' own annotator lists are known). The
    rows' lists are trusted first (each lists who backed its winner); a pick adds an annotator they
    do not list, by the direction its best/worst implies (net over an annotator's repeated picks).
    The vote counts are the first row's, or the identified voters' where those are more (rows of
    one annotator each, the per-annotator aggregation).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        key = (row["candidate_set_id"], row["dimension"], frozenset((row["winner_index"], row["loser_index"])))
        groups[key].append(row)
    judged = []
    for (set_id, dimension, _), members in groups.items():
        first = members[0]
        w, l = first["winner_index"], first["loser_index"]
        voters: dict = {}
        for row in members:
            sign = 1 if row["winner_index"] == w else -1
            for annotator in row["annotators"] or ():
                voters[annotator] = sign
        net: dict = defaultdict(int)
        for annotator, best, worst in (picks or {}).get((set_id, dimension), ()):
            if annotator not in voters and best is not None and worst is not None:
                net[annotator] += preference(best, worst, w, l)
        voters.update({annotator: 1 if total > 0 else -1 for annotator, total in net.items() if total})
        votes_for = max(int(first["votes_for"] or 0), sum(v > 0 for v in voters.values()))
        votes_against = max(int(first["votes_against"] or 0), sum(v < 0 for v in voters.values()))
        judged.append(JudgedPair(first["pair_id"], first["task"], dimension, votes_for, votes_against, voters))
    return judged


# --- the report ------------------------------------------------------------------------------------------


def verdict(p_forward: float, p_reversed: float) -> float:
    """The judge's verdict from both orders: 1 for the first row's winner, 0.5 a tie, 0 its loser."""
    return sides_with_people((p_forward + 1 - p_reversed) / 2)


def _majority(votes_for: int, votes_against: int) -> float:
    """1 when the votes favour w, 0 when they favour l, 0.5 on a tie."""
    return 1.0 if votes_for > votes_against else 0.0 if votes_against > votes_for else 0.5


def _agree(a: float, b: float) -> float:
    """Agreement of two verdicts in [0, 1] (1 = w): a tie on either side agrees half."""
    return a * b + (1 - a) * (1 - b)


def leave_one_out(pair: JudgedPair) -> list[tuple[float, float]]:
    """(left-out voter's verdict, the others' majority) for every vote of a pair with two or more votes."""
    if pair.votes < 2:
        return []
    return ([(1.0, _majority(pair.votes_for - 1, pair.votes_against))] * pair.votes_for
            + [(0.0, _majority(pair.votes_for, pair.votes_against - 1))] * pair.votes_against)


def accuracy_cell(rows: list[dict], scores: dict) -> dict:
    scored = [scores[row["pair_id"]] for row in rows if row["pair_id"] in scores]
    n = len(scored)
    forward = sum(p_f > 0.5 for p_f, _ in scored)
    reversed_ = sum(p_r < 0.5 for _, p_r in scored)
    averaged = sum(verdict(p_f, p_r) for p_f, p_r in scored)
    return {"pairs": n, "forward": asdict(Rate.of(forward, n)), "reversed": asdict(Rate.of(reversed_, n)),
            "averaged": asdict(Rate.of(averaged, n)), "mean": (forward + reversed_) / (2 * n) if n else None}


def agreement_cell(pairs: list[JudgedPair], scores: dict) -> dict:
    majority = judge_loo = 0.0
    majority_n = loo_n = 0
    for pair in pairs:
        if pair.pair_id not in scores or pair.votes < 2:
            continue
        d = verdict(*scores[pair.pair_id])
        majority += _agree(d, _majority(pair.votes_for, pair.votes_against))
        majority_n += 1
        for _, others in leave_one_out(pair):
            judge_loo += _agree(d, others)
            loo_n += 1
    return {"majority": asdict(Rate.of(majority, majority_n)), "in_annotator_place": asdict(Rate.of(judge_loo, loo_n))}


def human_ceiling(pairs: list[JudgedPair]) -> Rate:
    instances = [_agree(voter, others) for pair in pairs for voter, others in leave_one_out(pair)]
    return Rate.of(sum(instances), len(instances))


@dataclass(frozen=True)
class Column:
    """One judge asked one way: the side-by-side table's column."""

    key: str
    judge: str  # a version's name, or "zero-shot <base model>"
    variant: str
    template_version: int  # the wording asked in
    trained_template_version: int | None  # the wording the judge was trained on (None: zero-shot)

    @property
    def other_wording(self) -> bool:
        return self.trained_template_version is not None and self.trained_template_version != self.template_version


def report(rows: list[dict], scores: dict[str, dict], columns: list[Column], picks: dict | None = None,
           split: str = "test") -> dict:
    """The ablation's results as plain data.

    rows: the split's rows (ROW_COLUMNS); scores: {column key: {pair_id: (p_f, p_r)}}; picks: as in
    `judged_pairs`. Rates are in [0, 1] (`Rate`: successes, total, rate, low, high).
    Returns {split, pairs, judged_pairs, columns, rows, annotators, warnings}: one row per (task,
    dimension), sorted, then "all"; each with pairs, judged_pairs, multi_vote_pairs, votes,
    human_ceiling and cells {column key: forward, reversed, averaged, mean, majority,
    in_annotator_place}; one annotator row per annotator identified, with pairs, with_others (their own
    leave-one-out agreement) and cells {column key: the judge's agreement with them}.
    """
    judged = judged_pairs(rows, picks)
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for row in rows:
        groups[(row["task"], row["dimension"])][0].append(row)
    for pair in judged:
        groups[(pair.task, pair.dimension)][1].append(pair)
    table = [_report_row(task, dimension, *groups[(task, dimension)], scores, columns)
             for task, dimension in sorted(groups)]
    table.append(_report_row(ALL, ALL, rows, judged, scores, columns))

    warnings = []
    unidentified = [pair for pair in judged if pair.votes and not pair.identified]
    if unidentified:
        warnings.append(f"{len(unidentified)} of {len(judged)} judged pairs have votes whose annotator is not known "
                        "(no annotation judgment in the database gives it); they count towards the majority and "
                        "the ceiling, not towards the per-annotator agreement")
    for column in columns:
        if column.other_wording:
            warnings.append(f"{column.judge} was trained on query template version {column.trained_template_version}; "
                            f"{column.variant} asks it in version {column.template_version}")
    return {
        "split": split,
        "pairs": len(rows),
        "judged_pairs": len(judged),
        "columns": [{**asdict(column), "other_wording": column.other_wording} for column in columns],
        "rows": table,
        "annotators": annotator_rows([pair for pair in judged if pair.identified], scores, columns),
        "warnings": warnings,
    }


def _report_row(task, dimension, rows, judged, scores, columns) -> dict:
    multi = [pair for pair in judged if pair.votes >= 2]
    return {
        "task": task,
        "dimension": dimension,
        "pairs": len(rows),
        "judged_pairs": len(judged),
        "multi_vote_pairs": len(multi),
        "votes": sum(pair.votes for pair in multi),
        "human_ceiling": asdict(human_ceiling(judged)),
        "cells": {column.key: {**accuracy_cell(rows, scores.get(column.key, {})),
                               **agreement_cell(judged, scores.get(column.key, {}))} for column in columns},
    }


def annotator_rows(judged: list[JudgedPair], scores: dict[str, dict], columns: list[Column]) -> list[dict]:
    """Per annotator: the pairs they judged, their leave-one-out agreement with the others, and each
    column's agreement with them (the judge's averaged verdict against their vote)."""
    by_annotator: dict = defaultdict(list)
    for pair in judged:
        for annotator, sign in pair.voters.items():
            by_annotator[annotator].append((pair, 1.0 if sign > 0 else 0.0))
    out = []
    for annotator in sorted(by_annotator, key=str):
        votes = by_annotator[annotator]
        others = [(vote, _majority(pair.votes_for - (vote == 1.0), pair.votes_against - (vote == 0.0)))
                  for pair, vote in votes if pair.votes >= 2]
        cells = {}
        for column in columns:
            column_scores = scores.get(column.key, {})
            agreement = [_agree(verdict(*column_scores[pair.pair_id]), vote) for pair, vote in votes
                         if pair.pair_id in column_scores]
            cells[column.key] = asdict(Rate.of(sum(agreement), len(agreement)))
        out.append({"annotator": annotator, "pairs": len(votes),
                    "with_others": asdict(Rate.of(sum(_agree(v, o) for v, o in others), len(others))),
                    "cells": cells})
    return out
