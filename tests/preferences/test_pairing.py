"""Pair derivation on hand-made votes with known answers, for every policy, aggregation and tie rule."""
import pytest

from preferences.core.pairing import PairingError, Vote, check_fractions, derive_pairs, relations, split_of


def as_tuples(pairs):
    return [(p.winner, p.loser, p.origin, p.votes_for, p.votes_against) for p in pairs]


def test_relations_of_one_pick_are_2n_minus_3():
    implied = relations(best=2, worst=0, n=4)
    assert len(implied) == 2 * 4 - 3
    assert implied == {(2, 0): "best>worst", (2, 1): "best>other", (2, 3): "best>other",
                       (1, 0): "other>worst", (3, 0): "other>worst"}
    assert (1, 3) not in implied and (3, 1) not in implied  # middle vs middle is never invented


def test_best_worst_single_annotator_is_the_papers_pair():
    pairs = derive_pairs([Vote(7, best=1, worst=3)], 4)
    assert as_tuples(pairs) == [(1, 3, "best>worst", 1, 0)]
    assert pairs[0].soft_label == 1.0 and pairs[0].weight == 1.0 and pairs[0].annotators == (7,)


def test_best_worst_all_gives_every_implied_pair_marked_with_its_origin():
    pairs = derive_pairs([Vote(7, best=1, worst=3)], 4, policy="best_worst_all")
    assert as_tuples(pairs) == [
        (1, 0, "best>other", 1, 0), (0, 3, "other>worst", 1, 0), (1, 2, "best>other", 1, 0),
        (1, 3, "best>worst", 1, 0), (2, 3, "other>worst", 1, 0),
    ]
    assert len(pairs) == 2 * 4 - 3


def test_two_candidates_give_one_pair_under_both_policies():
    for policy in ("best_worst", "best_worst_all"):
        assert as_tuples(derive_pairs([Vote(1, best=1, worst=0)], 2, policy=policy)) == [(1, 0, "best>worst", 1, 0)]


def test_discarded_makes_no_pair_but_is_counted():
    assert derive_pairs([Vote(1, discarded=True)], 4) == []
    pairs = derive_pairs([Vote(1, discarded=True), Vote(2, best=0, worst=1)], 4)
    assert as_tuples(pairs) == [(0, 1, "best>worst", 1, 0)]
    assert pairs[0].discards == 1 and pairs[0].weight == 1.0  # weight counts annotators who ranked


def test_majority_counts_votes_from_every_annotators_implied_order():
    # A: 0 best, 3 worst. B: 1 best, 3 worst (so B also says 0 > 3). C: 3 best, 0 worst.
    votes = [Vote(1, best=0, worst=3), Vote(2, best=1, worst=3), Vote(3, best=3, worst=0)]
    pairs = {(p.winner, p.loser): p for p in derive_pairs(votes, 4)}
    # Kept pairs (best_worst): {0,3} (A and C), {1,3} (B).
    assert set(pairs) == {(0, 3), (1, 3)}
    assert (pairs[0, 3].votes_for, pairs[0, 3].votes_against) == (2, 1)
    assert pairs[0, 3].annotators == (1, 2) and pairs[0, 3].origin == "best>worst"  # A best>worst, B other>worst
    assert pairs[0, 3].soft_label == pytest.approx(2 / 3) and pairs[0, 3].weight == pytest.approx(2 / 3)
    # 1 vs 3: B says 1 > 3 (best>worst); A says 1 > 3 (other>worst); C says 3 > 1 (best>other).
    assert (pairs[1, 3].votes_for, pairs[1, 3].votes_against) == (2, 1)


def test_unanimous_keeps_only_pairs_nobody_contradicts():
    votes = [Vote(1, best=0, worst=3), Vote(2, best=1, worst=3), Vote(3, best=0, worst=2)]
    pairs = derive_pairs(votes, 4, aggregation="unanimous")
    # 0 > 3: A (bw), B (other>worst), C (best>other): 3 for, 0 against.
    # 1 > 3: B (bw), A (other>worst), C (1 is middle, 3 is middle): 2 for, 0 against.
    # 0 > 2: C (bw), A (best>other), B (other=0 vs other=2: unknown) -> 2 for.
    assert as_tuples(pairs) == [(0, 2, "best>worst", 2, 0), (0, 3, "best>worst", 3, 0), (1, 3, "best>worst", 2, 0)]
    contradicted = derive_pairs([Vote(1, best=0, worst=3), Vote(2, best=3, worst=0)], 4, aggregation="unanimous")
    assert contradicted == []


def test_ties_are_dropped_or_kept_both_ways():
    votes = [Vote(1, best=0, worst=3), Vote(2, best=3, worst=0)]
    assert derive_pairs(votes, 4, tie_rule="drop") == []
    both = derive_pairs(votes, 4, tie_rule="both_orders")
    assert as_tuples(both) == [(0, 3, "best>worst", 1, 1), (3, 0, "best>worst", 1, 1)]
    assert all(p.soft_label == 0.5 and p.weight == 0.5 for p in both)


def test_per_annotator_rows_each_annotators_own_pairs():
    votes = [Vote(1, best=0, worst=3), Vote(2, best=1, worst=3), Vote(3, best=3, worst=0)]
    pairs = derive_pairs(votes, 4, aggregation="per_annotator")
    assert [(p.winner, p.loser, p.annotators, p.votes_for, p.votes_against) for p in pairs] == [
        (0, 3, (1,), 1, 1), (3, 0, (3,), 1, 2), (1, 3, (2,), 1, 1),
    ]
    assert all(p.soft_label == 1.0 and p.weight == pytest.approx(1 / 3) for p in pairs)


def test_min_votes_needs_enough_backers():
    votes = [Vote(1, best=0, worst=3), Vote(2, best=0, worst=3), Vote(3, best=1, worst=2)]
    pairs = derive_pairs(votes, 4, min_votes=2)
    assert as_tuples(pairs) == [(0, 3, "best>worst", 2, 0)]  # 1 > 2 has one vote only


def test_origin_of_mixed_votes_is_the_most_common():
    # 0 > 3 backed by A (best>worst), B (best>other), C (best>other).
    votes = [Vote(1, best=0, worst=3), Vote(2, best=0, worst=1), Vote(3, best=0, worst=2)]
    pairs = {(p.winner, p.loser): p for p in derive_pairs(votes, 4)}
    assert pairs[0, 3].origin == "best>other" and pairs[0, 3].votes_for == 3


def test_bad_votes_and_options_are_refused_with_a_reason():
    with pytest.raises(PairingError, match="best 4 is not a candidate"):
        derive_pairs([Vote(1, best=4, worst=0)], 4)
    with pytest.raises(PairingError, match="same candidate"):
        derive_pairs([Vote(1, best=2, worst=2)], 4)
    with pytest.raises(PairingError, match="names no best"):
        derive_pairs([Vote(1, best=2, discarded=True)], 4)
    with pytest.raises(PairingError, match="unknown pairing policy"):
        derive_pairs([], 4, policy="all_pairs")
    with pytest.raises(PairingError, match="unknown tie rule"):
        derive_pairs([], 4, tie_rule="coin")
    with pytest.raises(PairingError, match="makes no pair"):
        derive_pairs([], 1)


def test_split_is_by_key_stable_and_near_its_fractions():
    keys = [f"input-{i}" for i in range(20000)]
    splits = [split_of(key, 3, 0.8, 0.1, 0.1) for key in keys]
    assert splits == [split_of(key, 3, 0.8, 0.1, 0.1) for key in keys]
    share = {name: splits.count(name) / len(keys) for name in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.015)
    assert share["validation"] == pytest.approx(0.1, abs=0.01) and share["test"] == pytest.approx(0.1, abs=0.01)
    other_seed = [split_of(key, 4, 0.8, 0.1, 0.1) for key in keys]
    assert other_seed != splits
    assert {split_of(key, 3, 1.0, 0.0, 0.0) for key in keys[:500]} == {"train"}


def test_fractions_must_add_up():
    with pytest.raises(PairingError, match="add up to 1.1"):
        check_fractions(0.9, 0.1, 0.1)
    with pytest.raises(PairingError, match="not between 0 and 1"):
        check_fractions(1.2, -0.2, 0.0)
