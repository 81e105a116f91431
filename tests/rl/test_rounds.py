"""Collection rounds in one process (PostgreSQL): the command's --here runs the workers' part
(generation with the CPU baseline, scoring with the demo judge) through the same functions, so the
held tasks, the strategies' order, the top K and the schedules' due times are checked end to end;
and the admin, API and command surfaces. tests/rl/test_round_worker.py runs a round on a real worker.
"""
import io
import random
import threading
import time
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.assignment import next_slot
from annotation.judging import record_judgment
from annotation.models import AnnotationTask, Slot
from annotation.simulation import simulate, simulated_annotators
from generation.execution import generate_set, run_batch_here
from generation.models import CandidateSet, GenerationBatch, Generator
from inputs.models import Tag
from rewardmodel.core.judge import Judge
from rl.models import CollectionRound, CollectionSchedule, PolicyCheckpoint, RLRun
from rl.rounds import Stage, start_due, start_round, tick
from tests.rl.oracle_world import brightness

from .round_world import (
    TOLERANCE,
    asked_pair_by_pair,
    assert_ranked_by,
    baseline,
    judge_dir,
    order_disagreement,
    pixels,
    register_judge,
    removal_inputs,
    uncertainty,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def judge_path(tmp_path_factory):
    return judge_dir(tmp_path_factory)


def ranked(round_) -> list[int]:
    return list(round_.sets.exclude(rank=None).order_by("rank").values_list("candidate_set_id", flat=True))


def opened_in_order(round_) -> list[int]:
    """The round's sets that have a task, in task order: the order annotators are handed them."""
    return list(AnnotationTask.objects.filter(pk__in=round_.sets.values("task")).order_by("pk")
                .values_list("candidate_set_id", flat=True))


def here(*args) -> str:
    out = io.StringIO()
    call_command("collection_round", *args, "--here", stdout=out)
    return out.getvalue()


# --- the strategies through the product -------------------------------------------------------------


@pytest.mark.parametrize("strategy, rule", [("uncertainty", uncertainty), ("order_disagreement", order_disagreement)])
def test_a_judge_round_opens_its_top_k_sets_in_the_strategy_order(strategy, rule, judge_path, client, make_user):
    removal_inputs(5)
    baseline()
    version = register_judge(judge_path)
    output = here("--strategy", strategy, "--reward-model", version.name, "--generator", "CPU baseline",
                  "--count", "4", "-n", "3", "--top-k", "2", "--seed", "5")
    round_ = CollectionRound.objects.get()
    assert (round_.status, round_.stage) == ("done", Stage.OPENED), round_.error
    assert "opened 2 task(s)" in output
    assert round_.results["sets"] == 4 and round_.results["opened"] == 2

    judge = Judge.from_pretrained(str(judge_path))
    figures = {}
    for row in round_.sets.select_related("candidate_set__input__task"):
        answers = asked_pair_by_pair(judge, row.candidate_set)
        assert len(row.pair_scores) == len(answers) == 3  # 3 pairs of 3 candidates, one dimension
        figures[row.candidate_set_id] = rule(answers)
        assert row.figure == pytest.approx(figures[row.candidate_set_id], abs=TOLERANCE)
    order = ranked(round_)
    assert sorted(order) == sorted(figures)
    assert_ranked_by(order, figures)
    assert opened_in_order(round_) == order[:2]  # the two with the highest figures, the first first
    assert AnnotationTask.objects.count() == 2  # the others stay held

    # Annotators are handed the first set first.
    users = simulated_annotators("brightness", 1, 0.0)
    simulate(users, max_tasks=1)
    assert AnnotationTask.objects.get(judgments_done=1).candidate_set_id == order[0]

    client.force_login(make_user("mel", "ml_engineer"))
    page = client.get(f"/admin/rl/collectionround/{round_.pk}/change/").content.decode()
    first = round_.sets.get(candidate_set_id=order[0])
    assert f'data-set="{order[0]}" data-rank="1" data-opened="yes"' in page
    assert f"{first.figure:.3f}" in page and "opened 2 task(s): 1/2 judgments made" in page


def test_a_round_holds_its_sets_until_its_batch_is_done_then_opens_them_at_random(make_user, client):
    removal_inputs(6)
    generator = baseline()
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/rl/collectionround/add/", {
        "name": "one click", "strategy": "random", "generator": generator.pk, "candidates_per_input": 2,
        "annotation_overlap": 2, "ranges": "", "seed": 11})
    assert response.status_code == 302, response.content.decode()[:3000]
    round_ = CollectionRound.objects.get()
    assert response["Location"].endswith(f"/admin/rl/collectionround/{round_.pk}/change/")
    batch = round_.batches.get()
    assert (batch.generator, batch.candidates_per_input, batch.annotation_overlap) == (generator, 2, 2)
    assert batch.for_annotation and batch.seed == 11

    sets = list(batch.candidate_sets.order_by("pk").values_list("pk", flat=True))
    generate_set(sets[0], "a worker")
    assert CandidateSet.objects.get(pk=sets[0]).status == "done"
    assert not AnnotationTask.objects.exists()  # held: a set does not open on its own
    page = client.get(f"/admin/rl/collectionround/{round_.pk}/change/").content.decode()
    assert "generating: 1/6 candidate sets" in page and "hx-get" in page

    run_batch_here(batch)
    round_.refresh_from_db()
    assert (round_.status, round_.stage) == ("done", Stage.OPENED)
    expected = sorted(sets)
    random.Random(11).shuffle(expected)
    assert expected != sorted(sets)
    assert opened_in_order(round_) == ranked(round_) == expected
    assert set(Slot.objects.values_list("task__required_judgments", flat=True)) == {2}
    page = client.get(f"/admin/rl/collectionround/{round_.pk}/change/").content.decode()
    assert 'id="round-sets"' in page and "opened 6 task(s): 0/12 judgments made" in page
    assert "hx-get" not in page


def test_a_batch_outside_a_round_opens_its_tasks_as_before():
    inputs = removal_inputs(2)
    batch = GenerationBatch.launch(generator=baseline(), inputs=inputs, candidates_per_input=2)
    run_batch_here(batch)
    assert AnnotationTask.objects.count() == 2


def test_the_checkpoint_and_its_base_generate_the_same_inputs_with_the_same_seeds():
    removal_inputs(3)
    base = baseline()
    policy = Generator.objects.create(name="policy", backend="cpu_baseline", settings={})
    judge = register_judge("/nowhere")
    run = RLRun.objects.create(base_generator=base, reward_model=judge, status="done")
    checkpoint = PolicyCheckpoint.objects.create(run=run, generator=policy, path="/policy")

    round_ = start_round(include_base=True, candidates_per_input=2, seed=4)  # the latest checkpoint
    assert round_.checkpoint == checkpoint
    batches = {batch.generator: batch for batch in round_.batches.all()}
    assert set(batches) == {policy, base}
    assert batches[policy].seed == batches[base].seed == 4
    assert set(batches[policy].inputs.all()) == set(batches[base].inputs.all())
    for batch in batches.values():
        run_batch_here(batch)
    round_.refresh_from_db()
    assert round_.stage == Stage.OPENED and round_.results["opened"] == 6


def test_human_disagreement_sends_back_the_judged_sets_the_judge_disagrees_with(judge_path, make_user):
    """Sets judged before the round (a batch of its own, people's picks: the brighter best on some,
    the darker on others); the round scores them and gives the top K one more judgment each."""
    inputs = removal_inputs(4)
    batch = GenerationBatch.launch(generator=baseline(), inputs=inputs, candidates_per_input=3, seed=2)
    run_batch_here(batch)
    person = make_user("ann", "annotator")
    contrary = {}
    while (slot := next_slot(person)) is not None:
        candidate_set = slot.task.candidate_set
        levels = {c.index: brightness(pixels(c.image), np.full((32, 32), 255)) for c in candidate_set.candidates.all()}
        contrary[candidate_set.pk] = len(contrary) % 2 == 1
        by_level = sorted(levels, key=levels.get, reverse=not contrary[candidate_set.pk])
        best, worst = slot.shown_order.index(by_level[0]), slot.shown_order.index(by_level[-1])
        record_judgment(person, slot.pk, {"submission_id": str(uuid.uuid4()), "dwell_ms": 3000,
                                          "picks": {"removal_quality": {"best": best, "worst": worst}}})
    assert len(contrary) == 4
    version = register_judge(judge_path)
    here("--strategy", "human_disagreement", "--reward-model", version.name, "--top-k", "2")
    round_ = CollectionRound.objects.get()
    assert (round_.status, round_.stage) == ("done", Stage.OPENED), round_.error
    assert not round_.batches.exists()  # nothing generated: it ranks sets already judged

    judge = Judge.from_pretrained(str(judge_path))
    figures = {}
    for candidate_set in CandidateSet.objects.filter(batch=batch):
        answers = asked_pair_by_pair(judge, candidate_set)
        pick = candidate_set.annotation_task.judgments.get().picks.get()
        best, worst = pick.best.index, pick.worst.index
        middle = ({0, 1, 2} - {best, worst}).pop()
        wins = []
        for winner, loser in ((best, worst), (best, middle), (middle, worst)):
            f, r = answers[("removal_quality", min(winner, loser), max(winner, loser))]
            first_wins = (f + 1 - r) / 2
            wins.append(first_wins if winner < loser else 1 - first_wins)
        figures[candidate_set.pk] = 1 - float(np.mean(wins))
    order = ranked(round_)
    assert_ranked_by(order, figures)
    sent_back = AnnotationTask.objects.filter(candidate_set_id__in=order[:2])
    assert set(sent_back.values_list("required_judgments", flat=True)) == {2}
    assert Slot.objects.filter(task__in=sent_back, state="open").count() == 2
    assert set(AnnotationTask.objects.exclude(candidate_set_id__in=order[:2])
               .values_list("required_judgments", flat=True)) == {1}


def test_a_judge_strategy_refuses_to_start_without_a_judge_and_names_the_field():
    removal_inputs(1)
    baseline()
    with pytest.raises(CommandError, match="reward_model: the uncertainty strategy ranks the sets by a judge"):
        here("--strategy", "uncertainty", "--generator", "CPU baseline")
    with pytest.raises(CommandError, match="generator: there is no policy checkpoint yet"):
        here("--strategy", "random")
    with pytest.raises(CommandError, match="no input matches"):
        here("--generator", "CPU baseline", "--tag", Tag.objects.create(name="empty").name)
    with pytest.raises(CommandError, match="has been judged yet"):
        here("--strategy", "human_disagreement", "--reward-model", register_judge("/nowhere").name)
    assert not CollectionRound.objects.exists() and not GenerationBatch.objects.exists()


# --- schedules -----------------------------------------------------------------------------------------


def nightly(**fields) -> CollectionSchedule:
    options = {"name": "nightly", "every_hours": 6, "generator": baseline(), "candidates_per_input": 2, "seed": 3,
               **fields}
    schedule = CollectionSchedule(**options)
    schedule.full_clean()
    schedule.save()
    return schedule


def test_a_due_schedule_starts_one_round_and_a_second_tick_none():
    removal_inputs(2)
    schedule = nightly()
    now = timezone.now()
    due = schedule.next_due_at
    assert due <= now  # an interval schedule's first round is due at once

    (started,) = tick(now)
    assert started.schedule == schedule and started.seed == 3 and str(started) == "nightly #1"
    assert started.stage == Stage.GENERATING and started.batches.count() == 1
    assert tick(now) == [] and tick(now + timedelta(hours=5)) == []
    schedule.refresh_from_db()
    assert schedule.next_due_at == due + timedelta(hours=6) and schedule.last_started_at == now
    assert CollectionRound.objects.count() == 1

    (second,) = tick(due + timedelta(hours=6, minutes=1))
    assert second.seed == 4 and str(second) == "nightly #2"  # a seed of its own: other candidates
    assert CollectionRound.objects.count() == 2


def test_a_daily_schedule_waits_for_its_time_and_a_failing_one_says_why():
    removal_inputs(1)
    now = timezone.now()
    at = (now + timedelta(hours=1)).astimezone(timezone.get_current_timezone())
    schedule = nightly(every_hours=None, daily_at=at.time().replace(second=0, microsecond=0))
    assert now < schedule.next_due_at <= now + timedelta(hours=1)
    assert tick(now) == []
    assert len(tick(schedule.next_due_at)) == 1

    broken = nightly(name="empty tag")
    broken.tags.set([Tag.objects.create(name="nothing here")])
    later = timezone.now()
    assert tick(later) == []
    broken.refresh_from_db()
    assert "no input matches" in broken.last_error and broken.next_due_at > later
    assert not broken.rounds.exists()

    off = nightly(name="off", enabled=False)
    assert off.next_due_at is None
    tick(now + timedelta(days=3))
    assert not off.rounds.exists()


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_start_one_round():
    """While one tick holds a due schedule (its round being started), another skips it at once
    instead of starting it too or waiting; when the first commits, the due time has moved on."""
    removal_inputs(1)
    schedule = nightly()
    now = timezone.now()
    other: dict = {}

    def second_tick():
        started = time.monotonic()
        try:
            other["started"] = tick(now)
        finally:
            other["seconds"] = time.monotonic() - started
            connections.close_all()

    with transaction.atomic():
        CollectionSchedule.objects.select_for_update().get(pk=schedule.pk)  # this tick holds it
        thread = threading.Thread(target=second_tick)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the second tick waited on the first one's lock"
        assert other["started"] == [] and other["seconds"] < 10
        assert start_due(schedule.pk, now) is not None
    assert tick(now) == []
    assert CollectionRound.objects.count() == 1
    assert connection.vendor == "postgresql"


# --- admin, API, command ---------------------------------------------------------------------------------


def test_the_schedule_admin_edits_the_timing_and_starts_a_round_now(make_user, client):
    removal_inputs(2)
    generator = baseline()
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/rl/collectionschedule/add/", {
        "name": "daily removal", "enabled": "on", "every_hours": "", "daily_at": "03:30", "strategy": "random",
        "generator": generator.pk, "candidates_per_input": 2, "annotation_overlap": 1, "ranges": "", "seed": 0})
    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = CollectionSchedule.objects.get()
    local = timezone.localtime(schedule.next_due_at)
    assert (local.hour, local.minute) == (3, 30)

    response = client.post(f"/admin/rl/collectionschedule/{schedule.pk}/change/", {
        "name": "daily removal", "enabled": "on", "every_hours": "12", "daily_at": "", "strategy": "random",
        "generator": generator.pk, "candidates_per_input": 2, "annotation_overlap": 1, "ranges": "", "seed": 0})
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.next_due_at <= timezone.now()  # the new timing: an interval is due at once

    response = client.post("/admin/rl/collectionschedule/add/", {
        "name": "both", "enabled": "on", "every_hours": "2", "daily_at": "01:00", "strategy": "uncertainty",
        "candidates_per_input": 2, "annotation_overlap": 1, "ranges": "", "seed": 0})
    page = response.content.decode()
    assert response.status_code == 200
    assert "either an interval in hours or a daily time" in page and "ranks the sets by a judge" in page

    page = client.get(f"/admin/rl/collectionschedule/{schedule.pk}/change/").content.decode()
    assert 'id="start-round-now"' in page
    response = client.post(f"/admin/rl/collectionschedule/{schedule.pk}/start/")
    started = CollectionRound.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{started.pk}/change/")
    assert started.schedule == schedule
    response = client.post("/admin/rl/collectionschedule/", {"action": "start_now", "_selected_action": [schedule.pk]})
    assert response.status_code == 302 and CollectionRound.objects.count() == 2

    response = client.post("/admin/rl/collectionround/", {"action": "cancel_rounds",
                                                           "_selected_action": [started.pk]})
    started.refresh_from_db()
    assert started.status == "cancelled" and started.batches.get().status == "cancelled"
    listing = client.get("/admin/rl/collectionschedule/").content.decode()
    assert "daily removal" in listing and "every 12 h" in listing


def test_the_round_admin_refuses_a_bad_round_and_shows_progress(make_user, client):
    removal_inputs(1)
    baseline()
    client.force_login(make_user("mel", "ml_engineer"))
    page = client.get("/admin/rl/collectionround/add/").content.decode()
    assert "Start a collection round now" in page
    response = client.post("/admin/rl/collectionround/add/", {
        "strategy": "order_disagreement", "candidates_per_input": 1, "annotation_overlap": 1, "ranges": "",
        "seed": 0})
    page = response.content.decode()
    assert response.status_code == 200 and "ranks the sets by a judge" in page and "at least 2 candidates" in page
    assert not CollectionRound.objects.exists()
    round_ = start_round(generator=baseline(), candidates_per_input=2)
    fragment = client.get(f"/admin/rl/collectionround/{round_.pk}/progress/").content.decode()
    assert 'data-stage="generating"' in fragment and "hx-trigger" in fragment


def test_the_api_starts_rounds_and_edits_schedules(make_user):
    removal_inputs(3)
    baseline()
    api = APIClient()
    api.force_authenticate(make_user("mel", "ml_engineer"))
    response = api.post("/api/collection-rounds/", {"generator": "CPU baseline", "candidates_per_input": 2,
                                                    "top_k": 2, "seed": 1}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["stage"] == "generating" and body["where"].startswith("generating: 0/3") and len(body["batches"]) == 1
    round_ = CollectionRound.objects.get(pk=body["id"])
    run_batch_here(round_.batches.get())
    body = api.get(f"/api/collection-rounds/{round_.pk}/").json()
    assert body["status"] == "done" and body["annotation"] == {"tasks": 2, "done": 0, "wanted": 2}
    assert [row["rank"] for row in body["sets"]] == [1, 2, 3]
    assert [row["task"] is not None for row in body["sets"]] == [True, True, False]

    response = api.post("/api/collection-rounds/", {"strategy": "uncertainty", "generator": "CPU baseline"},
                        format="json")
    assert response.status_code == 400 and "reward_model" in response.json()

    response = api.post("/api/collection-schedules/", {"name": "hourly", "every_hours": 1, "generator": "CPU baseline",
                                                       "candidates_per_input": 2}, format="json")
    assert response.status_code == 201, response.json()
    schedule = response.json()
    assert schedule["next_due_at"] is not None and schedule["enabled"]
    response = api.patch(f"/api/collection-schedules/{schedule['id']}/", {"every_hours": None, "daily_at": "05:00"},
                         format="json")
    assert response.status_code == 200, response.json()
    assert timezone.localtime(CollectionSchedule.objects.get().next_due_at).hour == 5
    response = api.patch(f"/api/collection-schedules/{schedule['id']}/", {"every_hours": 3}, format="json")
    assert response.status_code == 400 and "every_hours" in response.json()
    response = api.post(f"/api/collection-schedules/{schedule['id']}/start/")
    assert response.status_code == 202 and response.json()["schedule"] == schedule["id"]

    annotator = APIClient()
    annotator.force_authenticate(make_user("ann", "annotator"))
    assert annotator.post("/api/collection-rounds/", {}, format="json").status_code == 403
    assert annotator.get("/api/collection-schedules/").status_code == 403


def test_the_command_starts_a_schedule_round_and_ticks():
    removal_inputs(2)
    nightly()
    out = io.StringIO()
    call_command("collection_round", "--tick", stdout=out)
    assert "1 round(s) started" in out.getvalue() and "for schedule nightly" in out.getvalue()
    out = io.StringIO()
    call_command("collection_round", "--schedule", "nightly", stdout=out)
    assert "nightly #2" in out.getvalue()
    with pytest.raises(CommandError, match="no schedule 'weekly'"):
        call_command("collection_round", "--schedule", "weekly")
    assert CollectionRound.objects.count() == 2
