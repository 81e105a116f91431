"""Handing out annotation tasks: fair, leased, and correct under concurrency.

`next_slot` gives an annotator the next slot to judge. Regular slots are taken with
SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL), so concurrent annotators never get the same one
and none waits on another; SQLite has no row locks, and its IMMEDIATE transactions (settings)
serialise the same code. A lease that runs out puts the slot back in the pool.
"""
import hashlib
import random
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .models import AnnotationTask, AnnotatorStatus, QualityControlSettings, Skip, Slot, SlotKind, SlotState


class AnnotatorPaused(Exception):
    """The annotator may not take tasks; the message says why."""


def create_annotation_task(candidate_set) -> AnnotationTask:
    """A finished candidate set becomes a task with k open regular slots (idempotent)."""
    with transaction.atomic():
        task, created = AnnotationTask.objects.get_or_create(
            candidate_set=candidate_set, defaults={"required_judgments": candidate_set.batch.annotation_overlap}
        )
        if created:
            Slot.objects.bulk_create([Slot(task=task) for _ in range(task.required_judgments)])
    return task


def shown_order(annotator_id: int, task_id: int, kind: str, n: int) -> list[int]:
    """The candidates' left-to-right order for this annotator and task: fixed, but different per
    annotator, and different again when the task comes back as a repeat."""
    seed = int.from_bytes(hashlib.sha256(f"{annotator_id}:{task_id}:{kind}".encode()).digest()[:8], "big")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def pool(now):
    """Regular slots free to hand out: open, or leased with the lease run out; never of a gold
    task. Reads the partial index "slot_pool" (kind regular, state open or leased); the gold
    exclusion is a subquery (the "task_gold" index), not a join that walks every task."""
    gold = AnnotationTask.objects.filter(is_gold=True).values("pk")
    return (Slot.objects.filter(kind=SlotKind.REGULAR, state__in=[SlotState.OPEN, SlotState.LEASED])
            .filter(Q(state=SlotState.OPEN) | Q(leased_until__lte=now))
            .exclude(task__in=gold))


def _lease(slot: Slot, user, settings: QualityControlSettings) -> Slot:
    now = timezone.now()
    slot.annotator = user
    slot.state = SlotState.LEASED
    slot.assigned_at = now
    slot.leased_until = now + timedelta(minutes=settings.lease_minutes)
    n = slot.task.candidate_set.batch.candidates_per_input
    slot.shown_order = shown_order(user.pk, slot.task_id, slot.kind, n)
    slot.save(update_fields=["annotator", "state", "assigned_at", "leased_until", "shown_order"])
    return slot


def _locking(queryset):
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


def _mix_in(user, settings: QualityControlSettings) -> str | None:
    """Gold or repeat, at the configured rates, decided per hand-out from the annotator's count."""
    roll = random.random()
    if roll < settings.gold_rate:
        return SlotKind.GOLD
    if roll < settings.gold_rate + settings.repeat_share:
        return SlotKind.REPEAT
    return None


def _special_slot(user, kind: str, settings) -> Slot | None:
    """A gold task the annotator has not seen, or a finished task of theirs to repeat."""
    seen = Slot.objects.filter(task=OuterRef("pk"), annotator=user, kind=kind)
    skipped = Skip.objects.filter(task=OuterRef("pk"), annotator=user)
    tasks = AnnotationTask.objects.filter(~Exists(seen), ~Exists(skipped))
    if kind == SlotKind.GOLD:
        tasks = tasks.filter(is_gold=True)
    else:
        # Only tasks judged a while ago: a repeat measures memory-free consistency.
        judged_before = timezone.now() - timedelta(minutes=settings.repeat_after_minutes)
        done_by_me = Slot.objects.filter(task=OuterRef("pk"), annotator=user, kind=SlotKind.REGULAR,
                                         state=SlotState.DONE, judgment__submitted_at__lte=judged_before)
        tasks = tasks.filter(Exists(done_by_me), is_gold=False)
    task = tasks.order_by("pk").first()
    if task is None:
        return None
    slot, _ = Slot.objects.get_or_create(task=task, annotator=user, kind=kind, defaults={"state": SlotState.OPEN})
    return slot


def next_slot(user, exclude: int | None = None) -> Slot | None:
    """The slot this annotator should judge now, leased to them; None when nothing is left.

    An unfinished lease of theirs comes first, oldest first, with its lease renewed (a reload
    resumes it); `exclude` names the slot the page is showing, so the page can fetch the one after
    it while the annotator works. A judgment still in flight leaves its slot leased: fetch the next
    task after the judgment's answer, or it comes back.
    """
    status = AnnotatorStatus.objects.filter(user=user, paused=True).first()
    if status is not None:
        raise AnnotatorPaused(status.reason or "your account is paused; ask an admin")
    settings = QualityControlSettings.current()
    now = timezone.now()
    with transaction.atomic():
        mine = (
            Slot.objects.select_related("task__candidate_set__batch")
            .filter(annotator=user, state=SlotState.LEASED, leased_until__gt=now)
            .exclude(pk=exclude)
            .order_by("assigned_at")
        )
        current = mine.first()
        if current is not None:
            # The annotator is looking at it again: give them the full lease time from now.
            current.leased_until = now + timedelta(minutes=settings.lease_minutes)
            current.save(update_fields=["leased_until"])
            return current
        kind = _mix_in(user, settings)
        if kind is not None:
            special = _special_slot(user, kind, settings)
            if special is not None:
                return _lease(
                    Slot.objects.select_related("task__candidate_set__batch").get(pk=special.pk), user, settings
                )
        # NOT IN over the annotator's own tasks: PostgreSQL hashes them from index-only scans,
        # where a correlated NOT EXISTS turned into a merge over the whole index.
        mine = Slot.objects.filter(annotator=user).values("task")
        skipped = Skip.objects.filter(annotator=user).values("task")
        free = (pool(now).exclude(task__in=mine).exclude(task__in=skipped)
                .order_by("task_id", "pk").values_list("pk", flat=True))
        # Lock the slot row alone (no joins), then read what the page needs.
        slot_id = _locking(free).first()
        if slot_id is None:
            return None
        slot = Slot.objects.select_related("task__candidate_set__batch").get(pk=slot_id)
        return _lease(slot, user, settings)
