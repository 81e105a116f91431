"""What every judging page's views share, the annotation workspace's (annotation.views) and the
evaluation study's (evaluation.views): who may use them, what a fragment with candidates shows,
the views serving pixels by (slot, screen position), and the answer to a posted judgment.

The slot models differ (annotation.Slot, evaluation.StudySlot); both carry an annotator, a state,
a lease end and the `shown_order` that maps screen positions to what was shown, which is all that
is read here.
"""
import json
from functools import wraps

from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from onereward.files import stored_file_response

from .picks import JudgmentRejected

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


def after_slot(request) -> int | None:
    """The `after` parameter: the slot on screen, which the next fragment must not show again."""
    value = request.GET.get("after", "")
    # ASCII digits only ("²".isdigit() is true and int() refuses it), within the id column's range.
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > 2**31 - 1:
        return None
    return int(value)


def candidates_context(slot, item) -> dict:
    """What the picker partials (templates/annotation/_picker_*.html) show of `slot`, leased to
    the viewer, on `item` (an inputs.Input): positions are (from 0, as posted; from 1, as shown)."""
    lease_left = (slot.leased_until - timezone.now()).total_seconds() if slot.leased_until else 0
    return {
        "slot": slot,
        "input": item,
        "task": item.task,
        "dimensions": item.judged_dimensions(),
        "positions": [(position, position + 1) for position in range(len(slot.shown_order))],
        "lease_seconds_left": max(0, int(lease_left)),
    }


def _image(name: str, content_type: str, filename: str):
    response = stored_file_response(name, content_type, max_age=IMAGE_MAX_AGE)
    # The stored name carries the candidate's public id; the browser gets a neutral one.
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def slot_image_views(slots, states, noun: str, input_of, shown_candidate):
    """A judging page's two image views, which serve a slot's pixels only to the annotator who
    holds it or judged it (anything else is a 404 naming `noun`, so slot ids reveal nothing):
    input_image(request, slot_id, kind), kind a key of INPUT_FILES, and
    candidate_image(request, slot_id, position), position on screen from 0.

    `slots`: the slot model's queryset, with what `input_of` reads selected; `states`: the slot
    states in which its annotator still sees it; `input_of(slot)`: its inputs.Input;
    `shown_candidate(slot, member)`: the generation.Candidate behind a member of its shown order,
    or None.
    """

    def own_slot(request, slot_id: int):
        slot = slots.filter(pk=slot_id, annotator=request.user, state__in=states).first()
        if slot is None:
            raise Http404(f"no such {noun}")
        return slot

    @require_GET
    @annotator_page
    def input_image(request, slot_id: int, kind: str):
        if kind not in INPUT_FILES:
            raise Http404("unknown image")
        item = input_of(own_slot(request, slot_id))
        return _image(getattr(item, kind).name, INPUT_FILES[kind], f"{kind}.png")

    @require_GET
    @annotator_page
    def candidate_image(request, slot_id: int, position: int):
        slot = own_slot(request, slot_id)
        if not 0 <= position < len(slot.shown_order):
            raise Http404("no such candidate")
        candidate = shown_candidate(slot, slot.shown_order[position])
        if candidate is None:
            raise Http404("no such candidate")
        return _image(candidate.image.name, "image/png", f"candidate-{position + 1}.png")

    return input_image, candidate_image


def judgment_response(record, user, slot_id: int, body) -> JsonResponse:
    """Parse `body` (JSON text) and store it through `record(user, slot_id, payload)`: 201 stored,
    200 a retry of a stored submission, 400 with the reason and nothing stored."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the submission must be a JSON object"}, status=400)
    try:
        recorded = record(user, slot_id, payload)
    except JudgmentRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"ok": True}, status=201 if recorded.created else 200)
