"""The annotator's workspace: the page, the task fragment it swaps in, the pixels by screen
position, and the endpoints the page posts judgments and skips to.

What reaches the browser is deliberately thin: a slot id, screen positions 1..N and the dimensions
to judge. Candidate ids, generators, settings, batches, the slot's kind (gold, repeat) and other
annotators' answers never do; the server maps screen positions to candidates through the slot's
`shown_order` (see judging.record_judgment). An annotator only reaches slots leased to them or
judged by them; anything else is a 404, so slot ids reveal nothing either. What the study pages
share with these lives in judging_views.
"""
from django.core.cache import cache
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from generation.models import Candidate

from .assignment import AnnotatorPaused, next_slot, pool
from .judging import record_judgment, skip
from .judging_views import (
    after_slot,
    annotator_json,
    annotator_page,
    candidates_context,
    judgment_response,
    slot_image_views,
)
from .models import Judgment, Slot, SlotState

POOL_COUNT_KEY, POOL_COUNT_SECONDS = "annotation:open-in-pool", 15


def _done_today(user) -> int:
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Judgment.objects.filter(annotator=user, submitted_at__gte=midnight).count()


def _open_in_pool() -> int:
    """Regular judgments still wanted: free slots and slots whose lease ran out. Shared by every
    annotator and only a guide, so counted at most every POOL_COUNT_SECONDS (per process)."""
    count = cache.get(POOL_COUNT_KEY)
    if count is None:
        count = pool(timezone.now()).count()
        cache.set(POOL_COUNT_KEY, count, POOL_COUNT_SECONDS)
    return count


def _task_context(user, after: int | None) -> dict:
    """What the task fragment shows: the next slot for `user`, or why there is none."""
    try:
        slot = next_slot(user, exclude=after)
    except AnnotatorPaused as exc:
        return {"state": "paused", "reason": str(exc)}
    if slot is None:
        return {"state": "empty", "open_in_pool": _open_in_pool()}
    # next_slot selected the slot's task, set, input and input task with it.
    return {
        "state": "task",
        **candidates_context(slot, slot.task.candidate_set.input),
        "open_in_pool": _open_in_pool(),
    }


@require_GET
@annotator_page
def workspace(request):
    """The annotator's page, with the current task already in it (no extra round trip)."""
    context = _task_context(request.user, after=None)
    context["done_today"] = _done_today(request.user)
    return render(request, "annotation/annotate_home.html", context)


@require_GET
@annotator_page
def task_fragment(request):
    """The next task as an HTML fragment; `after` names the slot on screen, so the page can fetch
    the one after it while the annotator works."""
    return render(request, "annotation/_annotate_task.html", _task_context(request.user, after=after_slot(request)))


def _shown_candidate(slot: Slot, index: int) -> Candidate | None:
    return Candidate.objects.filter(candidate_set_id=slot.task.candidate_set_id, index=index).only("image").first()


input_image, candidate_image = slot_image_views(
    Slot.objects.select_related("task__candidate_set__input"), [SlotState.LEASED, SlotState.DONE], "task",
    input_of=lambda slot: slot.task.candidate_set.input, shown_candidate=_shown_candidate,
)


@require_POST
@annotator_json
def judgment(request, slot_id: int):
    """Body: the payload of judging.record_judgment; answered as judging_views.judgment_response says."""
    return judgment_response(record_judgment, request.user, slot_id, request.body)


@require_POST
@annotator_json
def skip_slot(request, slot_id: int):
    if not skip(request.user, slot_id):
        return JsonResponse(
            {"error": "this task is not leased to you (already judged, skipped or expired)"}, status=400
        )
    return JsonResponse({"ok": True})
