"""Recording a judgment: validated against the slot the annotator holds, stored once.

Payload (what the page posts): {"submission_id": uuid, "dwell_ms": int,
"picks": {dimension_slug: {"best": position, "worst": position} | {"discarded": true}}}
with positions counted on screen from 0 (leftmost); the server maps them to candidates through
the order it showed, so candidate identities never reach the page.
"""
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import DimensionPick, Judgment, Skip, Slot, SlotKind, SlotState


class JudgmentRejected(Exception):
    """The submission is invalid; nothing was stored. The message says what is wrong."""


@dataclass
class Recorded:
    judgment: Judgment
    created: bool  # False: the same submission was already stored (a retry or a double click)


def _parse(payload: dict) -> tuple[uuid.UUID, int, dict]:
    if not isinstance(payload, dict):
        raise JudgmentRejected("the submission must be a JSON object")
    try:
        submission_id = uuid.UUID(str(payload.get("submission_id")))
    except ValueError:
        raise JudgmentRejected("submission_id is missing or not a UUID") from None
    dwell = payload.get("dwell_ms", 0)
    if not isinstance(dwell, int) or isinstance(dwell, bool) or dwell < 0:
        raise JudgmentRejected("dwell_ms must be a whole number of milliseconds, 0 or more")
    picks = payload.get("picks")
    if not isinstance(picks, dict):
        raise JudgmentRejected("picks must map each dimension to its best and worst (or discarded)")
    return submission_id, dwell, picks


def record_judgment(user, slot_id: int, payload: dict) -> Recorded:
    """Store the judgment for a slot leased to `user`, or raise JudgmentRejected storing nothing."""
    submission_id, dwell_ms, picks = _parse(payload)
    existing = Judgment.objects.filter(submission_id=submission_id).first()
    if existing is not None:
        if existing.annotator_id != user.pk or existing.slot_id != slot_id:
            raise JudgmentRejected("this submission id belongs to another judgment")
        return Recorded(existing, created=False)

    with transaction.atomic():
        slot = (Slot.objects.select_for_update(of=("self",))
                .select_related("task__candidate_set__input__task", "task__candidate_set__batch")
                .filter(pk=slot_id).first())
        if slot is None:
            raise JudgmentRejected("no such task")
        if slot.annotator_id != user.pk:
            raise JudgmentRejected(
                "this task is not assigned to you (its lease may have run out and gone to someone else)"
            )
        if slot.state == SlotState.DONE:
            raise JudgmentRejected("you have already judged this task")
        candidate_set = slot.task.candidate_set
        candidates = {c.index: c for c in candidate_set.candidates.all()}
        order = slot.shown_order
        dimensions = {d.slug: d for d in candidate_set.input.judged_dimensions()}

        unknown = sorted(set(picks) - set(dimensions))
        if unknown:
            raise JudgmentRejected(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not judged for this task"
            )
        missing = [slug for slug in dimensions if slug not in picks]
        if missing:
            names = ", ".join(dimensions[slug].name for slug in missing)
            raise JudgmentRejected(f"every dimension needs an answer; missing: {names}")
        rows = []
        for slug, pick in picks.items():
            dimension = dimensions[slug]
            if not isinstance(pick, dict):
                raise JudgmentRejected(f"{dimension.name}: give best and worst, or discarded")
            if pick.get("discarded") is True:
                if pick.get("best") is not None or pick.get("worst") is not None:
                    raise JudgmentRejected(f"{dimension.name}: discarded cannot also name a best or a worst")
                rows.append(DimensionPick(dimension=dimension, discarded=True))
                continue
            best, worst = pick.get("best"), pick.get("worst")
            if best is None or worst is None:
                raise JudgmentRejected(
                    f"{dimension.name}: pick both the best and the worst, or mark no clear difference"
                )
            for label, position in (("best", best), ("worst", worst)):
                if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(order):
                    raise JudgmentRejected(
                        f"{dimension.name}: {label} must be one of this task's candidates (1-{len(order)})"
                    )
            if best == worst:
                raise JudgmentRejected(f"{dimension.name}: the best and the worst must be different candidates")
            rows.append(
                DimensionPick(
                    dimension=dimension,
                    best=candidates[order[best]],
                    worst=candidates[order[worst]],
                    best_position=best,
                    worst_position=worst,
                )
            )

        try:
            with transaction.atomic():
                judgment = Judgment.objects.create(
                    slot=slot, task=slot.task, annotator=user, kind=slot.kind, shown_order=order,
                    submission_id=submission_id, dwell_ms=dwell_ms, assigned_at=slot.assigned_at or timezone.now(),
                )
        except IntegrityError:
            # The same submission raced in through another request and won.
            raise JudgmentRejected("you have already judged this task") from None
        for row in rows:
            row.judgment = judgment
        DimensionPick.objects.bulk_create(rows)
        Slot.objects.filter(pk=slot.pk).update(state=SlotState.DONE, leased_until=None)
        if slot.kind == SlotKind.REGULAR:
            type(slot.task).objects.filter(pk=slot.task_id).update(judgments_done=F("judgments_done") + 1)
        if slot.kind == SlotKind.GOLD:
            # Gold answers move the annotator's standing (and may pause them), once stored.
            from .quality import update_standing

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
            Slot.objects.filter(pk=slot.pk).update(state=SlotState.OPEN, annotator=None, leased_until=None,
                                                   assigned_at=None, shown_order=[])
        else:
            slot.delete()
    return True
