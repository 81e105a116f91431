"""The annotator's workspace: the page, the task fragment it swaps in, the pixels by screen
position, and the endpoints the page posts judgments and skips to.

What reaches the browser is deliberately thin: a slot id, screen positions 1..N and the dimensions
to judge. Candidate ids, generators, settings, batches, the slot's kind (gold, repeat) and other
annotators' answers never do; the server maps screen positions to candidates through the slot's
`shown_order` (see judging.record_judgment). An annotator only reaches slots leased to them or
judged by them; anything else is a 404, so slot ids reveal nothing either.
"""
import json
from functools import wraps

from django.contrib.auth.decorators import login_required, permission_required
from django.core.cache import cache
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from generation.models import Candidate
from onereward.files import stored_file_response

from .assignment import AnnotatorPaused, next_slot, pool
from .judging import JudgmentRejected, record_judgment, skip
from .models import Judgment, Slot, SlotState

PERMISSION = "annotation.annotate"
INPUT_FILES = {"source": "image/png", "mask": "image/png"}
# Pixels behind a (slot, position) never change: the order is fixed when the slot is leased.
IMAGE_MAX_AGE = 6 * 3600


def annotator_page(view):
    """Signed in (else the login page) and allowed to annotate (else 403)."""
    return login_required(permission_required(PERMISSION, raise_exception=True)(view))


def annotator_json(view):
    """For the page's background requests: answer in JSON, never with a redirect to the login
    page, which fetch() would follow and mistake for success."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": "you are signed out; sign in again (in another tab) and resubmit"}, status=401
            )
        if not request.user.has_perm(PERMISSION):
            return JsonResponse({"error": "your account may not annotate"}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


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
    slot = Slot.objects.select_related("task__candidate_set__input__task").get(pk=slot.pk)
    item = slot.task.candidate_set.input
    lease_left = (slot.leased_until - timezone.now()).total_seconds() if slot.leased_until else 0
    return {
        "state": "task",
        "slot": slot,
        "input": item,
        "task": item.task,
        "dimensions": item.judged_dimensions(),
        "positions": [(position, position + 1) for position in range(len(slot.shown_order))],
        "lease_seconds_left": max(0, int(lease_left)),
        "open_in_pool": _open_in_pool(),
    }


def _after(request) -> int | None:
    value = request.GET.get("after", "")
    return int(value) if value.isdigit() else None


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
    return render(request, "annotation/_annotate_task.html", _task_context(request.user, after=_after(request)))


def _own_slot(request, slot_id: int) -> Slot:
    slot = (Slot.objects.select_related("task__candidate_set__input")
            .filter(pk=slot_id, annotator=request.user, state__in=[SlotState.LEASED, SlotState.DONE]).first())
    if slot is None:
        raise Http404("no such task")
    return slot


def _image(name: str, content_type: str, filename: str):
    response = stored_file_response(name, content_type, max_age=IMAGE_MAX_AGE)
    # The stored name carries the candidate's public id; the browser gets a neutral one.
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


@require_GET
@annotator_page
def input_image(request, slot_id: int, kind: str):
    if kind not in INPUT_FILES:
        raise Http404("unknown image")
    item = _own_slot(request, slot_id).task.candidate_set.input
    return _image(getattr(item, kind).name, INPUT_FILES[kind], f"{kind}.png")


@require_GET
@annotator_page
def candidate_image(request, slot_id: int, position: int):
    slot = _own_slot(request, slot_id)
    if not 0 <= position < len(slot.shown_order):
        raise Http404("no such candidate")
    candidate = Candidate.objects.filter(candidate_set_id=slot.task.candidate_set_id,
                                         index=slot.shown_order[position]).only("image").first()
    if candidate is None:
        raise Http404("no such candidate")
    return _image(candidate.image.name, "image/png", f"candidate-{position + 1}.png")


@require_POST
@annotator_json
def judgment(request, slot_id: int):
    """Body: the payload of judging.record_judgment. 201 stored, 200 a retry of a stored
    submission, 400 with the reason and nothing stored."""
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the submission must be a JSON object"}, status=400)
    try:
        recorded = record_judgment(request.user, slot_id, payload)
    except JudgmentRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"ok": True}, status=201 if recorded.created else 200)


@require_POST
@annotator_json
def skip_slot(request, slot_id: int):
    if not skip(request.user, slot_id):
        return JsonResponse(
            {"error": "this task is not leased to you (already judged, skipped or expired)"}, status=400
        )
    return JsonResponse({"ok": True})
