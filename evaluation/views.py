"""The annotator's pages for human evaluation studies: the study page, the item fragment it swaps
in, the pixels by screen position, and the endpoint judgments are posted to.

Blind by construction, like the annotation workspace: the page gets a slot id, screen positions
1..N and the dimensions to judge. Generators, batches, arm labels, candidate ids and the study's
name (an admin may well name it after the generators) never reach it; images are served by
(slot, position) through the slot's shown order, only to the annotator holding the slot.
"""
import json

from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from annotation.views import INPUT_FILES, _image, annotator_json, annotator_page
from generation.models import Candidate

from .models import Study, StudyCandidate, StudyJudgment, StudySlot, StudySlotState
from .studies import AnnotatorPaused, StudyJudgmentRejected, next_item, pool, record_study_judgment, studies_with_work


def _items_left(user, study) -> int:
    """Items of the study this annotator could still take (their own lease included)."""
    held = StudySlot.objects.filter(annotator=user).values("item")
    free = pool(timezone.now(), study).exclude(item__in=held).order_by().values("item").distinct().count()
    mine = StudySlot.objects.filter(annotator=user, state=StudySlotState.LEASED, item__study=study).count()
    return free + mine


def _item_context(user, study: Study, after: int | None) -> dict:
    base = {"study_id": study.pk}
    try:
        slot = next_item(user, study=study, exclude=after)
    except AnnotatorPaused as exc:
        return {**base, "state": "paused", "reason": str(exc)}
    if slot is None:
        return {**base, "state": "empty", "closed": not study.active}
    item = slot.item.input
    lease_left = (slot.leased_until - timezone.now()).total_seconds() if slot.leased_until else 0
    return {
        **base,
        "state": "item",
        "slot": slot,
        "input": item,
        "task": item.task,
        "dimensions": item.judged_dimensions(),
        "positions": [(position, position + 1) for position in range(len(slot.shown_order))],
        "lease_seconds_left": max(0, int(lease_left)),
        "items_left": _items_left(user, study),
    }


def _after(request) -> int | None:
    value = request.GET.get("after", "")
    return int(value) if value.isdigit() else None


@require_GET
@annotator_page
def study_list(request):
    """Active studies with work for this annotator: a fragment the annotation page loads."""
    return render(request, "evaluation/study_list.html", {"studies": studies_with_work(request.user)})


@require_GET
@annotator_page
def study_page(request, study_id: int):
    study = get_object_or_404(Study, pk=study_id)
    context = _item_context(request.user, study, after=None)
    context["judged"] = StudyJudgment.objects.filter(annotator=request.user, item__study=study).count()
    return render(request, "evaluation/study_home.html", context)


@require_GET
@annotator_page
def item_fragment(request, study_id: int):
    """The next item as an HTML fragment; `after` names the slot just answered."""
    study = get_object_or_404(Study, pk=study_id)
    return render(request, "evaluation/study_item.html", _item_context(request.user, study, after=_after(request)))


def _own_slot(request, slot_id: int) -> StudySlot:
    slot = (
        StudySlot.objects.select_related("item__input")
        .filter(pk=slot_id, annotator=request.user, state__in=[StudySlotState.LEASED, StudySlotState.DONE])
        .first()
    )
    if slot is None:
        raise Http404("no such item")
    return slot


@require_GET
@annotator_page
def input_image(request, slot_id: int, kind: str):
    if kind not in INPUT_FILES:
        raise Http404("unknown image")
    item = _own_slot(request, slot_id).item.input
    return _image(getattr(item, kind).name, INPUT_FILES[kind], f"{kind}.png")


@require_GET
@annotator_page
def candidate_image(request, slot_id: int, position: int):
    slot = _own_slot(request, slot_id)
    if not 0 <= position < len(slot.shown_order):
        raise Http404("no such candidate")
    study_candidate = StudyCandidate.objects.filter(pk=slot.shown_order[position], item_id=slot.item_id).first()
    if study_candidate is None:
        raise Http404("no such candidate")
    candidate = Candidate.objects.only("image").get(pk=study_candidate.candidate_id)
    return _image(candidate.image.name, "image/png", f"candidate-{position + 1}.png")


@require_POST
@annotator_json
def judgment(request, slot_id: int):
    """Body: JSON, the payload of studies.record_study_judgment (or a form field `payload` holding
    it). 201 stored, 200 a retry of a stored submission, 400 with the reason and nothing stored."""
    raw = request.POST.get("payload") if request.content_type != "application/json" else None
    try:
        payload = json.loads(raw if raw is not None else request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the submission must be a JSON object"}, status=400)
    try:
        recorded = record_study_judgment(request.user, slot_id, payload)
    except StudyJudgmentRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"ok": True}, status=201 if recorded.created else 200)
