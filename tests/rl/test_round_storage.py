"""Collection rounds with S3 as the storage: the round's batch stores its candidates in the bucket,
the scoring job reads them back from it, and the judge's scores are those of the stored images
(asked here pair by pair), so the round opens the sets in the order they give."""
import pytest

from generation.execution import run_batch_here
from rewardmodel.core.judge import Judge
from rl.rounds import Stage, score_round, start_round
from tests.conftest import stored_files

from .round_world import asked_pair_by_pair, baseline, judge_dir, register_judge, removal_inputs, uncertainty

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture


def test_an_uncertainty_round_generates_into_s3_and_scores_what_it_reads_back(s3_settings, tmp_path_factory):
    path = judge_dir(tmp_path_factory)
    removal_inputs(3)
    version = register_judge(path)
    round_ = start_round(strategy="uncertainty", reward_model=version, generator=baseline(), candidates_per_input=2,
                         top_k=2, seed=5)
    run_batch_here(round_.batches.get())
    round_.refresh_from_db()
    assert round_.stage == Stage.SCORING
    score_round(round_)
    round_.refresh_from_db()
    assert (round_.status, round_.stage, round_.results["opened"]) == ("done", Stage.OPENED, 2), round_.error

    rows = list(round_.sets.select_related("candidate_set__input__task").order_by("rank"))
    names = sorted(n for row in rows for c in row.candidate_set.candidates.all() for n in (c.image.name,
                                                                                          c.thumbnail.name))
    assert s3_settings.keys("candidates/") == names and len(names) == 12
    assert stored_files() == []
    judge = Judge.from_pretrained(str(path))
    for row in rows:
        answers = asked_pair_by_pair(judge, row.candidate_set)  # the images, read from the bucket
        assert row.figure == pytest.approx(uncertainty(answers), abs=1e-6)
    assert [row.task is not None for row in rows] == [True, True, False]
