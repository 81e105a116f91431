"""Human evaluation studies: building one from batches, handing items out (also under concurrency on
PostgreSQL), recording judgments, the report's figures against hand-computed ones, the pairs the
leaderboard reads, the blind annotator pages, the admin and the API."""
import json
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import AnnotationTask, AnnotatorStatus, QualityControlSettings
from evaluation.models import (
    Study,
    StudyArm,
    StudyCandidate,
    StudyItem,
    StudyJudgment,
    StudyPick,
    StudySlot,
    UsabilityVote,
)
from evaluation.studies import (
    AnnotatorPaused,
    StudyJudgmentRejected,
    create_study,
    next_item,
    record_study_judgment,
    study_outcomes,
    study_report,
    wilson_interval,
)
from generation.execution import generate_set
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator, SetStatus
from inputs.importing import import_inputs
from inputs.models import Input, Task
from onereward.jobs import JobStatus
from tests.annotation.test_annotate_views import assert_no_leak, response_text, synthetic_specs
from tests.annotation.world import race_a_retry

FILL_DIMENSIONS = ["text_alignment", "consistency", "structure", "aesthetics"]


# --- a world built straight in the database -------------------------------------------------------


class World:
    """Inputs (file names only) and evaluation batches with one candidate per finished set."""

    def __init__(self):
        self.count = 0

    def inputs(self, count: int, task: str = "image_fill") -> list[Input]:
        task_row = Task.objects.get(slug=task)
        made = []
        for _ in range(count):
            self.count += 1
            prompt = "" if task_row.prompt_mode == "fixed" else f"a thing number {self.count}"
            made.append(
                Input.objects.create(
                    task=task_row,
                    prompt=prompt,
                    source=f"inputs/w{self.count}.png",
                    mask=f"inputs/w{self.count}-mask.png",
                    width=32,
                    height=32,
                    mask_coverage=0.25,
                    content_hash=f"{self.count:064d}",
                )
            )
        return made

    def batch(self, generator: str, inputs, n: int = 1, failed=(), for_annotation: bool = False,
              status: str = JobStatus.DONE, name: str = "") -> GenerationBatch:
        generator_row, _ = Generator.objects.get_or_create(name=generator, defaults={"backend": "cpu_baseline"})
        batch = GenerationBatch.objects.create(generator=generator_row, candidates_per_input=n, status=status,
                                               for_annotation=for_annotation, name=name or f"{generator} batch")
        for item in inputs:
            done = item not in failed
            candidate_set = CandidateSet.objects.create(batch=batch, input=item,
                                                        status=SetStatus.DONE if done else SetStatus.FAILED)
            if done:
                Candidate.objects.bulk_create([
                    Candidate(candidate_set=candidate_set, index=i, image=f"c/{candidate_set.pk}-{i}.png",
                              thumbnail=f"c/{candidate_set.pk}-{i}.jpg", settings={"seed": i}, seconds=0.0)
                    for i in range(n)])
        return batch


@pytest.fixture
def world(db):
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    return World()


def arm_positions(slot: StudySlot) -> dict[str, int]:
    """Arm label -> screen position, as the server laid the item out for this annotator."""
    labels = dict(StudyCandidate.objects.filter(item_id=slot.item_id).values_list("pk", "arm__label"))
    return {labels[candidate_id]: position for position, candidate_id in enumerate(slot.shown_order)}


def answer(user, slot, usable: dict[str, bool], picks: dict[str, tuple[str, str] | None], submission_id=None):
    """Submit by arm label: usable {label: bool}; picks {dimension: (best label, worst label) | None}."""
    where = arm_positions(slot)
    payload = {
        "submission_id": str(submission_id or uuid.uuid4()), "dwell_ms": 5000,
        "usable": [usable[label] for label, _ in sorted(where.items(), key=lambda kv: kv[1])],
        "picks": {dim: {"discarded": True} if pick is None else {"best": where[pick[0]], "worst": where[pick[1]]}
                  for dim, pick in picks.items()},
    }
    return record_study_judgment(user, slot.pk, payload)


def every_dimension(slot, best="A", worst="B"):
    return {d.slug: (best, worst) for d in slot.item.input.judged_dimensions()}


def two_arm_study(world, items: int = 3, k: int = 2, name: str = "A vs B") -> Study:
    inputs = world.inputs(items)
    return create_study(name, [(world.batch("gen-a", inputs), "A"), (world.batch("gen-b", inputs), "B")], k)


# --- building a study -----------------------------------------------------------------------------


def test_a_study_from_two_batches_has_one_item_per_input_finished_in_both(world, make_user):
    inputs = world.inputs(4)
    base = world.batch("base", inputs, n=2, for_annotation=True)      # an annotation batch is fine too
    tuned = world.batch("tuned", inputs, failed=[inputs[2]])          # one input failed in this arm
    admin = make_user("boss", "admin")
    study = create_study("base vs tuned", [(base, "base"), (tuned.pk, "tuned")], 3, user=admin)

    assert [arm.label for arm in study.arms.all()] == ["base", "tuned"]
    assert study.created_by == admin and study.judgments_per_item == 3 and study.active
    items = list(study.items.order_by("input_id"))
    assert [item.input_id for item in items] == [inputs[0].pk, inputs[1].pk, inputs[3].pk]
    for item in items:
        shown = {
            c.arm.label: c.candidate for c in item.study_candidates.select_related("arm", "candidate__candidate_set")
        }
        assert {
            label: (c.index, c.candidate_set.batch_id, c.candidate_set.input_id) for label, c in shown.items()
        } == {"base": (0, base.pk, item.input_id), "tuned": (0, tuned.pk, item.input_id)}
        assert item.slots.count() == 3 and set(item.slots.values_list("state", flat=True)) == {"open"}
        assert item.judgments_done == 0


def test_two_arms_may_share_a_generator_but_not_a_batch(world):
    inputs = world.inputs(2)
    first, second = world.batch("same", inputs), world.batch("same", inputs)
    study = create_study("settings A/B", [(first, "low"), (second, "high")], 1)
    assert study.items.count() == 2


@pytest.mark.parametrize("case, message", [
    ("one arm", "at least two arms"),
    ("same batch", "the same batch is chosen twice"),
    ("same label", "arm labels must differ"),
    ("empty label", "every arm needs a label"),
    ("different tasks", "the arms cover different tasks"),
    ("nothing in common", "no input is finished in every arm's batch"),
    ("running", "is still running"),
    ("no name", "a study needs a name"),
    ("taken name", "a study named 'taken' exists already"),
    ("no judgments", "at least one judgment per item"),
    ("unknown batch", "no generation batch with id 999999"),
])
def test_a_bad_study_is_refused_and_nothing_is_stored(world, case, message):
    fill = world.inputs(2)
    a, b = world.batch("a", fill), world.batch("b", fill)
    before = Study.objects.count()
    if case == "taken name":
        create_study("taken", [(a, "A"), (b, "B")], 1)
        before += 1
    arms = {
        "one arm": [(a, "A")],
        "same batch": [(a, "A"), (a, "B")],
        "same label": [(a, "A"), (b, "A")],
        "empty label": [(a, "A"), (b, " ")],
        "different tasks": [(a, "A"), (world.batch("c", fill + world.inputs(1, "object_removal")), "C")],
        "nothing in common": [(a, "A"), (world.batch("d", world.inputs(2)), "D")],
        "running": [(a, "A"), (world.batch("e", fill, status=JobStatus.RUNNING), "E")],
        "unknown batch": [(a, "A"), (999999, "X")],
    }.get(case, [(a, "A"), (b, "B")])
    name = {"no name": "  ", "taken name": "taken"}.get(case, "a study")
    with pytest.raises(ValidationError) as error:
        create_study(name, arms, 0 if case == "no judgments" else 2)
    assert message in str(error.value)
    assert Study.objects.count() == before
    assert StudyItem.objects.exclude(study__name="taken").count() == 0
    assert StudyArm.objects.exclude(study__name="taken").count() == 0


def test_several_problems_are_named_together(world):
    a = world.batch("a", world.inputs(1))
    with pytest.raises(ValidationError) as error:
        create_study("", [(a, "A")], 0)
    assert set(error.value.message_dict) == {"name", "judgments_per_item", "arms"}


# --- handing out and recording ----------------------------------------------------------------------


def test_items_go_to_k_different_annotators_each_once(world, make_user):
    study = two_arm_study(world, items=3, k=2)
    users = [make_user(f"u{i}", "annotator") for i in range(3)]
    judged = {user.pk: [] for user in users}
    for user in users:
        while (slot := next_item(user)) is not None:
            assert slot.item_id not in judged[user.pk]
            assert slot.annotator == user and slot.state == "leased"
            assert sorted(slot.shown_order) == sorted(slot.item.study_candidates.values_list("pk", flat=True))
            answer(user, slot, {"A": True, "B": False}, every_dimension(slot))
            judged[user.pk].append(slot.item_id)
    assert sorted(len(items) for items in judged.values()) == [0, 3, 3]
    for item in study.items.all():
        assert item.judgments_done == 2 == item.judgments.values("annotator").distinct().count()
    assert not StudySlot.objects.exclude(state="done").exists()


def test_a_reload_resumes_the_lease_and_an_expired_lease_goes_to_someone_else(world, make_user):
    two_arm_study(world, items=1, k=1)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    slot = next_item(alice)
    assert next_item(alice).pk == slot.pk
    assert next_item(alice, exclude=slot.pk) is None
    assert next_item(bob) is None
    StudySlot.objects.filter(pk=slot.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    # Nobody has taken it yet: Alice coming back resumes it.
    assert next_item(alice).pk == slot.pk
    StudySlot.objects.filter(pk=slot.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken = next_item(bob)
    assert taken.pk == slot.pk and taken.annotator == bob
    with pytest.raises(StudyJudgmentRejected, match="not assigned to you"):
        answer(alice, slot, {"A": True, "B": True}, every_dimension(slot))
    answer(bob, taken, {"A": True, "B": True}, every_dimension(taken))
    assert StudyJudgment.objects.get().annotator == bob
    assert next_item(alice) is None


def test_inactive_studies_and_paused_annotators_get_nothing(world, make_user):
    study = two_arm_study(world, items=1, k=1)
    user = make_user("u", "annotator")
    Study.objects.filter(pk=study.pk).update(active=False)
    assert next_item(user) is None
    Study.objects.filter(pk=study.pk).update(active=True)
    AnnotatorStatus.objects.create(user=user, paused=True, reason="gold accuracy too low")
    with pytest.raises(AnnotatorPaused, match="gold accuracy"):
        next_item(user)


def test_a_study_can_be_chosen(world, make_user):
    first = two_arm_study(world, items=1, k=1, name="first")
    second = two_arm_study(world, items=1, k=1, name="second")
    user = make_user("u", "annotator")
    assert next_item(user, study=second).item.study == second
    assert next_item(user, study=first).item.study == first


def test_a_judgment_is_stored_once_mapped_through_the_order_shown(world, make_user):
    two_arm_study(world, items=2, k=1)
    user = make_user("u", "annotator")
    slot = next_item(user)
    submission = uuid.uuid4()
    picks = {"text_alignment": ("A", "B"), "consistency": ("B", "A"), "structure": None, "aesthetics": ("A", "B")}
    recorded = answer(user, slot, {"A": False, "B": True}, picks, submission_id=submission)
    assert recorded.created
    again = answer(user, slot, {"A": False, "B": True}, picks, submission_id=submission)
    assert not again.created and again.judgment.pk == recorded.judgment.pk
    judgment = StudyJudgment.objects.get()
    assert judgment.shown_order == slot.shown_order and judgment.slot_id == slot.pk and judgment.dwell_ms == 5000
    votes = {
        v.study_candidate.arm.label: v.usable for v in UsabilityVote.objects.select_related("study_candidate__arm")
    }
    assert votes == {"A": False, "B": True}
    stored = {p.dimension.slug: (p.best.arm.label, p.worst.arm.label) if not p.discarded else None
              for p in StudyPick.objects.select_related("dimension", "best__arm", "worst__arm")}
    assert stored == picks
    slot.refresh_from_db()
    slot.item.refresh_from_db()
    assert slot.state == "done" and slot.item.judgments_done == 1
    with pytest.raises(StudyJudgmentRejected, match="already judged"):
        answer(user, slot, {"A": False, "B": True}, picks)
    other = next_item(user)
    with pytest.raises(StudyJudgmentRejected, match="belongs to another judgment"):
        answer(user, other, {"A": False, "B": True}, picks, submission_id=submission)


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(usable=p["usable"][:1]), "whether it is usable"),
    (lambda p: p["usable"].__setitem__(1, None), "missing: 2"),
    (lambda p: p["usable"].__setitem__(0, "yes"), "true or false"),
    (lambda p: p.pop("usable"), "whether it is usable"),
    (lambda p: p["picks"].pop("structure"), "missing: Structure"),
    (lambda p: p["picks"].update(removal_quality={"discarded": True}), "removal_quality is not judged"),
    (lambda p: p["picks"].update(structure={"best": 1, "worst": 1}), "must be different candidates"),
    (lambda p: p["picks"].update(structure={"best": 0}), "pick both the best and the worst"),
    (lambda p: p["picks"].update(structure={"best": 0, "worst": 2}), r"one of this item.s candidates \(1-2\)"),
    (lambda p: p["picks"].update(structure={"best": True, "worst": 0}), "one of this item's candidates"),
    (lambda p: p["picks"].update(structure={"discarded": True, "best": 0}), "cannot also name"),
    (lambda p: p.update(picks=[]), "picks must map"),
    (lambda p: p.update(submission_id="nope"), "not a UUID"),
    (lambda p: p.update(dwell_ms=-1), "dwell_ms"),
])
def test_invalid_submissions_store_nothing(world, make_user, change, message):
    two_arm_study(world, items=1, k=1)
    user = make_user("u", "annotator")
    slot = next_item(user)
    payload = {"submission_id": str(uuid.uuid4()), "dwell_ms": 10, "usable": [True, False],
               "picks": {slug: {"best": 0, "worst": 1} for slug in FILL_DIMENSIONS}}
    change(payload)
    with pytest.raises(StudyJudgmentRejected, match=message):
        record_study_judgment(user, slot.pk, payload)
    assert not StudyJudgment.objects.exists() and not UsabilityVote.objects.exists() and not StudyPick.objects.exists()
    slot.refresh_from_db()
    assert slot.state == "leased" and slot.item.judgments_done == 0


def test_a_foreign_or_unknown_slot_is_refused(world, make_user):
    two_arm_study(world, items=1, k=2)
    alice, bob = make_user("alice", "annotator"), make_user("bob", "annotator")
    slot = next_item(alice)
    with pytest.raises(StudyJudgmentRejected, match="not assigned to you"):
        answer(bob, slot, {"A": True, "B": True}, every_dimension(slot))
    with pytest.raises(StudyJudgmentRejected, match="no such item"):
        record_study_judgment(alice, 999999, {"submission_id": str(uuid.uuid4()), "usable": [], "picks": {}})
    assert not StudyJudgment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_waits_on_its_original_gets_the_stored_judgment(make_user):
    assert connection.vendor == "postgresql"
    world = World()
    inputs = world.inputs(1)
    create_study("retried", [(world.batch("x", inputs), "X"), (world.batch("y", inputs), "Y")], 1)
    alice = make_user("alice", "annotator")
    slot = next_item(alice)
    payload = {"submission_id": str(uuid.uuid4()), "dwell_ms": 100, "usable": [True, False],
               "picks": {slug: {"best": 0, "worst": 1} for slug in FILL_DIMENSIONS}}
    original, retry = race_a_retry(record_study_judgment, alice, StudySlot, slot.pk, payload)
    assert original.created and not retry.created, (original, retry)
    assert retry.judgment.pk == original.judgment.pk == StudyJudgment.objects.get().pk
    assert UsabilityVote.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_many_annotators_at_once_on_postgresql(make_user):
    """Annotators in threads of their own, all starting at once: every item gets exactly k
    judgments, from k different people, and nobody judges an item twice."""
    import threading

    from django.db import connections

    assert connection.vendor == "postgresql"
    world = World()
    k, item_count = 3, 20
    inputs = world.inputs(item_count)
    study = create_study("crowd", [(world.batch("x", inputs), "X"), (world.batch("y", inputs), "Y"),
                                   (world.batch("z", inputs), "Z")], k)
    users = [make_user(f"annotator{i}", "annotator") for i in range(8)]
    errors, judged = [], {user.pk: [] for user in users}
    start = threading.Barrier(len(users))

    def work(user):
        try:
            start.wait()
            while (slot := next_item(user)) is not None:
                order = slot.shown_order
                payload = {"submission_id": str(uuid.uuid4()), "dwell_ms": 100, "usable": [True] * len(order),
                           "picks": {slug: {"best": 0, "worst": 2} for slug in FILL_DIMENSIONS}}
                record_study_judgment(user, slot.pk, payload)
                judged[user.pk].append(slot.item_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert all(len(items) == len(set(items)) for items in judged.values())
    assert sum(len(items) for items in judged.values()) == StudyJudgment.objects.count() == k * item_count
    for item in study.items.all():
        assert item.judgments_done == k == item.judgments.values("annotator").distinct().count()
    assert not StudySlot.objects.exclude(state="done").exists()
    assert UsabilityVote.objects.count() == 3 * k * item_count


# --- the report -------------------------------------------------------------------------------------

# Ten judgments on five image-fill items (two annotators x five items) and four on two object-removal
# items. Per judgment: usable (A, B) and, per dimension, the arm picked best ("-" = no clear
# difference); with two arms the other one is the worst.
FILL_PLAN = [
    # (A usable, B usable), text_alignment, consistency, structure, aesthetics -> overall for A vs B
    ((True, True), "A", "A", "A", "A"),     # good
    ((True, True), "A", "A", "B", "-"),     # good (2 won, 1 lost)
    ((False, False), "A", "B", "B", "-"),   # bad (1 won, 2 lost)
    ((True, False), "-", "-", "-", "-"),    # same
    ((True, True), "A", "B", "-", "-"),     # same (1 won, 1 lost)
    ((False, False), "B", "B", "B", "B"),   # bad
    ((True, False), "A", "A", "-", "A"),    # good
    ((True, True), "B", "-", "A", "A"),     # good (2 won, 1 lost)
    ((True, False), "A", "-", "-", "B"),    # same
    ((True, True), "A", "B", "A", "A"),     # good (3 won, 1 lost)
]
REMOVAL_PLAN = [((True, True), "A"), ((True, True), "B"), ((True, True), "B"), ((False, True), "-")]


def _picks(best_arms, dimensions):
    return {
        dim: None if best == "-" else (best, "B" if best == "A" else "A") for dim, best in zip(dimensions, best_arms)
    }


@pytest.fixture
def judged_study(world, make_user):
    fill, removal = world.inputs(5), world.inputs(2, "object_removal")
    study = create_study("report", [(world.batch("gen-a", fill + removal), "A"),
                                    (world.batch("gen-b", fill + removal), "B")], 2)
    items = {item.input_id: index for index, item in enumerate(study.items.order_by("input_id"))}
    inputs = fill + removal
    for u, user in enumerate([make_user("first", "annotator"), make_user("second", "annotator")]):
        while (slot := next_item(user)) is not None:
            index = items[slot.item.input_id]
            if index < 5:
                (usable_a, usable_b), *bests = FILL_PLAN[u * 5 + index]
                picks = _picks(bests, FILL_DIMENSIONS)
            else:
                (usable_a, usable_b), best = REMOVAL_PLAN[u * 2 + index - 5]
                picks = _picks([best], ["removal_quality"])
            assert slot.item.input_id == inputs[index].pk
            answer(user, slot, {"A": usable_a, "B": usable_b}, picks)
    assert StudyJudgment.objects.count() == 14
    return study


def approx(interval):
    return pytest.approx(interval, abs=1e-4)


def test_wilson_intervals_match_hand_computed_values():
    assert wilson_interval(8, 10) == approx((0.4902, 0.9433))
    assert wilson_interval(5, 10) == approx((0.2366, 0.7634))
    assert wilson_interval(0, 4) == approx((0.0, 0.4899))
    assert wilson_interval(4, 4) == approx((0.5101, 1.0))
    assert wilson_interval(0, 0) is None


def test_usability_rates_per_arm_and_task(judged_study):
    report = study_report(judged_study)
    rows = {row["task"]: {cell["arm"]: cell for cell in row["arms"]} for row in report["usability"]}
    assert list(rows) == ["image_fill", "object_removal", "all"]
    expected = {
        ("image_fill", "A"): (8, 10, (0.4902, 0.9433)), ("image_fill", "B"): (5, 10, (0.2366, 0.7634)),
        ("object_removal", "A"): (3, 4, (0.3006, 0.9544)), ("object_removal", "B"): (4, 4, (0.5101, 1.0)),
        ("all", "A"): (11, 14, None), ("all", "B"): (9, 14, (0.3876, 0.8366)),
    }
    for (task, arm), (usable, votes, interval) in expected.items():
        cell = rows[task][arm]
        assert (cell["usable"], cell["votes"]) == (usable, votes), (task, arm)
        assert cell["rate"] == pytest.approx(usable / votes)
        if interval:
            assert (cell["low"], cell["high"]) == approx(interval), (task, arm)
    assert report["study"] == {"id": judged_study.pk, "name": "report", "judgments_per_item": 2, "items": 7,
                               "items_complete": 7, "judgments": 14, "judgments_wanted": 14}
    assert [arm["generator"] for arm in report["arms"]] == ["gen-a", "gen-b"]


def gsb_table(report, a, b, task):
    pair = next(p for p in report["gsb"] if (p["a"], p["b"]) == (a, b))
    block = next(t for t in pair["tasks"] if t["task"] == task)
    return {row["dimension"]: row for row in block["rows"]}


def test_good_same_bad_per_task_dimension_and_overall(judged_study):
    report = study_report(judged_study)
    assert [(p["a"], p["b"]) for p in report["gsb"]] == [("A", "B"), ("B", "A")]
    fill = gsb_table(report, "A", "B", "image_fill")
    assert list(fill) == FILL_DIMENSIONS + ["overall"]
    counts = {dim: (row["good"], row["same"], row["bad"]) for dim, row in fill.items()}
    assert counts == {"text_alignment": (7, 1, 2), "consistency": (3, 3, 4), "structure": (3, 4, 3),
                      "aesthetics": (4, 4, 2), "overall": (5, 3, 2)}
    overall = fill["overall"]
    assert overall["total"] == 10 and overall["net"] == pytest.approx(0.3)
    assert (overall["good_share"], overall["good_low"], overall["good_high"]) == approx((0.5, 0.2366, 0.7634))
    assert (overall["same_low"], overall["same_high"]) == approx((0.1078, 0.6032))
    assert (overall["bad_low"], overall["bad_high"]) == approx((0.0567, 0.5098))
    ta = fill["text_alignment"]
    assert (ta["good_low"], ta["good_high"], ta["bad_low"], ta["bad_high"]) == approx((0.3968, 0.8922, 0.0567, 0.5098))
    assert ta["net"] == pytest.approx(0.5)

    # B against A is the mirror.
    mirror = gsb_table(report, "B", "A", "image_fill")
    assert {dim: (row["bad"], row["same"], row["good"]) for dim, row in mirror.items()} == counts
    assert mirror["overall"]["net"] == pytest.approx(-0.3)

    removal = gsb_table(report, "A", "B", "object_removal")
    assert {dim: (row["good"], row["same"], row["bad"]) for dim, row in removal.items()} == {
        "removal_quality": (1, 1, 2), "overall": (1, 1, 2)}
    everything = gsb_table(report, "A", "B", "all")
    assert (everything["overall"]["good"], everything["overall"]["same"], everything["overall"]["bad"]) == (6, 4, 4)
    assert everything["removal_quality"]["total"] == 4 and everything["aesthetics"]["total"] == 10


def four_arm_study(world, make_user):
    inputs = world.inputs(1)
    arms = [(world.batch(f"gen-{label.lower()}", inputs), label) for label in "ABCD"]
    study = create_study("four", arms, 1)
    user = make_user("u", "annotator")
    slot = next_item(user)
    answer(user, slot, {"A": True, "B": True, "C": False, "D": False},
           {"text_alignment": ("A", "D"), "consistency": ("C", "A"), "structure": None, "aesthetics": ("B", "C")})
    return study


def test_middle_against_middle_is_same_and_overall_counts_dimensions(world, make_user):
    report = study_report(four_arm_study(world, make_user))
    assert len(report["gsb"]) == 12  # every ordered pair of four arms

    def outcome(a, b):
        return {
            dim: (row["good"], row["same"], row["bad"]) for dim, row in gsb_table(report, a, b, "image_fill").items()
        }

    g, s, b = (1, 0, 0), (0, 1, 0), (0, 0, 1)
    # A best / D worst; C best / A worst; discarded; B best / C worst.
    assert outcome("A", "D") == {"text_alignment": g, "consistency": b, "structure": s, "aesthetics": s, "overall": s}
    assert outcome("B", "C") == {"text_alignment": s, "consistency": b, "structure": s, "aesthetics": g, "overall": s}
    assert outcome("B", "D") == {"text_alignment": g, "consistency": s, "structure": s, "aesthetics": g, "overall": g}
    assert outcome("C", "A") == {"text_alignment": b, "consistency": g, "structure": s, "aesthetics": b, "overall": b}
    assert outcome("D", "C") == {"text_alignment": b, "consistency": b, "structure": s, "aesthetics": g, "overall": b}
    usability = {cell["arm"]: cell["usable"] for cell in report["usability"][0]["arms"]}
    assert usability == {"A": 1, "B": 1, "C": 0, "D": 0}


# --- pairs for the leaderboard ----------------------------------------------------------------------


def test_study_outcomes_give_best_over_all_and_all_over_worst(world, make_user):
    four_arm_study(world, make_user)
    names = dict(Generator.objects.values_list("pk", "name"))
    rows = list(study_outcomes())
    item = StudyItem.objects.get()
    assert {row[2] for row in rows} == {item.pk}
    got = sorted((task, dim, names[w], names[l]) for task, dim, _, w, l in rows)
    expected = []
    for dim, best, worst in (("text_alignment", "a", "d"), ("consistency", "c", "a"), ("aesthetics", "b", "c")):
        others = [x for x in "abcd" if x not in (best, worst)]
        expected += [("image_fill", dim, f"gen-{best}", f"gen-{x}") for x in "abcd" if x != best]
        expected += [("image_fill", dim, f"gen-{x}", f"gen-{worst}") for x in others]
    assert got == sorted(expected) and len(rows) == 3 * (2 * 4 - 3)
    assert list(study_outcomes("object_removal")) == []
    assert len(list(study_outcomes(Task.objects.get(slug="image_fill")))) == 15


def test_study_outcomes_leave_out_a_generator_against_itself(world, make_user):
    inputs = world.inputs(2, "object_removal")
    study = create_study("same gen", [(world.batch("g1", inputs), "A"), (world.batch("g1", inputs), "B"),
                                      (world.batch("g2", inputs), "C")], 1)
    user = make_user("u", "annotator")
    answer(user, next_item(user), {"A": True, "B": True, "C": True}, {"removal_quality": ("A", "B")})
    answer(user, next_item(user), {"A": True, "B": True, "C": True}, {"removal_quality": ("C", "A")})
    names = dict(Generator.objects.values_list("pk", "name"))
    rows = sorted((names[w], names[l], item) for _, _, item, w, l in study_outcomes())
    first, second = study.items.order_by("pk")
    # Item 1: A (g1) best, B (g1) worst: g1 > g2 (A over C) and g2 > g1 (C over B); A over B is g1 > g1, left out.
    # Item 2: C (g2) best, A (g1) worst: g2 > g1 twice (over A and over B); B over A is g1 > g1, left out.
    assert rows == sorted([("g1", "g2", first.pk), ("g2", "g1", first.pk), ("g2", "g1", second.pk),
                           ("g2", "g1", second.pk)])


# --- the annotator's pages ------------------------------------------------------------------------

GENERATORS = ("Zephyr-Inpaint-7", "Quasar-Fill-2")
BATCH_NAMES = ("Batch Quokka", "Batch Wombat")
ARM_LABELS = ("ArmLabelOkapi", "ArmLabelNarwhal")
STUDY_NAME = "Zephyr against Quasar, spring"


def real_study(k: int = 1, inputs: int = 2) -> Study:
    """Two evaluation batches generated in-process with real pixels, and a study over them."""
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()
    items = import_inputs(synthetic_specs(inputs))
    arms = []
    for generator_name, batch_name, label in zip(GENERATORS, BATCH_NAMES, ARM_LABELS):
        generator = Generator.objects.create(name=generator_name, backend="cpu_baseline", settings={})
        batch = GenerationBatch.objects.create(name=batch_name, generator=generator, candidates_per_input=1,
                                               seed=11 if label == ARM_LABELS[0] else 12, for_annotation=False,
                                               progress_total=len(items), status=JobStatus.RUNNING)
        sets = [CandidateSet.objects.create(batch=batch, input=item) for item in items]
        for candidate_set in sets:
            generate_set(candidate_set.pk, worker="test")
        batch.refresh_from_db()
        assert batch.status == JobStatus.DONE and batch.progress_done == len(items)
        arms.append((batch, label))
    assert not AnnotationTask.objects.exists()
    return create_study(STUDY_NAME, arms, k)


def leaks():
    words = [*GENERATORS, *BATCH_NAMES, *ARM_LABELS, STUDY_NAME, "seed", "Zephyr", "Quasar"]
    for public_id in Candidate.objects.values_list("public_id", flat=True):
        words += [str(public_id), public_id.hex]
    return words


@pytest.mark.django_db
def test_the_study_page_is_blind_and_serves_candidates_by_screen_position(make_user):
    study = real_study()
    user = make_user("ann", "annotator")
    client = Client()
    client.force_login(user)
    response = client.get(f"/studies/{study.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert_no_leak(response_text(response), leaks())
    for candidate_id in StudyCandidate.objects.values_list("pk", flat=True):
        assert f"/{candidate_id}" not in html.replace(f"/studies/{study.pk}/", "")
    slot = StudySlot.objects.get(annotator=user, state="leased")
    assert f'data-slot="{slot.pk}"' in html and 'data-n="2"' in html
    assert html.count('class="ann-tile ann-candidate"') == 2 and "Usable" in html

    for position, candidate_id in enumerate(slot.shown_order):
        image = client.get(f"/studies/slots/{slot.pk}/candidates/{position}.img")
        assert image.status_code == 200
        assert_no_leak(response_text(image), leaks())
        stored = StudyCandidate.objects.get(pk=candidate_id).candidate.image.name
        with default_storage.open(stored, "rb") as handle:
            assert b"".join(image.streaming_content) == handle.read()
    assert client.get(f"/studies/slots/{slot.pk}/candidates/2.img").status_code == 404
    assert client.get(f"/studies/slots/{slot.pk}/source.img").status_code == 200
    assert client.get(f"/studies/slots/{slot.pk}/mask.img").status_code == 200
    assert client.get(f"/studies/slots/{slot.pk}/thumbnail.img").status_code == 404

    # Someone else's slot is not there at all.
    other = Client()
    other.force_login(make_user("other", "annotator"))
    assert other.get(f"/studies/slots/{slot.pk}/candidates/0.img").status_code == 404
    assert other.get(f"/studies/slots/{slot.pk}/source.img").status_code == 404


@pytest.mark.django_db
def test_posting_a_judgment_over_http_and_the_next_item(make_user):
    study = real_study(inputs=2)
    user = make_user("ann", "annotator")
    client = Client()
    client.force_login(user)
    client.get(f"/studies/{study.pk}/")
    slot = StudySlot.objects.get(annotator=user, state="leased")
    url = f"/studies/slots/{slot.pk}/judgment"
    payload = {"submission_id": str(uuid.uuid4()), "dwell_ms": 3000, "usable": [True, False],
               "picks": {slug: {"best": 0, "worst": 1} for slug in FILL_DIMENSIONS}}
    bad = client.post(url, json.dumps({**payload, "usable": [True]}), content_type="application/json")
    assert bad.status_code == 400 and "usable" in bad.json()["error"]
    assert client.post(url, json.dumps(payload), content_type="application/json").status_code == 201
    assert client.post(url, json.dumps(payload), content_type="application/json").status_code == 200
    assert StudyJudgment.objects.count() == 1
    # A form body carrying the JSON works too (a page without JavaScript).
    fragment = client.get(f"/studies/{study.pk}/item/?after={slot.pk}")
    assert fragment.status_code == 200
    assert_no_leak(response_text(fragment), leaks())
    second = StudySlot.objects.get(annotator=user, state="leased")
    assert second.item_id != slot.item_id and f'data-slot="{second.pk}"' in fragment.content.decode()
    form = client.post(f"/studies/slots/{second.pk}/judgment",
                       {"payload": json.dumps({**payload, "submission_id": str(uuid.uuid4())})})
    assert form.status_code == 201
    assert "Nothing left for you" in client.get(f"/studies/{study.pk}/item/").content.decode()


@pytest.mark.django_db
def test_only_annotators_reach_the_study_pages(make_user):
    study = real_study()
    anonymous = Client()
    assert anonymous.get(f"/studies/{study.pk}/").status_code == 302
    assert anonymous.post("/studies/slots/1/judgment", "{}", content_type="application/json").status_code == 401
    engineer = Client()
    engineer.force_login(make_user("ml", "ml_engineer"))
    assert engineer.get(f"/studies/{study.pk}/").status_code == 403
    assert engineer.get("/studies/").status_code == 403
    assert engineer.post("/studies/slots/1/judgment", "{}", content_type="application/json").status_code == 403
    annotator = Client()
    annotator.force_login(make_user("ann", "annotator"))
    assert annotator.get("/studies/999999/").status_code == 404


@pytest.mark.django_db
def test_the_annotation_page_lists_studies_with_work_left(make_user):
    study = real_study(k=1, inputs=2)
    user = make_user("ann", "annotator")
    client = Client()
    client.force_login(user)
    assert 'hx-get="/studies/"' in client.get("/annotate/").content.decode()
    listing = client.get("/studies/")
    text = listing.content.decode()
    assert f'href="/studies/{study.pk}/"' in text and "2 items left" in text
    assert_no_leak(response_text(listing), leaks())
    # Judged by this annotator and by someone else: nothing left to list.
    for person in (user, make_user("other", "annotator")):
        slot = next_item(person)
        answer(person, slot, {ARM_LABELS[0]: True, ARM_LABELS[1]: True}, every_dimension(slot, *ARM_LABELS))
    assert "studies" not in client.get("/studies/").content.decode().lower()


# --- the admin --------------------------------------------------------------------------------------


def add_form(**overrides):
    data = {"name": "admin study", "description": "", "judgments_per_item": 2}
    data.update(overrides)
    return data


def test_admin_creates_a_study_and_reads_its_report(world, make_user, client):
    inputs = world.inputs(3)
    a, b = world.batch("gen-a", inputs), world.batch("gen-b", inputs)
    client.force_login(make_user("boss", "admin"))
    page = client.get("/admin/evaluation/study/add/")
    assert page.status_code == 200 and "gen-a" in page.content.decode()
    refused = client.post("/admin/evaluation/study/add/", add_form(batch_0=a.pk, label_0="base"))
    assert refused.status_code == 200 and "at least two arms" in refused.content.decode()
    assert not Study.objects.exists()
    response = client.post("/admin/evaluation/study/add/", add_form(batch_0=a.pk, label_0="base", batch_1=b.pk))
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/evaluation/study/{study.pk}/change/"
    assert [(arm.label, arm.batch_id) for arm in study.arms.all()] == [("base", a.pk), ("B", b.pk)]
    assert study.items.count() == 3 and StudySlot.objects.count() == 6

    change = client.get(response["Location"]).content.decode()
    assert f"/admin/evaluation/study/{study.pk}/report/" in change and "0 of 6 judgments" in change
    annotator = make_user("ann", "annotator")
    slot = next_item(annotator)
    answer(annotator, slot, {"base": True, "B": False}, every_dimension(slot, "base", "B"))
    report = client.get(f"/admin/evaluation/study/{study.pk}/report/")
    assert report.status_code == 200
    text = report.content.decode()
    assert 'id="usability-table"' in text and "1/1" in text and "0/1" in text
    assert 'data-a="base" data-b="B"' in text and "+1.00" in text
    listing = client.get("/admin/evaluation/study/").content.decode()
    assert "base vs B" in listing

    # The change form edits the name, the description and whether the study is handed out.
    page = client.get(response["Location"])
    data = {"name": "renamed", "description": "held-out fill inputs"}  # "active" unticked
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{key}": value for key, value in formset.management_form.initial.items()})
        for form in formset.forms:
            data.update({f"{form.prefix}-id": form.instance.pk, f"{form.prefix}-study": study.pk})
    saved = client.post(response["Location"], data)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    study.refresh_from_db()
    assert (study.name, study.active, study.judgments_per_item, study.arms.count()) == ("renamed", False, 2, 2)
    assert next_item(make_user("late", "annotator")) is None


def test_ml_engineers_view_studies_but_do_not_create_them(world, make_user, client):
    study = two_arm_study(world, items=1, k=1)
    client.force_login(make_user("ml", "ml_engineer"))
    assert client.get("/admin/evaluation/study/").status_code == 200
    assert client.get(f"/admin/evaluation/study/{study.pk}/report/").status_code == 200
    assert client.get("/admin/evaluation/study/add/").status_code == 403
    client.force_login(make_user("ann", "annotator"))
    assert client.get(f"/admin/evaluation/study/{study.pk}/report/").status_code == 302  # to the admin login


# --- the API ----------------------------------------------------------------------------------------


def api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_the_api_creates_lists_and_reports(world, make_user):
    inputs = world.inputs(2)
    a, b = world.batch("gen-a", inputs), world.batch("gen-b", inputs)
    admin = api_client(make_user("boss", "admin"))
    bad = admin.post("/api/studies/", {"name": "api", "arms": [{"batch": a.pk, "label": "A"}]}, format="json")
    assert bad.status_code == 400 and "at least two arms" in str(bad.json())
    created = admin.post("/api/studies/", {"name": "api", "judgments_per_item": 1,
                                           "arms": [{"batch": a.pk, "label": "A"}, {"batch": b.pk, "label": "B"}]},
                         format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (
        body["items"] == 2
        and body["judgments"] == 0
        and [arm["generator"] for arm in body["arms"]] == ["gen-a", "gen-b"]
    )
    study_id = body["id"]
    annotator = make_user("ann", "annotator")
    slot = next_item(annotator)
    answer(annotator, slot, {"A": True, "B": False}, every_dimension(slot, "B", "A"))

    engineer = api_client(make_user("ml", "ml_engineer"))
    assert engineer.get("/api/studies/").json()["results"][0]["judgments"] == 1
    report = engineer.get(f"/api/studies/{study_id}/report/")
    assert report.status_code == 200
    data = report.json()
    overall = gsb_table(data, "A", "B", "image_fill")["overall"]
    assert (overall["good"], overall["same"], overall["bad"], overall["net"]) == (0, 0, 1, -1.0)
    assert data["usability"][0]["arms"][0]["usable"] == 1
    assert engineer.post("/api/studies/", {"name": "x", "arms": []}, format="json").status_code == 403
    as_annotator = api_client(annotator)
    assert as_annotator.get("/api/studies/").status_code == 403
    assert as_annotator.get(f"/api/studies/{study_id}/report/").status_code == 403
