"""Handing out tasks and recording judgments: fair, leased, validated, idempotent, concurrent."""
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation.assignment import AnnotatorPaused, create_annotation_task, next_slot, shown_order
from annotation.judging import JudgmentRejected, record_judgment, skip
from annotation.models import (
    AnnotationTask,
    AnnotatorStatus,
    DimensionPick,
    Judgment,
    QualityControlSettings,
    Slot,
)
from tests.annotation.world import annotate_concurrently, full_picks, make_tasks, race_a_retry


@pytest.fixture
def no_mixing(db):
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    return settings


def submit(user, slot, picks=None, submission_id=None, dwell_ms=9000):
    return record_judgment(user, slot.pk, {"submission_id": str(submission_id or uuid.uuid4()), "dwell_ms": dwell_ms,
                                           "picks": picks if picks is not None else full_picks(slot)})


@pytest.mark.django_db
def test_a_task_has_k_slots_and_creating_it_twice_changes_nothing(no_mixing):
    task = make_tasks(1, k=3)[0]
    assert task.slots.count() == 3 and task.required_judgments == 3
    assert create_annotation_task(task.candidate_set) == task
    assert task.slots.count() == 3


@pytest.mark.django_db
def test_k_different_annotators_each_judge_a_task_once(no_mixing, make_user):
    make_tasks(2, k=2)
    users = [make_user(f"a{i}", "annotator") for i in range(3)]
    seen = {}
    for user in users:
        while (slot := next_slot(user)) is not None:
            assert slot.task_id not in seen.get(user.pk, set())
            seen.setdefault(user.pk, set()).add(slot.task_id)
            submit(user, slot)
    for task in AnnotationTask.objects.all():
        annotators = list(task.judgments.values_list("annotator", flat=True))
        assert len(annotators) == 2 == len(set(annotators)) and task.judgments_done == 2
    assert Judgment.objects.count() == 4


@pytest.mark.django_db
def test_a_reload_resumes_the_lease_and_prefetch_gets_the_next(no_mixing, make_user):
    make_tasks(3)
    user = make_user("a", "annotator")
    first = next_slot(user)
    assert next_slot(user).pk == first.pk
    second = next_slot(user, exclude=first.pk)
    assert second.pk != first.pk and second.task_id != first.task_id
    assert first.shown_order == shown_order(user.pk, first.task_id, "regular", 4)
    assert sorted(first.shown_order) == [0, 1, 2, 3]


@pytest.mark.django_db
def test_an_expired_lease_returns_the_task_to_the_pool(no_mixing, make_user):
    make_tasks(1)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    slot = next_slot(alice)
    assert next_slot(bob) is None
    Slot.objects.filter(pk=slot.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken = next_slot(bob)
    assert taken.pk == slot.pk and taken.annotator == bob
    with pytest.raises(JudgmentRejected, match="not assigned to you"):
        submit(alice, slot)
    submit(bob, taken)
    assert Judgment.objects.get().annotator == bob


@pytest.mark.django_db
def test_skip_gives_the_task_to_someone_else(no_mixing, make_user):
    make_tasks(1)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    slot = next_slot(alice)
    assert skip(alice, slot.pk)
    assert next_slot(alice) is None
    assert next_slot(bob).pk == slot.pk


@pytest.mark.django_db
def test_paused_annotators_get_no_task(no_mixing, make_user):
    make_tasks(1)
    user = make_user("a", "annotator")
    AnnotatorStatus.objects.create(user=user, paused=True, reason="gold accuracy 40% is below 60%")
    with pytest.raises(AnnotatorPaused, match="gold accuracy 40%"):
        next_slot(user)


@pytest.mark.django_db
def test_gold_and_repeats_are_mixed_in(make_user):
    tasks = make_tasks(3)
    AnnotationTask.objects.filter(pk=tasks[0].pk).update(is_gold=True)
    settings = QualityControlSettings.current()
    settings.gold_rate, settings.repeat_share = 1.0, 0.0
    settings.save()
    user = make_user("a", "annotator")
    gold = next_slot(user)
    assert gold.kind == "gold" and gold.task_id == tasks[0].pk
    submit(user, gold)
    settings.gold_rate = 0.0
    settings.save()
    regular = next_slot(user)
    assert regular.kind == "regular" and regular.task_id != tasks[0].pk
    submit(user, regular)
    settings.repeat_share = 1.0
    settings.save()
    assert next_slot(user) is None or next_slot(user).kind != "repeat"  # judged just now: too soon to repeat
    Slot.objects.filter(annotator=user, state="leased").update(state="open", annotator=None, leased_until=None)
    settings.repeat_after_minutes = 0
    settings.save()
    repeat = next_slot(user)
    assert repeat.kind == "repeat" and repeat.task_id == regular.task_id
    assert repeat.shown_order != regular.shown_order or len(repeat.shown_order) < 3
    submit(user, repeat)
    assert AnnotationTask.objects.get(pk=regular.task_id).judgments_done == 1  # a repeat is not a new judgment


@pytest.mark.django_db
def test_a_retried_submission_stores_one_judgment(no_mixing, make_user):
    make_tasks(1)
    user = make_user("a", "annotator")
    slot = next_slot(user)
    submission = uuid.uuid4()
    assert submit(user, slot, submission_id=submission).created is True
    again = submit(user, slot, submission_id=submission)
    assert again.created is False
    assert Judgment.objects.count() == 1 and DimensionPick.objects.count() == 4
    with pytest.raises(JudgmentRejected, match="already judged"):
        submit(user, slot)


@pytest.mark.django_db
def test_picks_are_mapped_through_the_order_shown(no_mixing, make_user):
    make_tasks(1)
    user = make_user("a", "annotator")
    slot = next_slot(user)
    picks = full_picks(slot, best=2, worst=0)
    picks["aesthetics"] = {"discarded": True}
    judgment = submit(user, slot, picks=picks).judgment
    for pick in judgment.picks.select_related("dimension", "best", "worst"):
        if pick.dimension.slug == "aesthetics":
            assert pick.discarded and pick.best is None
        else:
            assert (pick.best.index, pick.worst.index) == (slot.shown_order[2], slot.shown_order[0])
            assert (pick.best_position, pick.worst_position) == (2, 0)
    assert judgment.shown_order == slot.shown_order


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("structure"), "missing: Structure"),
        (lambda p: p.update(structure={"best": 1, "worst": 1}), "Structure: the best and the worst must be different"),
        (
            lambda p: p.update(structure={"best": 0, "worst": 7}),
            "Structure: worst must be one of this task's candidates (1-4)",
        ),
        (lambda p: p.update(structure={"best": 0}), "Structure: pick both the best and the worst"),
        (lambda p: p.update(structure={"discarded": True, "best": 0}), "discarded cannot also name a best"),
        (lambda p: p.update(removal_quality={"discarded": True}), "removal_quality is not judged for this task"),
        (lambda p: p.update(structure="best"), "Structure: give best and worst, or discarded"),
        (lambda p: p.update(structure={"best": "0", "worst": 1}), "best must be one of this task's candidates"),
    ],
)
def test_invalid_submissions_store_nothing(no_mixing, make_user, change, message):
    make_tasks(1)
    user = make_user("a", "annotator")
    slot = next_slot(user)
    picks = full_picks(slot)
    change(picks)
    with pytest.raises(JudgmentRejected, match=message.replace("(", r"\(").replace(")", r"\)")):
        submit(user, slot, picks=picks)
    assert Judgment.objects.count() == 0 and DimensionPick.objects.count() == 0
    assert Slot.objects.get(pk=slot.pk).state == "leased"


@pytest.mark.django_db
def test_malformed_payloads_and_foreign_slots_are_refused(no_mixing, make_user):
    make_tasks(1)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    slot = next_slot(alice)
    for payload, message in [
        ({"dwell_ms": 1, "picks": {}}, "submission_id is missing"),
        ({"submission_id": str(uuid.uuid4()), "dwell_ms": -5, "picks": {}}, "dwell_ms must be"),
        ({"submission_id": str(uuid.uuid4()), "dwell_ms": 2**31, "picks": {}}, "dwell_ms must be"),
        ({"submission_id": str(uuid.uuid4()), "dwell_ms": 86_400_001, "picks": {}}, "from 0 to 86400000"),
        ({"submission_id": str(uuid.uuid4()), "dwell_ms": 5, "picks": []}, "picks must map"),
        ("not an object", "must be a JSON object"),
    ]:
        with pytest.raises(JudgmentRejected, match=message):
            record_judgment(alice, slot.pk, payload)
    with pytest.raises(JudgmentRejected, match="not assigned to you"):
        submit(bob, slot)
    with pytest.raises(JudgmentRejected, match="no such task"):
        record_judgment(alice, 999999, {"submission_id": str(uuid.uuid4()), "dwell_ms": 1, "picks": {}})
    assert Judgment.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_waits_on_its_original_gets_the_stored_judgment(make_user):
    assert connection.vendor == "postgresql"
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    make_tasks(1, n=3)
    alice = make_user("alice", "annotator")
    slot = next_slot(alice)
    payload = {"submission_id": str(uuid.uuid4()), "dwell_ms": 900, "picks": full_picks(slot, best=0, worst=2)}
    original, retry = race_a_retry(record_judgment, alice, Slot, slot.pk, payload)
    assert original.created and not retry.created, (original, retry)
    assert retry.judgment.pk == original.judgment.pk == Judgment.objects.get().pk
    other = {**payload, "submission_id": str(uuid.uuid4())}
    with pytest.raises(JudgmentRejected, match="already judged"):
        record_judgment(alice, slot.pk, other)  # a new submission on a judged slot is still refused


@pytest.mark.django_db(transaction=True)
def test_many_annotators_at_once_on_postgresql(make_user):
    assert connection.vendor == "postgresql"
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    k, task_count, annotator_count = 3, 24, 8
    make_tasks(task_count, n=3, k=k)
    users = [make_user(f"annotator{i}", "annotator") for i in range(annotator_count)]
    errors, judged = annotate_concurrently(users)
    assert not errors, errors
    assert all(len(tasks) == len(set(tasks)) for tasks in judged.values())  # nobody judged a task twice
    assert sum(len(t) for t in judged.values()) == Judgment.objects.count() == k * task_count
    for task in AnnotationTask.objects.all():
        assert task.judgments_done == k == task.judgments.values("annotator").distinct().count()
    assert not Slot.objects.exclude(state="done").exists()


def test_many_annotators_at_once_on_sqlite(tmp_path):
    """The same guarantees on the default SQLite database, where transactions queue instead of
    locking rows."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "ONEREWARD_DATA_DIR": str(tmp_path),
           "ONEREWARD_MEDIA_ROOT": str(tmp_path / "media")}
    result = subprocess.run([sys.executable, "-m", "tests.annotation.sqlite_concurrency", "2", "12", "5"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"errors": [], "judgments": 24, "twice": 0, "per_task": [2], "distinct_per_task": [2]}


@pytest.mark.django_db
def test_wrong_gold_answers_pause_the_annotator(make_user, django_capture_on_commit_callbacks):
    tasks = make_tasks(2)
    gold = tasks[0]
    dimensions = [d.slug for d in gold.candidate_set.input.judged_dimensions()]
    AnnotationTask.objects.filter(pk=gold.pk).update(
        is_gold=True, gold_answers={slug: {"best": 3, "worst": 2} for slug in dimensions})
    settings = QualityControlSettings.current()
    settings.gold_rate, settings.repeat_share, settings.gold_min_judgments = 1.0, 0.0, 4
    settings.save()
    user = make_user("a", "annotator")
    slot = next_slot(user)
    assert slot.kind == "gold"
    # Screen positions that point at other candidates than the expected ones.
    wrong_best = next(p for p, index in enumerate(slot.shown_order) if index == 0)
    wrong_worst = next(p for p, index in enumerate(slot.shown_order) if index == 1)
    with django_capture_on_commit_callbacks(execute=True):
        submit(user, slot, picks=full_picks(slot, best=wrong_best, worst=wrong_worst))
    with pytest.raises(AnnotatorPaused, match="gold"):
        next_slot(user)


def test_shown_orders_are_keyed_by_the_server_secret(settings):
    """An annotator knows their id and the task's, but not the server's secret: the order is not
    the ids' plain hash, and another secret gives other orders."""
    import hashlib

    from annotation.queue import order_seed, shuffled

    ids = [(annotator, task) for annotator in range(1, 6) for task in range(1, 21)]
    settings.ONEREWARD_ORDER_SECRET = "one secret"
    first = [shuffled(range(4), order_seed(a, t, "regular")) for a, t in ids]
    plain = [shuffled(range(4), int.from_bytes(hashlib.sha256(f"{a}:{t}:regular".encode()).digest()[:8], "big"))
             for a, t in ids]
    assert first == [shuffled(range(4), order_seed(a, t, "regular")) for a, t in ids]  # stable for a secret
    assert sum(x != y for x, y in zip(first, plain)) > len(ids) // 2
    settings.ONEREWARD_ORDER_SECRET = "another secret"
    assert sum(x != y for x, y in zip(first, [shuffled(range(4), order_seed(a, t, "regular")) for a, t in ids])) \
        > len(ids) // 2
    settings.ONEREWARD_ORDER_SECRET = ""  # derived from SECRET_KEY
    settings.SECRET_KEY = "a" * 50
    derived = [shuffled(range(4), order_seed(a, t, "regular")) for a, t in ids]
    settings.SECRET_KEY = "b" * 50
    assert derived != [shuffled(range(4), order_seed(a, t, "regular")) for a, t in ids]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_next_task_requests_of_one_annotator_get_the_same_lease(make_user):
    """A double click or three tabs: the requests race the one-slot-per-annotator key, and every one
    of them gets the one lease, never an error (PostgreSQL, real threads, 10 rounds)."""
    import threading

    from django.db import connections

    assert connection.vendor == "postgresql"
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    make_tasks(12, n=3, k=1)
    for round_ in range(10):
        user = make_user(f"clicker{round_}", "annotator")
        start, results = threading.Barrier(3), []

        def request(user=user, start=start, results=results):
            try:
                start.wait(10)
                slot = next_slot(user)
                results.append(slot.pk if slot is not None else None)
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                results.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=request) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 3 and len(set(results)) == 1 and isinstance(results[0], int), results
        assert Slot.objects.filter(annotator=user, state="leased").count() == 1
