"""A collection round whose batch is resumed after the round moved on (a set failed on a worker, the
batch is queued again and the set retried): the round takes the sets the resumed batch makes and
opens each one's task exactly once, for random (ranked after the sets it had) and for a judge-based
strategy (scored, then every set ranked again). Run in one process, as tests/rl/test_rounds.py."""
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.models import AnnotationTask, Slot
from generation.execution import run_batch_here
from rl.models import CollectionRound
from rl.rounds import Stage, advance, score_round, start_round, tick

from .round_world import baseline, judge_dir, register_judge, removal_inputs

pytestmark = pytest.mark.django_db


def fail_then_resume(round_, broken):
    """Run the round's batch with `broken`'s source missing from storage (its set fails), then put
    the file back, resume the batch and run it again. Returns the round after the first run and its
    ranked sets then."""
    batch = round_.batches.get()
    name = broken.source.name
    with default_storage.open(name, "rb") as handle:
        source = handle.read()
    default_storage.delete(name)
    run_batch_here(batch)
    assert (batch.status, batch.progress_done, batch.progress_failed) == ("done", 2, 1)
    first = CollectionRound.objects.get(pk=round_.pk)
    ranked = list(first.sets.order_by("rank").values_list("candidate_set_id", flat=True))
    assert default_storage.save(name, ContentFile(source)) == name
    assert batch.resume()
    run_batch_here(batch)
    batch.refresh_from_db()
    assert (batch.status, batch.progress_done, batch.progress_failed) == ("done", 3, 0)
    return first, ranked


def opened_once(round_) -> None:
    """Every set of the round's batch has one task, the round's row points at it, and it has the
    round's judgments wanted, as many slots as that."""
    generated = set(round_.batches.get().candidate_sets.values_list("pk", flat=True))
    tasks = list(AnnotationTask.objects.values_list("candidate_set_id", flat=True))
    assert sorted(tasks) == sorted(generated)
    rows = {row.candidate_set_id: row.task_id for row in round_.sets.all()}
    assert set(rows) == generated and all(rows.values())
    assert set(AnnotationTask.objects.values_list("required_judgments", flat=True)) == {round_.annotation_overlap}
    assert Slot.objects.count() == len(generated) * round_.annotation_overlap


def test_random_opens_the_sets_of_a_resumed_batch_once_after_the_ones_it_had():
    inputs = removal_inputs(3)
    round_ = start_round(strategy="random", generator=baseline(), candidates_per_input=2, annotation_overlap=2,
                         seed=3)
    first, ranked_first = fail_then_resume(round_, inputs[1])
    assert (first.status, first.results["opened"]) == ("done", 2)
    assert len(ranked_first) == 2

    round_.refresh_from_db()
    assert (round_.status, round_.stage) == ("done", Stage.OPENED), round_.error
    assert round_.results["sets"] == round_.results["opened"] == 3
    order = list(round_.sets.order_by("rank").values_list("candidate_set_id", flat=True))
    assert order[:2] == ranked_first and list(round_.sets.order_by("rank").values_list("rank", flat=True)) == [1, 2, 3]
    opened_once(round_)

    # The tick and the signal again open nothing twice.
    tick()
    advance(round_.pk)
    opened_once(CollectionRound.objects.get(pk=round_.pk))


def test_a_judge_round_scores_the_sets_of_a_resumed_batch_and_opens_each_once(tmp_path_factory):
    inputs = removal_inputs(3)
    version = register_judge(judge_dir(tmp_path_factory))
    round_ = start_round(strategy="uncertainty", reward_model=version, generator=baseline(), candidates_per_input=2,
                         seed=5)
    batch = round_.batches.get()
    name = inputs[2].source.name
    with default_storage.open(name, "rb") as handle:
        source = handle.read()
    default_storage.delete(name)
    run_batch_here(batch)
    round_.refresh_from_db()
    assert round_.stage == Stage.SCORING
    score_round(round_)
    round_.refresh_from_db()
    assert (round_.status, round_.results["opened"]) == ("done", 2), round_.error
    scores_before = {row.candidate_set_id: row.pair_scores for row in round_.sets.all()}

    default_storage.save(name, ContentFile(source))
    assert batch.resume()
    run_batch_here(batch)
    round_.refresh_from_db()
    # Back to scoring: the two scored sets are kept, the new one is to score.
    assert (round_.status, round_.stage, round_.progress_done, round_.progress_total) == (
        "running", Stage.SCORING, 2, 3)
    score_round(round_)
    round_.refresh_from_db()
    assert (round_.status, round_.stage) == ("done", Stage.OPENED), round_.error
    assert round_.results["sets"] == round_.results["opened"] == 3
    rows = {row.candidate_set_id: row for row in round_.sets.all()}
    assert all(rows[key].pair_scores == value for key, value in scores_before.items())  # not scored again
    assert sorted(row.rank for row in rows.values()) == [1, 2, 3]
    opened_once(round_)


def test_a_round_failed_for_want_of_sets_opens_them_once_its_batch_is_resumed():
    inputs = removal_inputs(2)
    round_ = start_round(strategy="random", generator=baseline(), candidates_per_input=2, seed=1)
    batch = round_.batches.get()
    sources = {}
    for item in inputs:
        with default_storage.open(item.source.name, "rb") as handle:
            sources[item.source.name] = handle.read()
        default_storage.delete(item.source.name)
    run_batch_here(batch)
    round_.refresh_from_db()
    assert round_.status == "failed" and "no candidate set was generated" in round_.error_cause
    for name, data in sources.items():
        default_storage.save(name, ContentFile(data))
    assert batch.resume()
    run_batch_here(batch)
    round_.refresh_from_db()
    assert (round_.status, round_.stage, round_.error) == ("done", Stage.OPENED, "")
    assert round_.results["opened"] == 2
    opened_once(round_)
