"""Recording a judgment: validated against the slot the annotator holds, stored once.

Payload (what the page posts): {"submission_id": uuid, "dwell_ms": int, "picks": {...}}, read by
the pick parser (annotation.picks); the server maps screen positions to candidates through the
order it showed, so candidate identities never reach the page.
"""
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import DimensionPick, Judgment, Skip, Slot, SlotKind, SlotState
from .picks import JudgmentRejected, check_held, parse_envelope, parse_picks, stored_submission
from .quality import update_standing

__all__ = ["JudgmentRejected", "Recorded", "record_judgment", "skip"]


@dataclass
class Recorded:
    judgment: Judgment
    created: bool  # False: the same submission was already stored (a retry or a double click)


def record_judgment(user, slot_id: int, payload: dict) -> Recorded:
    """Store the judgment for a slot leased to `user`, or raise JudgmentRejected storing nothing."""
    submission_id, dwell_ms = parse_envelope(payload)
    # A retry is recognised under the slot's lock (its slot is done, or the insert meets the stored
    # submission): no lookup before it, one query less on every submission.
    with transaction.atomic():
        slot = (Slot.objects.select_for_update(of=("self",))
                .select_related("task__candidate_set__input__task", "task__candidate_set__batch")
                .filter(pk=slot_id).first())
        if slot is not None and slot.state == SlotState.DONE:
            # A retry that waited on the slot's lock while its original was being stored.
            existing = stored_submission(Judgment.objects, submission_id, user, slot_id)
            if existing is not None:
                return Recorded(existing, created=False)
        check_held(slot, user, "task")
        candidate_set = slot.task.candidate_set
        candidates = {c.index: c for c in candidate_set.candidates.all()}
        order = slot.shown_order
        parsed = parse_picks(payload.get("picks"), candidate_set.input.judged_dimensions(), order, "task")
        rows = [
            DimensionPick(dimension=pick.dimension, discarded=True)
            if pick.discarded
            else DimensionPick(
                dimension=pick.dimension,
                best=candidates[pick.best],
                worst=candidates[pick.worst],
                best_position=pick.best_position,
                worst_position=pick.worst_position,
            )
            for pick in parsed
        ]

        try:
            with transaction.atomic():
                judgment = Judgment.objects.create(
                    slot=slot,
                    task=slot.task,
                    annotator=user,
                    kind=slot.kind,
                    shown_order=order,
                    submission_id=submission_id,
                    dwell_ms=dwell_ms,
                    assigned_at=slot.assigned_at or timezone.now(),
                )
        except IntegrityError:
            # Another request got in first: the same submission (its success is this one's) or
            # another judgment of this annotator on this slot.
            existing = stored_submission(Judgment.objects, submission_id, user, slot_id)
            if existing is not None:
                return Recorded(existing, created=False)
            raise JudgmentRejected("you have already judged this task") from None
        for row in rows:
            row.judgment = judgment
        DimensionPick.objects.bulk_create(rows)
        Slot.objects.filter(pk=slot.pk).update(state=SlotState.DONE, leased_until=None)
        if slot.kind == SlotKind.REGULAR:
            type(slot.task).objects.filter(pk=slot.task_id).update(judgments_done=F("judgments_done") + 1)
        if slot.kind == SlotKind.GOLD:
            # Gold answers move the annotator's standing (and may pause them), once stored.
            transaction.on_commit(lambda: update_standing(user))
    return Recorded(judgment, created=True)


def skip(user, slot_id: int) -> bool:
    """Give a leased slot back (to the pool, or drop a gold or repeat one); the task is not offered
    to this annotator again."""
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .filter(pk=slot_id, annotator=user, state=SlotState.LEASED)
            .first()
        )
        if slot is None:
            return False
        Skip.objects.get_or_create(annotator=user, task_id=slot.task_id)
        if slot.kind == SlotKind.REGULAR:
            Slot.objects.filter(pk=slot.pk).update(
                state=SlotState.OPEN, annotator=None, leased_until=None, assigned_at=None, shown_order=[]
            )
        else:
            slot.delete()
    return True
