"""Winner/loser pairs from best/worst judgments: the one place where the pairing policy lives.

Plain Python, no Django: the export streams judgments through `derive_pairs`, and tests feed it
hand-made votes.

What one judgment says about one (candidate set, dimension), with N candidates:
- discarded ("no clear difference"): nothing; it makes no pair and no vote;
- best b and worst w: b > w ("best>worst"), b > m for every middle candidate m ("best>other") and
  m > w ("other>worst"), 2N-3 relations in all. Two middle candidates are never ordered: that
  pair is unknown and is never invented.

The pairing policy chooses which pairs a dataset holds:
- `best_worst`: the pairs that some annotator picked as (best, worst), as in the paper;
- `best_worst_all`: every pair that some annotator's judgment orders.
Whatever the policy, the votes on a kept pair are counted over every annotator whose judgment
orders it, so a second annotator's best > other relation counts for or against a first
annotator's best > worst pair.

Several annotators on one set are then aggregated per pair:
- `majority`: one row, won by the side with more votes; a tie follows the tie rule;
- `unanimous`: one row, only when no vote goes the other way;
- `per_annotator`: one row per annotator whose own pairs (under the policy) include it.
The tie rule is `drop` (no row) or `both_orders` (a row each way, soft label 0.5). A winner
needs at least `min_votes` votes.

Every row carries the counts it rests on: `votes_for`, `votes_against`, `discards` (annotators
who saw no clear difference on that dimension), `soft_label` = votes_for / (votes_for +
votes_against), and `weight` = votes_for / annotators who ranked the dimension (1 when every
annotator who ranked it backs the row; a per-annotator row gets 1 / annotators who ranked it, so
one pair's rows add up to at most 1).
"""
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

BEST_WORST = "best_worst"
BEST_WORST_ALL = "best_worst_all"
POLICIES = (BEST_WORST, BEST_WORST_ALL)

MAJORITY = "majority"
UNANIMOUS = "unanimous"
PER_ANNOTATOR = "per_annotator"
AGGREGATIONS = (MAJORITY, UNANIMOUS, PER_ANNOTATOR)

DROP = "drop"
BOTH_ORDERS = "both_orders"
TIE_RULES = (DROP, BOTH_ORDERS)

# Origins, most informative first: a row made of mixed votes takes the first one that is most common.
ORIGINS = ("best>worst", "best>other", "other>worst")


class PairingError(ValueError):
    """A vote or an option that cannot make pairs; the message names it."""


@dataclass(frozen=True)
class Vote:
    """One annotator's pick on one (candidate set, dimension). Candidates are indices in [0, n)."""

    annotator: int
    best: int | None = None
    worst: int | None = None
    discarded: bool = False


@dataclass(frozen=True)
class Pair:
    winner: int
    loser: int
    origin: str
    votes_for: int
    votes_against: int
    discards: int
    soft_label: float
    weight: float
    annotators: tuple[int, ...]  # who voted for the winner, ascending


def relations(best: int, worst: int, n: int) -> dict[tuple[int, int], str]:
    """The 2N-3 (winner, loser) relations one best/worst pick implies, with their origins."""
    implied = {(best, worst): ORIGINS[0]}
    for other in range(n):
        if other not in (best, worst):
            implied[(best, other)] = ORIGINS[1]
            implied[(other, worst)] = ORIGINS[2]
    return implied


def _check(vote: Vote, n: int) -> None:
    if vote.discarded:
        if vote.best is not None or vote.worst is not None:
            raise PairingError(f"annotator {vote.annotator}: a discarded pick names no best or worst")
        return
    for name, value in (("best", vote.best), ("worst", vote.worst)):
        if value is None or not 0 <= value < n:
            raise PairingError(f"annotator {vote.annotator}: {name} {value!r} is not a candidate of 0..{n - 1}")
    if vote.best == vote.worst:
        raise PairingError(f"annotator {vote.annotator}: best and worst are the same candidate {vote.best}")


def check_options(policy: str, aggregation: str, tie_rule: str, min_votes: int) -> None:
    if policy not in POLICIES:
        raise PairingError(f"unknown pairing policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if aggregation not in AGGREGATIONS:
        raise PairingError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    if tie_rule not in TIE_RULES:
        raise PairingError(f"unknown tie rule {tie_rule!r}; choose one of {', '.join(TIE_RULES)}")
    if min_votes < 1:
        raise PairingError("min_votes must be at least 1")


def derive_pairs(votes: Iterable[Vote], n: int, *, policy: str = BEST_WORST, aggregation: str = MAJORITY,
                 tie_rule: str = DROP, min_votes: int = 1) -> list[Pair]:
    """The rows of one (candidate set, dimension) from every annotator's vote on it.

    Rows come in a fixed order (by the unordered pair's smaller index, then larger, winner
    before loser for both-order ties, then by annotator), so exports are reproducible.
    """
    if n < 2:
        raise PairingError(f"a set of {n} candidate(s) makes no pair")
    check_options(policy, aggregation, tie_rule, min_votes)
    votes = list(votes)
    for vote in votes:
        _check(vote, n)
    discards = sum(vote.discarded for vote in votes)
    ranked = sorted((vote for vote in votes if not vote.discarded), key=lambda vote: vote.annotator)
    if not ranked:
        return []
    implied = [relations(vote.best, vote.worst, n) for vote in ranked]
    # The pairs each annotator's own judgment puts in the dataset under the policy.
    own = [{(vote.best, vote.worst)} if policy == BEST_WORST else set(rel) for vote, rel in zip(ranked, implied)]
    kept = sorted({tuple(sorted(pair)) for pairs in own for pair in pairs})

    rows: list[Pair] = []
    for a, b in kept:
        for_a = [i for i, rel in enumerate(implied) if (a, b) in rel]
        for_b = [i for i, rel in enumerate(implied) if (b, a) in rel]

        def row(winner, loser, backers, against, soft_label=None, weight=None):
            if len(backers) == 1:  # most rows (one annotator's own pair): no count needed
                origin = implied[backers[0]][(winner, loser)]
            else:
                counted = Counter(implied[i][(winner, loser)] for i in backers)
                top = max(counted.values())
                origin = next(name for name in ORIGINS if counted.get(name) == top)
            return Pair(
                winner=winner, loser=loser,
                origin=origin,
                votes_for=len(backers), votes_against=len(against), discards=discards,
                soft_label=soft_label if soft_label is not None else len(backers) / (len(backers) + len(against)),
                weight=weight if weight is not None else len(backers) / len(ranked),
                annotators=tuple(sorted(ranked[i].annotator for i in backers)),
            )

        if aggregation == PER_ANNOTATOR:
            for winner, loser, backers, against in ((a, b, for_a, for_b), (b, a, for_b, for_a)):
                for i in backers:
                    if (winner, loser) in own[i] and len(backers) >= min_votes:
                        rows.append(row(winner, loser, [i], against, soft_label=1.0, weight=1 / len(ranked)))
            continue
        if len(for_a) == len(for_b):
            if tie_rule == BOTH_ORDERS and aggregation == MAJORITY and len(for_a) >= min_votes:
                rows.append(row(a, b, for_a, for_b))
                rows.append(row(b, a, for_b, for_a))
            continue
        winner, loser, backers, against = (a, b, for_a, for_b) if len(for_a) > len(for_b) else (b, a, for_b, for_a)
        if len(backers) < min_votes or (aggregation == UNANIMOUS and against):
            continue
        rows.append(row(winner, loser, backers, against))
    return rows


def split_of(key: str, seed: int, train: float, validation: float, test: float) -> str:
    """The split an input belongs to: a hash of (seed, input key) read as a number in [0, 1).

    Deciding per input, never per pair, keeps every pair of an input in one split; hashing (not
    shuffling) keeps an input in the same split in every dataset version with the same seed and
    fractions, so a later, larger version never moves a test input into training.
    """
    check_fractions(train, validation, test)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < train:
        return "train"
    if u < train + validation:
        return "validation"
    return "test"


def check_fractions(train: float, validation: float, test: float) -> None:
    for name, value in (("train", train), ("validation", validation), ("test", test)):
        if not 0 <= value <= 1:
            raise PairingError(f"the {name} fraction {value} is not between 0 and 1")
    if abs(train + validation + test - 1) > 1e-6:
        raise PairingError(f"the split fractions add up to {train + validation + test:g}, not 1")
