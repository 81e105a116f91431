"""The pairs of many (candidate set, dimension) units at once, as numpy arrays.

The same rows, in the same order and with the same values, as `pairing.derive_pairs` called on
each unit in turn (tests compare the two on random votes for every option), but counted with
arrays instead of one dict of relations per vote and one object per pair: the export derives
millions of pairs, and per-pair Python objects were a fifth of its time.

The counts rest on one identity: a best/worst pick (b, w) orders x before y exactly when x == b
or y == w (see `pairing.relations`), so the votes for x > y in a unit are
    bests[x] + worsts[y] - picks[x, y]
with bests, worsts and picks counted over the unit's ranked (not discarded) votes.
"""
from dataclasses import dataclass

import numpy as np

from .pairing import (
    BEST_WORST,
    BOTH_ORDERS,
    MAJORITY,
    PER_ANNOTATOR,
    UNANIMOUS,
    PairingError,
    Vote,
    _check,
    check_options,
)

BEST_WORST_CODE, BEST_OTHER_CODE, OTHER_WORST_CODE = range(3)  # positions in pairing.ORIGINS


@dataclass
class Votes:
    """Votes in stream order; units are runs of consecutive votes (numbered 0..len(n)-1).
    `best`/`worst` are candidate indices, -1 where none was given."""

    unit: np.ndarray
    annotator: np.ndarray
    discarded: np.ndarray  # bool
    best: np.ndarray
    worst: np.ndarray
    n: np.ndarray  # candidates per unit


@dataclass
class PairArrays:
    """One entry per row, rows ordered as derive_pairs orders them, unit after unit. The
    annotators of row i are annotator_values[annotator_offsets[i]:annotator_offsets[i + 1]]."""

    unit: np.ndarray
    winner: np.ndarray
    loser: np.ndarray
    origin: np.ndarray  # position in pairing.ORIGINS
    votes_for: np.ndarray
    votes_against: np.ndarray
    discards: np.ndarray
    soft_label: np.ndarray
    weight: np.ndarray
    annotator_offsets: np.ndarray
    annotator_values: np.ndarray

    def __len__(self) -> int:
        return len(self.unit)


def _validate(votes: Votes) -> None:
    """The errors derive_pairs raises, with its messages, for the first bad vote or unit."""
    n = votes.n[votes.unit]
    bad = np.where(votes.discarded, (votes.best != -1) | (votes.worst != -1),
                   (votes.best < 0) | (votes.best >= n) | (votes.worst < 0) | (votes.worst >= n)
                   | (votes.best == votes.worst))
    small = votes.n < 2
    if small.any():
        raise PairingError(f"a set of {int(votes.n[np.argmax(small)])} candidate(s) makes no pair")
    if bad.any():
        i = int(np.argmax(bad))
        best, worst = int(votes.best[i]), int(votes.worst[i])
        _check(Vote(annotator=int(votes.annotator[i]), best=None if best == -1 else best,
                    worst=None if worst == -1 else worst, discarded=bool(votes.discarded[i])), int(n[i]))


def derive_pair_arrays(votes: Votes, *, policy: str = BEST_WORST, aggregation: str = MAJORITY,
                       tie_rule: str = "drop", min_votes: int = 1) -> PairArrays:
    check_options(policy, aggregation, tie_rule, min_votes)
    _validate(votes)
    units, size = len(votes.n), max(int(votes.n.max()) if len(votes.n) else 2, 2)
    discards = np.bincount(votes.unit[votes.discarded], minlength=units)
    # Ranked votes, by unit then annotator (a stable sort, as derive_pairs' sorted()).
    ranked = np.flatnonzero(~votes.discarded)
    ranked = ranked[np.lexsort((votes.annotator[ranked], votes.unit[ranked]))]
    unit, best, worst = votes.unit[ranked], votes.best[ranked], votes.worst[ranked]
    annotator = votes.annotator[ranked]
    ranked_count = np.bincount(unit, minlength=units)
    bests = np.zeros((units, size), np.int64)
    worsts = np.zeros((units, size), np.int64)
    picks = np.zeros((units, size, size), np.int64)
    np.add.at(bests, (unit, best), 1)
    np.add.at(worsts, (unit, worst), 1)
    np.add.at(picks, (unit, best, worst), 1)
    # votes_for[u, x, y]: ranked votes of unit u that order x before y.
    votes_for = bests[:, :, None] + worsts[:, None, :] - picks
    # Only pairs of two different candidates of the unit's own set.
    real = np.arange(size)[None, :] < votes.n[:, None]
    votes_for *= real[:, :, None] & real[:, None, :] & ~np.eye(size, dtype=bool)[None]

    if aggregation == PER_ANNOTATOR:
        rows = _per_annotator_rows(policy, votes.n, unit, best, worst, votes_for, min_votes)
        rank, row_unit, winner, loser, origin = rows
        order = np.lexsort((rank, winner > loser, np.maximum(winner, loser), np.minimum(winner, loser), row_unit))
        rank, row_unit, winner, loser, origin = (a[order] for a in rows)
        against = votes_for[row_unit, loser, winner]
        offsets = np.arange(len(rank) + 1, dtype=np.int64)
        return PairArrays(unit=row_unit, winner=winner, loser=loser, origin=origin,
                          votes_for=np.ones(len(rank), np.int64), votes_against=against,
                          discards=discards[row_unit], soft_label=np.ones(len(rank)),
                          weight=1 / ranked_count[row_unit], annotator_offsets=offsets,
                          annotator_values=annotator[rank])

    # One row per kept unordered pair (a < b), two for a tie kept both ways.
    if policy == BEST_WORST:
        kept = picks > 0
        kept = kept | kept.transpose(0, 2, 1)
    else:
        kept = (votes_for + votes_for.transpose(0, 2, 1)) > 0
    kept &= np.triu(np.ones((size, size), bool), 1)[None]
    row_unit, a, b = np.nonzero(kept)  # already ordered by (unit, a, b)
    for_a, for_b = votes_for[row_unit, a, b], votes_for[row_unit, b, a]
    tie = for_a == for_b
    both = tie & (tie_rule == BOTH_ORDERS) & (aggregation == MAJORITY) & (for_a >= min_votes)
    a_wins = for_a > for_b
    backers = np.maximum(for_a, for_b)
    single = ~tie & (backers >= min_votes)
    if aggregation == UNANIMOUS:
        single &= np.minimum(for_a, for_b) == 0
    # Rows: a single winner, or a tie as (a, b) then (b, a).
    first_winner = np.where(a_wins | tie, a, b)
    first_loser = np.where(a_wins | tie, b, a)
    keep = single | both
    repeat = np.where(both, 2, 1)[keep]
    row_unit = np.repeat(row_unit[keep], repeat)
    winner = np.repeat(first_winner[keep], repeat)
    loser = np.repeat(first_loser[keep], repeat)
    second = np.zeros(len(winner), bool)
    second[np.cumsum(repeat) - 1] = repeat == 2
    winner, loser = np.where(second, loser, winner), np.where(second, winner, loser)
    counted_for = votes_for[row_unit, winner, loser]
    counted_against = votes_for[row_unit, loser, winner]
    # Origin: the most common among the backers, the most informative first on a tie.
    exact = picks[row_unit, winner, loser]
    counts = np.stack([exact, bests[row_unit, winner] - exact, worsts[row_unit, loser] - exact])
    origin = np.argmax(counts, axis=0)  # argmax takes the first of equal counts: ORIGINS order
    offsets, values = _backers(row_unit, winner, loser, unit, best, worst, annotator, units)
    return PairArrays(unit=row_unit, winner=winner, loser=loser, origin=origin, votes_for=counted_for,
                      votes_against=counted_against, discards=discards[row_unit],
                      soft_label=counted_for / (counted_for + counted_against),
                      weight=counted_for / ranked_count[row_unit], annotator_offsets=offsets,
                      annotator_values=values)


def _per_annotator_rows(policy, n, unit, best, worst, votes_for, min_votes):
    """(rank, unit, winner, loser, origin) of every ranked vote's own pairs with enough backers;
    rank is the vote's position among the ranked votes."""
    rank = np.arange(len(unit))
    if policy == BEST_WORST:
        parts = [(rank, best, worst, np.full(len(rank), BEST_WORST_CODE))]
    else:
        size = votes_for.shape[1]
        other = np.broadcast_to(np.arange(size), (len(rank), size))
        middle = (other < n[unit][:, None]) & (other != best[:, None]) & (other != worst[:, None])
        vote, column = np.nonzero(middle)
        parts = [
            (rank, best, worst, np.full(len(rank), BEST_WORST_CODE)),
            (vote, best[vote], other[vote, column], np.full(len(vote), BEST_OTHER_CODE)),
            (vote, other[vote, column], worst[vote], np.full(len(vote), OTHER_WORST_CODE)),
        ]
    vote = np.concatenate([p[0] for p in parts])
    winner = np.concatenate([p[1] for p in parts])
    loser = np.concatenate([p[2] for p in parts])
    origin = np.concatenate([p[3] for p in parts])
    enough = votes_for[unit[vote], winner, loser] >= min_votes
    vote, winner, loser, origin = vote[enough], winner[enough], loser[enough], origin[enough]
    return vote, unit[vote], winner, loser, origin


def _backers(row_unit, winner, loser, unit, best, worst, annotator, units):
    """Who voted for each row's winner over its loser, by annotator: (offsets, values)."""
    starts = np.searchsorted(unit, np.arange(units))
    counts = np.bincount(unit, minlength=units)
    per_row = counts[row_unit]
    row = np.repeat(np.arange(len(row_unit)), per_row)
    within = np.arange(len(row)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    vote = starts[row_unit][row] + within
    backs = (best[vote] == winner[row]) | (worst[vote] == loser[row])
    offsets = np.zeros(len(row_unit) + 1, np.int64)
    np.cumsum(np.bincount(row[backs], minlength=len(row_unit)), out=offsets[1:])
    return offsets, annotator[vote[backs]]

