"""The array pairing gives derive_pairs' rows, in its order, for every option: random votes on many
units at once, compared pair by pair with derive_pairs called unit by unit (whose own answers are
checked by hand in test_pairing.py)."""
import itertools
import random

import numpy as np
import pytest

from preferences.core.pair_arrays import Votes, derive_pair_arrays
from preferences.core.pairing import AGGREGATIONS, ORIGINS, POLICIES, TIE_RULES, PairingError, Vote, derive_pairs


def random_units(rng: random.Random, units: int):
    """Per unit: n and its votes, in the export's stream order (by annotator), with discards,
    repeats by one annotator and units with no ranked vote."""
    made = []
    for _ in range(units):
        n = rng.choice([2, 3, 4, 4, 5, 6])
        annotators = sorted(rng.sample(range(1, 30), rng.randint(1, 7)))
        if rng.random() < 0.2:
            annotators = sorted(annotators + [annotators[0]])  # a repeat: the same annotator twice
        votes = []
        for annotator in annotators:
            if rng.random() < 0.15:
                votes.append(Vote(annotator, discarded=True))
            else:
                best, worst = rng.sample(range(n), 2)
                votes.append(Vote(annotator, best=best, worst=worst))
        made.append((n, votes))
    return made


def as_arrays(units) -> Votes:
    flat = [(u, vote) for u, (_, votes) in enumerate(units) for vote in votes]
    return Votes(
        unit=np.array([u for u, _ in flat], np.int64),
        annotator=np.array([v.annotator for _, v in flat], np.int64),
        discarded=np.array([v.discarded for _, v in flat], bool),
        best=np.array([-1 if v.best is None else v.best for _, v in flat], np.int64),
        worst=np.array([-1 if v.worst is None else v.worst for _, v in flat], np.int64),
        n=np.array([n for n, _ in units], np.int64),
    )


def rows_of(pairs):
    return [
        (int(pairs.unit[i]), int(pairs.winner[i]), int(pairs.loser[i]), ORIGINS[pairs.origin[i]],
         int(pairs.votes_for[i]), int(pairs.votes_against[i]), int(pairs.discards[i]), float(pairs.soft_label[i]),
         float(pairs.weight[i]),
         tuple(int(a) for a in pairs.annotator_values[pairs.annotator_offsets[i]:pairs.annotator_offsets[i + 1]]))
        for i in range(len(pairs))
    ]


@pytest.mark.parametrize("policy,aggregation,tie_rule,min_votes",
                         list(itertools.product(POLICIES, AGGREGATIONS, TIE_RULES, [1, 2])))
def test_the_same_rows_as_derive_pairs(policy, aggregation, tie_rule, min_votes):
    rng = random.Random(f"{policy}{aggregation}{tie_rule}{min_votes}")
    units = random_units(rng, 400)
    expected = [
        (u, p.winner, p.loser, p.origin, p.votes_for, p.votes_against, p.discards, p.soft_label, p.weight,
         p.annotators)
        for u, (n, votes) in enumerate(units)
        for p in derive_pairs(votes, n, policy=policy, aggregation=aggregation, tie_rule=tie_rule,
                              min_votes=min_votes)
    ]
    got = rows_of(derive_pair_arrays(as_arrays(units), policy=policy, aggregation=aggregation,
                                     tie_rule=tie_rule, min_votes=min_votes))
    assert len(expected) > 100
    assert got == expected  # floats compared exactly: the content hash reads their repr


def test_a_hand_worked_unit():
    # n = 4; annotator 3: best 1, worst 3; annotator 5: best 1, worst 0; annotator 8 discarded.
    units = [(4, [Vote(3, best=1, worst=3), Vote(5, best=1, worst=0), Vote(8, discarded=True)])]
    majority = rows_of(derive_pair_arrays(as_arrays(units), policy="best_worst", aggregation="majority"))
    # (0, 1): both say 1 > 0 (5's best>worst, 3's best>other); (1, 3): both say 1 > 3.
    assert majority == [(0, 1, 0, "best>worst", 2, 0, 1, 1.0, 1.0, (3, 5)),
                        (0, 1, 3, "best>worst", 2, 0, 1, 1.0, 1.0, (3, 5))]
    own = rows_of(derive_pair_arrays(as_arrays(units), policy="best_worst", aggregation="per_annotator"))
    assert own == [(0, 1, 0, "best>worst", 1, 0, 1, 1.0, 0.5, (5,)),
                   (0, 1, 3, "best>worst", 1, 0, 1, 1.0, 0.5, (3,))]


@pytest.mark.parametrize("units,message", [
    ([(4, [Vote(3, best=1, worst=1)])], "best and worst are the same candidate 1"),
    ([(4, [Vote(3, best=4, worst=1)])], "best 4 is not a candidate of 0..3"),
    ([(4, [Vote(3, best=None, worst=1)])], "best None is not a candidate"),
    ([(1, [Vote(3, discarded=True)])], "a set of 1 candidate(s) makes no pair"),
])
def test_bad_votes_are_refused_as_derive_pairs_refuses_them(units, message):
    with pytest.raises(PairingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        derive_pair_arrays(as_arrays(units))
    with pytest.raises(PairingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        derive_pairs(units[0][1], units[0][0])


def test_a_hand_worked_row_table_and_its_hashed_text():
    import hashlib

    from preferences.core.files import canonical_row, row_schema
    from preferences.core.row_tables import pair_table, text_bytes

    # One set of 3 candidates, dimension "structure": annotator 12 picks 2 best and 0 worst,
    # annotator 40 picks 2 best and 1 worst; majority, best_worst: rows (2, 0) and (2, 1).
    units = [(3, [Vote(12, best=2, worst=0), Vote(40, best=2, worst=1)])]
    pairs = derive_pair_arrays(as_arrays(units), policy="best_worst", aggregation="majority")
    sets = [{"split": "train", "input_id": 7, "input_hash": "h7", "task": "image_fill", "prompt": "it's a cat",
             "prompt_given": True, "source": "file:///s.png", "mask": "file:///m.png", "set_id": 31,
             "generator": "gen", "generator_id": 2, "batch_id": 5}]
    candidates = [[("c0", "file:///0.png", '{"seed": 0}'), ("c1", "file:///1.png", '{"seed": 1}'),
                   ("c2", "file:///2.png", '{"seed": 2}')]]
    table, lines = pair_table(pairs, np.array([0]), ["structure"], sets, candidates, row_schema(False))

    def row(loser, votes_against, annotators, key):
        # Annotator 40's best>other backs 2 > 0 against nobody; 12's best>other backs 2 > 1.
        return {"pair_id": hashlib.sha256(key.encode()).hexdigest()[:20], "split": "train", "input_id": 7,
                "input_hash": "h7", "task": "image_fill", "dimension": "structure", "prompt": "it's a cat",
                "prompt_given": True, "source": "file:///s.png", "mask": "file:///m.png", "candidate_set_id": 31,
                "winner_candidate": "c2", "loser_candidate": f"c{loser}", "winner_index": 2,
                "loser_index": loser, "winner_image": "file:///2.png", "loser_image": f"file:///{loser}.png",
                "origin": "best>worst", "votes_for": 2, "votes_against": votes_against, "discards": 0,
                "soft_label": 1.0, "weight": 1.0, "annotators": annotators, "winner_generator": "gen",
                "winner_generator_id": 2, "winner_batch_id": 5, "winner_settings": '{"seed": 2}',
                "loser_generator": "gen", "loser_generator_id": 2, "loser_batch_id": 5,
                "loser_settings": f'{{"seed": {loser}}}'}

    expected = [row(0, 0, [12, 40], "31:structure:2:0:12,40"), row(1, 0, [12, 40], "31:structure:2:1:12,40")]
    assert table.to_pylist() == expected
    assert bytes(text_bytes(lines)) == b"".join(canonical_row(r) + b"\n" for r in expected)
    # The text as written out, so that a change of what the content hash reads fails here.
    assert bytes(text_bytes(lines)).split(b"\n")[0].decode() == (
        f"['{expected[0]['pair_id']}', 'train', 7, 'h7', 'image_fill', 'structure', \"it's a cat\", True, "
        "'file:///s.png', 'file:///m.png', 31, 'c2', 'c0', 2, 0, 'file:///2.png', 'file:///0.png', 'best>worst', "
        "2, 0, 0, 1.0, 1.0, [12, 40], 'gen', 2, 5, '{\"seed\": 2}', 'gen', 2, 5, '{\"seed\": 0}']")
