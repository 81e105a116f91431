"""Hand-made judgments for export tests: picks given by candidate index, written straight to the
database (the judging rules are tested elsewhere; here the rows must be exactly what we say)."""
import uuid
from datetime import timedelta

from django.utils import timezone

from annotation.models import DimensionPick, Judgment, Slot, SlotKind, SlotState


def judge(task, user, picks: dict, kind: str = SlotKind.REGULAR, submitted_at=None) -> Judgment:
    """picks: {dimension slug: (best index, worst index) or None for discarded}."""
    candidates = {c.index: c for c in task.candidate_set.candidates.all()}
    order = sorted(candidates)
    slot = Slot.objects.create(task=task, kind=kind, state=SlotState.DONE, annotator=user,
                               assigned_at=timezone.now() - timedelta(seconds=30), shown_order=order)
    judgment = Judgment.objects.create(slot=slot, task=task, annotator=user, kind=kind, shown_order=order,
                                       submission_id=uuid.uuid4(), dwell_ms=9000, assigned_at=slot.assigned_at)
    if submitted_at is not None:
        Judgment.objects.filter(pk=judgment.pk).update(submitted_at=submitted_at)
    dimensions = {d.slug: d for d in task.candidate_set.input.judged_dimensions()}
    for slug, pick in picks.items():
        if pick is None:
            DimensionPick.objects.create(judgment=judgment, dimension=dimensions[slug], discarded=True)
        else:
            best, worst = pick
            DimensionPick.objects.create(judgment=judgment, dimension=dimensions[slug], best=candidates[best],
                                         worst=candidates[worst], best_position=order.index(best),
                                         worst_position=order.index(worst))
    return judgment
