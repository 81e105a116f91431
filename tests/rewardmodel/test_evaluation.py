"""Evaluation arithmetic on a hand-made case, with a real (tiny, trained) judge.

The judge is the tiny model trained to prefer the brighter image (synthetic_pairs.py). The
hand-made test split has 10 pairs over 5 task x dimension rows (pairs k and k + 5 share row k):
- pairs 0 and 6 are "inverted": the annotators' winner is the DARKER image, so a judge of
  brightness gets them wrong in both orders; rows 0 and 1 are therefore at 50 %, the others at
  100 %, and the whole split at 80 %;
- votes: pairs 0-4 won 2:1, pairs 5, 7, 9 won 1:0 (one vote: not counted in the ceiling),
  pairs 6 and 8 won 3:0. The human ceiling of rows 0, 2, 4 is 2/3 (one multi-vote pair, 2:1),
  of rows 1 and 3 (2/3 + 1) / 2, and of the split (5 x 2/3 + 2 x 1) / 7.
"""
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rewardmodel.core.evaluation import PAPER_ACCURACY, evaluate, format_table, summarise
from rewardmodel.core.judge import Judge

from .synthetic_pairs import TASK_DIMENSIONS, brightness_pairs, trained_brightness_judge

REPO = Path(__file__).resolve().parents[2]
INVERTED = {0, 6}
VOTES = {**{i: (2, 1) for i in range(5)}, 5: (1, 0), 6: (3, 0), 7: (1, 0), 8: (3, 0), 9: (1, 0)}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    output, _ = trained_brightness_judge(tmp_path_factory)
    data = brightness_pairs(tmp_path_factory.mktemp("handmade") / "data", {"test": 10}, seed=11,
                            votes=VOTES.__getitem__, inverted=INVERTED.__contains__)
    judge = Judge.from_pretrained(str(output / "model"), device="cpu")
    scores = tmp_path_factory.mktemp("scores") / "test_scores.parquet"
    return output / "model", data, evaluate(judge, data, "test", batch_size=4, scores_path=scores), scores


def rows_by_key(evaluation) -> dict:
    return {(row["task"], row["dimension"]): row for row in evaluation["rows"]}


def test_accuracy_per_row_matches_the_hand_made_case(case):
    _, _, evaluation, _ = case
    rows = rows_by_key(evaluation)
    assert evaluation["pairs"] == 10 and len(rows) == 6
    for k, (task, dimension, _) in enumerate(TASK_DIMENSIONS):
        row = rows[(task, dimension)]
        expected = 50.0 if k in (0, 1) else 100.0
        assert row["pairs"] == 2
        assert (row["forward_accuracy"], row["reversed_accuracy"], row["accuracy"]) == (expected, expected, expected)
    overall = rows[("all", "all")]
    assert (overall["pairs"], overall["forward_accuracy"], overall["reversed_accuracy"], overall["accuracy"]) == (
        10, 80.0, 80.0, 80.0)


def test_evaluation_is_recomputed_from_the_scores_file(case):
    _, data, evaluation, scores_path = case
    scores = pq.read_table(scores_path).to_pylist()
    assert len(scores) == 10 and len({row["pair_id"] for row in scores}) == 10
    groups = defaultdict(list)
    for row in scores:
        groups[(row["task"], row["dimension"])].append(row)
        groups[("all", "all")].append(row)
    for key, row in rows_by_key(evaluation).items():
        pairs = groups[key]
        forward = 100 * sum(p["p_forward"] > 0.5 for p in pairs) / len(pairs)
        reversed_ = 100 * sum(p["p_reversed"] < 0.5 for p in pairs) / len(pairs)
        assert row["forward_accuracy"] == pytest.approx(forward)
        assert row["reversed_accuracy"] == pytest.approx(reversed_)
        assert row["accuracy"] == pytest.approx((forward + reversed_) / 2)
    # The scores are renormalised probabilities, the votes those of the dataset.
    assert all(0.0 < row["p_forward"] < 1.0 and 0.0 < row["p_reversed"] < 1.0 for row in scores)
    assert sorted((row["votes_for"], row["votes_against"]) for row in scores) == sorted(VOTES.values())


def test_human_ceiling_and_vote_agreement(case):
    _, _, evaluation, scores_path = case
    rows = rows_by_key(evaluation)
    for k, (task, dimension, _) in enumerate(TASK_DIMENSIONS):
        row = rows[(task, dimension)]
        if k in (1, 3):
            assert row["multi_vote_pairs"] == 2 and row["human_ceiling"] == pytest.approx(100 * (2 / 3 + 1) / 2)
        else:
            assert row["multi_vote_pairs"] == 1 and row["human_ceiling"] == pytest.approx(100 * 2 / 3)
    assert rows[("all", "all")]["multi_vote_pairs"] == 7
    assert rows[("all", "all")]["human_ceiling"] == pytest.approx(100 * (5 * 2 / 3 + 2) / 7)
    # The judge picks the brighter image: against the 2:1 majority of pair 0 (agrees with 1 of 3
    # votes), and against the 3:0 of pair 6 (0 of 3); every other multi-vote pair it gets right.
    row0, row1 = rows[TASK_DIMENSIONS[0][:2]], rows[TASK_DIMENSIONS[1][:2]]
    assert row0["vote_agreement"] == pytest.approx(100 * 1 / 3)
    assert row1["vote_agreement"] == pytest.approx(100 * (2 / 3 + 0) / 2)
    assert rows[("all", "all")]["vote_agreement"] == pytest.approx(100 * (1 / 3 + 0 + 4 * 2 / 3 + 1) / 7)


def test_paper_figures_sit_beside_their_rows(case):
    _, _, evaluation, _ = case
    rows = rows_by_key(evaluation)
    assert rows[("image_fill", "consistency")]["paper_accuracy"] == 74.23
    assert rows[("image_fill", "text_alignment")]["paper_accuracy"] == 83.77
    assert rows[("image_extend", "structure")]["paper_accuracy"] == 74.29
    assert rows[("object_removal", "removal_quality")]["paper_accuracy"] == 84.93
    assert rows[("all", "all")]["paper_accuracy"] is None
    # METHOD.md's table: 4 dimensions for fill and extend, removal quality for object removal.
    assert PAPER_ACCURACY == {
        ("image_fill", "text_alignment"): 83.77, ("image_fill", "consistency"): 74.23,
        ("image_fill", "structure"): 74.63, ("image_fill", "aesthetics"): 72.10,
        ("image_extend", "text_alignment"): 80.36, ("image_extend", "consistency"): 72.50,
        ("image_extend", "structure"): 74.29, ("image_extend", "aesthetics"): 71.10,
        ("object_removal", "removal_quality"): 84.93,
    }


def test_format_table(case):
    _, _, evaluation, _ = case
    table = format_table(evaluation, zero_shot=evaluation)
    lines = table.splitlines()
    assert lines[0] == "test split, 10 pairs"
    assert lines[1].split()[:3] == ["task", "dimension", "pairs"] and "zero-shot %" in lines[1]
    consistency = next(line for line in lines if "consistency" in line)
    assert consistency.split()[:6] == ["image_fill", "consistency", "2", "50.00", "50.00", "50.00"]
    assert "74.23" in consistency and "66.67" in consistency
    assert lines[-1].split()[:6] == ["all", "all", "10", "80.00", "80.00", "80.00"]
    empty = summarise([])
    assert empty["rows"] == [{"task": "all", "dimension": "all", "pairs": 0, "forward_accuracy": None,
                              "reversed_accuracy": None, "accuracy": None, "paper_accuracy": None,
                              "multi_vote_pairs": 0, "human_ceiling": None, "vote_agreement": None}]
    assert format_table(empty).splitlines()[-1].split() == ["all", "all", "0", "-", "-", "-", "-", "-", "-"]


def test_evaluate_command(case, tmp_path):
    model, data, evaluation, _ = case
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewardmodel.core.evaluate",
            "--model",
            str(model),
            "--dataset",
            str(data),
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "evaluation.json"),
            "--scores",
            str(tmp_path / "scores.parquet"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test split, 10 pairs" in done.stdout
    again = json.loads((tmp_path / "evaluation.json").read_text())
    assert [row["accuracy"] for row in again["rows"]] == [row["accuracy"] for row in evaluation["rows"]]
    assert pq.read_table(tmp_path / "scores.parquet").num_rows == 10
    missing = subprocess.run([sys.executable, "-m", "rewardmodel.core.evaluate", "--model", str(model), "--dataset",
                              str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "manifest.json is missing" in missing.stderr


def test_a_split_without_pairs_is_not_evaluated(case):
    """No accuracy table of zeros: a judge evaluated on a split with no pairs says why."""
    model, data, _, _ = case
    judge = Judge.from_pretrained(str(model), device="cpu")
    evaluation = evaluate(judge, data, "validation")  # the hand-made dataset has a test split only
    assert evaluation["pairs"] == 0 and evaluation["rows"] == []
    assert evaluation["not_evaluated"].startswith("not evaluated: the dataset version has no validation pairs")
    assert format_table(evaluation) == evaluation["not_evaluated"]
