"""Which inputs and candidate sets of a collection round go to annotators first.

A round orders its candidate sets by a strategy and opens annotation tasks for the first K. The
judge-based strategies read the judge's answers on every pair of a set: for each judged dimension
d and candidates i < j, P(Yes) renormalised over {Yes, No} in both orders,
    forward  f = P(Yes | first = i, second = j, q_d)
    reversed r = P(Yes | first = j, second = i, q_d).
A judge that is consistent across orders has f = 1 - r; from both orders, i beats j with
    win(i, j) = (f + 1 - r) / 2,  win(j, i) = 1 - win(i, j)
(the rule reranking and evaluation use: averaging the orders cancels the position bias).

Strategies, each a figure per set in [0, 1], higher = sooner:
- random: no figure; a shuffle seeded by the round's seed;
- uncertainty: 1 - mean over the set's pairs and both orders of 2 |P(Yes) - 0.5|: 1 when the judge
  answers 0.5 to every question, 0 when it is certain of every answer (whichever way);
- order_disagreement: mean over the set's pairs of |f - (1 - r)| = |f + r - 1|: 0 when the two
  orders tell the same story, 1 when the judge says "the first is better" (or "worse") to both;
- human_disagreement: for a set annotators judged, the mean over the pairs their picks imply (per
  judgment and dimension, best > every other and every other > worst, preferences.core.pairing)
  of 1 - win(winner, loser): 0 when the judge backs every human pair with certainty, 1 when it
  contradicts each. A set without a non-discarded pick has no figure and is left out.
Ties (and random's shuffle) are settled by the set id, lowest first, so a ranking is reproducible.

Inputs of a round: the least annotated first (fewest annotation tasks so far), ties in an order
seeded by the round's seed.

Plain Python, no Django, no torch.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from preferences.core.pairing import relations

RANDOM = "random"
UNCERTAINTY = "uncertainty"
ORDER_DISAGREEMENT = "order_disagreement"
HUMAN_DISAGREEMENT = "human_disagreement"
STRATEGIES = (RANDOM, UNCERTAINTY, ORDER_DISAGREEMENT, HUMAN_DISAGREEMENT)
# Strategies that need the judge's scores of the sets (a GPU job), and the one that ranks sets
# annotators have judged already instead of new ones.
JUDGE_STRATEGIES = (UNCERTAINTY, ORDER_DISAGREEMENT, HUMAN_DISAGREEMENT)
JUDGED_SETS_STRATEGIES = (HUMAN_DISAGREEMENT,)


class StrategyError(ValueError):
    """An unknown strategy, or scores a strategy cannot read; the message says which."""


@dataclass(frozen=True)
class PairScore:
    """The judge on one pair of a set under one dimension: candidates `first` < `second` (indices
    in the set), `forward` = P(Yes | first shown first), `reversed` = P(Yes | second shown first),
    both renormalised over {Yes, No}, in [0, 1]."""

    dimension: str
    first: int
    second: int
    forward: float
    reversed: float

    def as_list(self) -> list:
        return [self.dimension, self.first, self.second, self.forward, self.reversed]

    @classmethod
    def from_list(cls, values: Sequence) -> "PairScore":
        dimension, first, second, forward, reversed_ = values
        return cls(str(dimension), int(first), int(second), float(forward), float(reversed_))

    def win(self, winner: int, loser: int) -> float:
        """P(`winner` beats `loser`) from both orders."""
        first_wins = (self.forward + 1.0 - self.reversed) / 2.0
        if (winner, loser) == (self.first, self.second):
            return first_wins
        if (winner, loser) == (self.second, self.first):
            return 1.0 - first_wins
        raise StrategyError(f"pair ({winner}, {loser}) is not this score's pair ({self.first}, {self.second})")


@dataclass(frozen=True)
class HumanPick:
    """One annotator's best and worst of one set on one dimension (candidate indices)."""

    dimension: str
    best: int
    worst: int


def uncertainty(pairs: Sequence[PairScore]) -> float:
    """1 - mean of 2 |P(Yes) - 0.5| over the pairs and both orders; see the module docstring."""
    if not pairs:
        raise StrategyError("uncertainty needs the judge's scores of at least one pair")
    certainty = sum(abs(p.forward - 0.5) + abs(p.reversed - 0.5) for p in pairs) / len(pairs)
    return 1.0 - certainty


def order_disagreement(pairs: Sequence[PairScore]) -> float:
    """Mean of |forward + reversed - 1| over the pairs; see the module docstring."""
    if not pairs:
        raise StrategyError("order disagreement needs the judge's scores of at least one pair")
    return sum(abs(p.forward + p.reversed - 1.0) for p in pairs) / len(pairs)


def human_pairs(picks: Iterable[HumanPick], n: int) -> list[tuple[str, int, int]]:
    """(dimension, winner, loser) for every relation the picks imply (2N-3 per pick; repeated
    when several annotators imply the same one: each is a vote)."""
    return [(pick.dimension, winner, loser) for pick in picks
            for winner, loser in relations(pick.best, pick.worst, n)]


def human_disagreement(pairs: Sequence[PairScore], picks: Iterable[HumanPick], n: int) -> float | None:
    """Mean of 1 - win(winner, loser) over the pairs the picks imply, on the dimensions the judge
    scored; None when no pick leaves such a pair."""
    by_pair = {(p.dimension, p.first, p.second): p for p in pairs}
    disagreements = []
    for dimension, winner, loser in human_pairs(picks, n):
        score = by_pair.get((dimension, min(winner, loser), max(winner, loser)))
        if score is not None:
            disagreements.append(1.0 - score.win(winner, loser))
    return sum(disagreements) / len(disagreements) if disagreements else None


def figure(strategy: str, pairs: Sequence[PairScore], picks: Iterable[HumanPick] = (), n: int = 0) -> float | None:
    """A set's figure under a judge-based strategy (higher = sooner)."""
    if strategy == UNCERTAINTY:
        return uncertainty(pairs)
    if strategy == ORDER_DISAGREEMENT:
        return order_disagreement(pairs)
    if strategy == HUMAN_DISAGREEMENT:
        return human_disagreement(pairs, picks, n)
    raise StrategyError(f"strategy {strategy!r} gives no figure; judge-based strategies: "
                        f"{', '.join(JUDGE_STRATEGIES)}")


def rank(figures: Mapping[int, float | None]) -> list[int]:
    """Set ids, highest figure first, ties by id; sets without a figure are left out."""
    return sorted((key for key, value in figures.items() if value is not None), key=lambda key: (-figures[key], key))


def shuffled(ids: Iterable[int], seed: int) -> list[int]:
    """`ids` in an order fixed by `seed` alone (sorted first, so the reading order does not matter)."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return order


def order_sets(strategy: str, ids: Iterable[int], *, seed: int = 0,
               figures: Mapping[int, float | None] | None = None) -> list[int]:
    """The ids of a round's sets in the order their tasks open: random's shuffle, or the ranking
    of `figures` (every judge-based strategy)."""
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}; strategies: {', '.join(STRATEGIES)}")
    if strategy == RANDOM:
        return shuffled(ids, seed)
    if figures is None:
        raise StrategyError(f"strategy {strategy!r} ranks sets by the judge's figures; none were given")
    wanted = set(ids)
    return rank({key: value for key, value in figures.items() if key in wanted})


def pick_inputs(annotated: Mapping[int, int], count: int | None, seed: int) -> list[int]:
    """Input ids for a round: `annotated` maps each eligible input to its annotation tasks so far;
    the least annotated first, ties in an order seeded by `seed`; the first `count` (None = all)."""
    tie_break = {key: position for position, key in enumerate(shuffled(annotated, seed))}
    order = sorted(annotated, key=lambda key: (annotated[key], tie_break[key]))
    return order if count is None else order[:count]
