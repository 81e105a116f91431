"""Handing out annotation tasks: fair, leased, and correct under concurrency.

`next_slot` gives an annotator the next slot to judge, through the queue (annotation.queue): their
own lease first, else a gold or repeat slot mixed in, else the first free regular slot, taken so
that concurrent annotators never get the same one. A lease that runs out puts the slot back in the
pool.
"""
import random
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import queue
from .models import AnnotationTask, QualityControlSettings, Skip, Slot, SlotKind, SlotState
from .queue import AnnotatorPaused

__all__ = ["AnnotatorPaused", "create_annotation_task", "next_slot", "pool", "shown_order"]


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
    return queue.shuffled(range(n), queue.order_seed(annotator_id, task_id, kind))


def pool(now):
    """Regular slots free to hand out: open, or leased with the lease run out; never of a gold
    task. Reads the partial index "slot_pool" (kind regular, state open or leased); the gold
    exclusion is a subquery (the "task_gold" index), not a join that walks every task."""
    gold = AnnotationTask.objects.filter(is_gold=True).values("pk")
    return queue.free(Slot.objects.filter(kind=SlotKind.REGULAR), now).exclude(task__in=gold)


def _lease(slot: Slot, user, now, settings: QualityControlSettings) -> Slot:
    n = slot.task.candidate_set.batch.candidates_per_input
    return queue.lease(slot, user, now, settings.lease_minutes, shown_order(user.pk, slot.task_id, slot.kind, n))


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
    queue.ensure_not_paused(user)
    settings = QualityControlSettings.current()
    return queue.hand_out(user, lambda: _take(user, exclude, settings))


def _take(user, exclude: int | None, settings: QualityControlSettings) -> Slot | None:
    """next_slot's work, inside its transaction."""
    now = timezone.now()
    # Everything the task fragment shows comes with the slot (annotation.views reads no more).
    with_batch = Slot.objects.select_related("task__candidate_set__batch", "task__candidate_set__input__task")
    mine = with_batch.filter(annotator=user, state=SlotState.LEASED, leased_until__gt=now).exclude(pk=exclude)
    current = queue.resume(mine, now, settings.lease_minutes)
    if current is not None:
        return current
    kind = _mix_in(user, settings)
    if kind is not None:
        special = _special_slot(user, kind, settings)
        if special is not None:
            return _lease(with_batch.get(pk=special.pk), user, now, settings)
    # NOT IN over the annotator's own tasks: PostgreSQL hashes them from index-only scans,
    # where a correlated NOT EXISTS turned into a merge over the whole index.
    held = Slot.objects.filter(annotator=user).values("task")
    skipped = Skip.objects.filter(annotator=user).values("task")
    slot_id = queue.take(pool(now).exclude(task__in=held).exclude(task__in=skipped).order_by("task_id", "pk"))
    if slot_id is None:
        return None
    return _lease(with_batch.get(pk=slot_id), user, now, settings)
