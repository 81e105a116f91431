"""The judge's answers on every pair of a candidate set, in both orders: what the judge-based
strategies of a collection round read (rl/core/strategies.py).

For each dimension of the set and each pair of candidates i < j the judge is asked "is the first
better?" with (i, j) and with (j, i) in the same forward batch (Judge.score with both_orders), with
the query the trainer uses (Judge.query); the answers are P(Yes) renormalised over {Yes, No}. A set
of N candidates judged on D dimensions costs D * N (N - 1) / 2 pairs, 2 rows each.

Plain Python + torch: no Django.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .strategies import PairScore


@dataclass
class SetToScore:
    """One candidate set: `images` float (3, H, W) in [0, 1] by candidate index; `queries`
    {dimension slug: the judge's question for this input}."""

    key: int
    images: Sequence
    queries: dict[str, str]


def pair_rows(candidate_set: SetToScore) -> list[tuple[str, int, int]]:
    """(dimension, i, j) for every pair i < j under every dimension, in the order scored."""
    count = len(candidate_set.images)
    return [(dimension, i, j) for dimension in candidate_set.queries
            for i in range(count) for j in range(i + 1, count)]


def score_set(judge, candidate_set: SetToScore, batch_size: int = 16) -> list[PairScore]:
    """The judge's PairScores of one set (Judge or anything with its `score` and both orders)."""
    rows = pair_rows(candidate_set)
    if not rows:
        return []
    images, queries = candidate_set.images, candidate_set.queries
    answers = judge.score([images[i] for _, i, _ in rows], [images[j] for _, _, j in rows],
                          [queries[dimension] for dimension, _, _ in rows], both_orders=True, batch_size=batch_size)
    forward = [float(value) for value in answers["p_yes_renormalised"]]
    reversed_ = [float(value) for value in answers["p_yes_reversed_renormalised"]]
    return [PairScore(dimension, i, j, f, r) for (dimension, i, j), f, r in zip(rows, forward, reversed_)]
