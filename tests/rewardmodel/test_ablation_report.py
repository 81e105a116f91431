"""The report of a judge ablation on hand-worked scores and votes: accuracy per order, agreement
with the human majority and with each annotator, the leave-one-out ceiling, Wilson intervals.

The test split (annotators 1 alice, 2 bob, 3 carol; 4 dave judged but never ordered a pair below):
  A  set 1 aesthetics  0 > 1, rows list alice and bob; carol picked best 1 / worst 0 (against)
  B  set 2 aesthetics  2 > 3, alice and carol
  C  set 3 structure   a tie exported both ways: 0 > 2 (alice) and 2 > 0 (bob): one judged pair
  D  set 4 structure   1 > 3, carol alone
Scores (P(Yes | winner first), P(Yes | winner second)) and the judge's verdict from both orders
(s = (p_f + 1 - p_r) / 2; d = 1 when s > 0.5, 1/2 when s = 0.5):
  A (0.8, 0.6): forward right, reversed wrong, s = 0.6 -> d = 1 (for 0)
  B (0.6, 0.3): both right, s = 0.65 -> d = 1
  C1 (0.4, 0.2): forward wrong, reversed right, s = 0.6 -> d = 1 (for 0)
  C2 (0.3, 0.55): both wrong, s = 0.375 (for 0 again; decides nothing, C1 orients the pair)
  D (0.5, 0.5): both wrong (not strictly past 0.5), s = 0.5 -> d = 1/2
"""
import math

import pytest

from mlcore.stats import Z95
from rewardmodel.core.ablation import Column, judged_pairs, preference, report

ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4


def split_row(pair_id, set_id, dimension, winner, loser, votes_for, votes_against, annotators):
    return {"pair_id": pair_id, "candidate_set_id": set_id, "task": "image_fill", "dimension": dimension,
            "winner_index": winner, "loser_index": loser, "votes_for": votes_for, "votes_against": votes_against,
            "annotators": annotators}


ROWS = [
    split_row("A", 1, "aesthetics", 0, 1, 2, 1, [ALICE, BOB]),
    split_row("B", 2, "aesthetics", 2, 3, 2, 0, [ALICE, CAROL]),
    split_row("C1", 3, "structure", 0, 2, 1, 1, [ALICE]),
    split_row("C2", 3, "structure", 2, 0, 1, 1, [BOB]),
    split_row("D", 4, "structure", 1, 3, 1, 0, [CAROL]),
]
PICKS = {
    (1, "aesthetics"): [(ALICE, 0, 1), (BOB, 0, 2), (CAROL, 1, 0), (DAVE, 2, 3)],  # dave: 0 and 1 both middle
    (2, "aesthetics"): [(ALICE, 2, 3), (CAROL, 2, 0)],
}
SCORES = {"A": (0.8, 0.6), "B": (0.6, 0.3), "C1": (0.4, 0.2), "C2": (0.3, 0.55), "D": (0.5, 0.5)}
COLUMN = Column(key="version-1/v1", judge="judge-1", variant="v1", template_version=1, trained_template_version=1)


def wilson(successes, total, z=Z95):
    """The Wilson score interval, written out again here from its formula."""
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@pytest.fixture
def result():
    return report(ROWS, {COLUMN.key: SCORES}, [COLUMN], PICKS)


def rows_of(result):
    return {(row["task"], row["dimension"]): row for row in result["rows"]}


def test_who_voted_which_way_comes_from_the_rows_and_the_picks():
    pairs = {pair.pair_id: pair for pair in judged_pairs(ROWS, PICKS)}
    assert set(pairs) == {"A", "B", "C1", "D"}  # C2 is the other side of C1
    assert pairs["A"].voters == {ALICE: 1, BOB: 1, CAROL: -1}  # dave's pick does not order 0 and 1
    assert (pairs["A"].votes_for, pairs["A"].votes_against) == (2, 1)
    assert pairs["B"].voters == {ALICE: 1, CAROL: 1}  # rows first: carol's own pick agrees anyway
    assert pairs["C1"].voters == {ALICE: 1, BOB: -1} and (pairs["C1"].votes_for, pairs["C1"].votes_against) == (1, 1)
    assert all(pair.identified for pair in pairs.values())
    assert not judged_pairs(ROWS[:1])[0].identified  # without the judgments, carol's vote has no name
    assert preference(1, 0, 0, 1) == -1 and preference(0, 2, 0, 1) == 1 and preference(2, 3, 0, 1) == 0
    assert preference(2, 0, 1, 0) == 1  # 1 is a middle candidate, 0 the worst: 1 > 0


def test_accuracy_per_order_with_wilson_intervals(result):
    rows = rows_of(result)
    aesthetics, structure, overall = (rows[("image_fill", "aesthetics")], rows[("image_fill", "structure")],
                                      rows[("all", "all")])
    assert [row["pairs"] for row in (aesthetics, structure, overall)] == [2, 3, 5]
    cell = aesthetics["cells"][COLUMN.key]
    assert (cell["forward"]["rate"], cell["reversed"]["rate"], cell["averaged"]["rate"], cell["mean"]) == \
        (1.0, 0.5, 1.0, 0.75)
    cell = structure["cells"][COLUMN.key]
    assert cell["forward"]["successes"] == 0 and cell["reversed"]["successes"] == 1
    assert cell["averaged"]["successes"] == 1.5 and cell["mean"] == pytest.approx(1 / 6)
    cell = overall["cells"][COLUMN.key]
    assert (cell["forward"]["successes"], cell["reversed"]["successes"], cell["averaged"]["successes"]) == (2, 2, 3.5)
    assert cell["mean"] == pytest.approx(0.4)
    assert (cell["averaged"]["low"], cell["averaged"]["high"]) == pytest.approx(wilson(3.5, 5))
    assert (cell["averaged"]["low"], cell["averaged"]["high"]) == pytest.approx((0.2988, 0.9274), abs=1e-4)
    forward = aesthetics["cells"][COLUMN.key]["forward"]
    assert (forward["low"], forward["high"]) == pytest.approx((0.3424, 1.0), abs=1e-4)  # 2 of 2


def test_the_orders_are_not_interchangeable():
    swapped = report(ROWS, {COLUMN.key: {pair: (r, f) for pair, (f, r) in SCORES.items()}}, [COLUMN], PICKS)
    cell = rows_of(swapped)[("image_fill", "structure")]["cells"][COLUMN.key]
    # Swapped, C1 reads (0.2, 0.4): forward wrong, reversed right; C2 (0.55, 0.3): both right now.
    assert (cell["forward"]["successes"], cell["reversed"]["successes"]) == (1, 2)


def test_agreement_with_the_majority_and_the_leave_one_out_ceiling(result):
    rows = rows_of(result)
    # Majority over pairs with two votes or more: A (2-1, d = 1) agrees, B (2-0) agrees, C (1-1) half.
    aesthetics, structure, overall = (rows[("image_fill", "aesthetics")]["cells"][COLUMN.key],
                                      rows[("image_fill", "structure")]["cells"][COLUMN.key],
                                      rows[("all", "all")]["cells"][COLUMN.key])
    assert (aesthetics["majority"]["successes"], aesthetics["majority"]["total"]) == (2, 2)
    assert (structure["majority"]["successes"], structure["majority"]["total"]) == (0.5, 1)
    assert overall["majority"]["rate"] == pytest.approx(2.5 / 3)
    # Leave one out. A: alice and bob each face the others tied 1-1 (1/2), carol faces 2-0 against her (0);
    # B: each faces 1-0 with them (1); C: alice faces bob (0), bob faces alice (0); D has one vote.
    ceiling = {key: row["human_ceiling"] for key, row in rows.items()}
    aesthetics_ceiling = ceiling[("image_fill", "aesthetics")]
    assert (aesthetics_ceiling["successes"], aesthetics_ceiling["total"]) == (3, 5)
    assert (ceiling[("image_fill", "structure")]["successes"], ceiling[("image_fill", "structure")]["total"]) == (0, 2)
    assert ceiling[("all", "all")]["rate"] == pytest.approx(3 / 7)
    assert (ceiling[("all", "all")]["low"], ceiling[("all", "all")]["high"]) == pytest.approx(wilson(3, 7))
    # The judge in the left-out voter's place, same instances: A 1/2 + 1/2 + 1, B 1 + 1, C 0 (vs bob) + 1 (vs alice).
    assert aesthetics["in_annotator_place"]["successes"] == 4 and aesthetics["in_annotator_place"]["total"] == 5
    assert structure["in_annotator_place"]["successes"] == 1 and structure["in_annotator_place"]["total"] == 2
    assert overall["in_annotator_place"]["rate"] == pytest.approx(5 / 7)
    assert rows[("all", "all")]["multi_vote_pairs"] == 3 and rows[("all", "all")]["votes"] == 7


def test_agreement_with_each_annotator(result):
    annotators = {row["annotator"]: row for row in result["annotators"]}
    assert set(annotators) == {ALICE, BOB, CAROL}
    # alice voted for the judge's side on A, B and C.
    assert annotators[ALICE]["pairs"] == 3 and annotators[ALICE]["cells"][COLUMN.key]["rate"] == 1.0
    # bob: A with the judge, C against it.
    bob = annotators[BOB]["cells"][COLUMN.key]
    assert (bob["successes"], bob["total"]) == (1, 2)
    # carol: A against (0), B with (1), D where the judge ties (1/2).
    assert annotators[CAROL]["cells"][COLUMN.key]["successes"] == 1.5 and annotators[CAROL]["pairs"] == 3
    # Their own agreement with the others: alice A 1/2, B 1, C 0; bob A 1/2, C 0; carol A 0, B 1 (D: no others).
    assert annotators[ALICE]["with_others"]["rate"] == pytest.approx(0.5)
    assert annotators[BOB]["with_others"]["rate"] == pytest.approx(0.25)
    assert annotators[CAROL]["with_others"]["successes"] == 1 and annotators[CAROL]["with_others"]["total"] == 2
    assert (annotators[CAROL]["cells"][COLUMN.key]["low"], annotators[CAROL]["cells"][COLUMN.key]["high"]) == \
        pytest.approx(wilson(1.5, 3))


def test_votes_without_a_name_are_left_out_of_the_per_annotator_figures_and_said_so():
    result = report(ROWS, {COLUMN.key: SCORES}, [COLUMN], picks=None)
    assert any("annotator is not known" in warning for warning in result["warnings"])
    annotators = {row["annotator"]: row for row in result["annotators"]}
    assert annotators[ALICE]["pairs"] == 2  # A is left out: carol's vote against has no name there
    # The counts still make the majority and the ceiling.
    assert rows_of(result)[("all", "all")]["human_ceiling"]["rate"] == pytest.approx(3 / 7)


def test_a_judge_asked_in_another_wording_is_marked():
    other = Column(key="version-1/v2", judge="judge-1", variant="v2", template_version=2, trained_template_version=1)
    zero_shot = Column(key="base/v2", judge="zero-shot tiny", variant="v2", template_version=2,
                       trained_template_version=None)
    result = report(ROWS, {other.key: SCORES, zero_shot.key: SCORES}, [other, zero_shot], PICKS)
    assert [column["other_wording"] for column in result["columns"]] == [True, False]
    assert result["warnings"] == ["judge-1 was trained on query template version 1; v2 asks it in version 2"]
