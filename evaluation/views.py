"""The annotator's pages for human evaluation studies: the study page, the item fragment it swaps
in, the pixels by screen position, and the endpoint judgments are posted to.

Blind by construction, like the annotation workspace, whose building blocks they use
(annotation.judging_views): the page gets a slot id, screen positions 1..N and the dimensions to
judge. Generators, batches, arm labels, candidate ids and the study's name (an admin may well name
it after the generators) never reach it; images are served by (slot, position) through the slot's
shown order, only to the annotator holding the slot.
"""
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from annotation import judging_views
from generation.models import Candidate

from .models import Study, StudyCandidate, StudyJudgment, StudySlot, StudySlotState
from .studies import AnnotatorPaused, next_item, pool, record_study_judgment, studies_with_work


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
    return {
        **base,
        "state": "item",
        **judging_views.candidates_context(slot, slot.item.input),
        "items_left": _items_left(user, study),
    }


@require_GET
@judging_views.annotator_page
def study_list(request):
    """Active studies with work for this annotator: a fragment the annotation page loads."""
    return render(request, "evaluation/study_list.html", {"studies": studies_with_work(request.user)})


@require_GET
@judging_views.annotator_page
def study_page(request, study_id: int):
    study = get_object_or_404(Study, pk=study_id)
    context = _item_context(request.user, study, after=None)
    context["judged"] = StudyJudgment.objects.filter(annotator=request.user, item__study=study).count()
    return render(request, "evaluation/study_home.html", context)


@require_GET
@judging_views.annotator_page
def item_fragment(request, study_id: int):
    """The next item as an HTML fragment; `after` names the slot just answered."""
    study = get_object_or_404(Study, pk=study_id)
    context = _item_context(request.user, study, after=judging_views.after_slot(request))
    return render(request, "evaluation/study_item.html", context)


def _shown_candidate(slot: StudySlot, study_candidate_id: int) -> Candidate | None:
    study_candidate = StudyCandidate.objects.filter(pk=study_candidate_id, item_id=slot.item_id).first()
    if study_candidate is None:
        return None
    return Candidate.objects.only("image").get(pk=study_candidate.candidate_id)


input_image, candidate_image = judging_views.slot_image_views(
    StudySlot.objects.select_related("item__input"), [StudySlotState.LEASED, StudySlotState.DONE], "item",
    input_of=lambda slot: slot.item.input, shown_candidate=_shown_candidate,
)


@require_POST
@judging_views.annotator_json
def judgment(request, slot_id: int):
    """Body: JSON, the payload of studies.record_study_judgment (or a form field `payload` holding
    it); answered as annotation.judging_views.judgment_response says."""
    raw = request.POST.get("payload") if request.content_type != "application/json" else None
    body = raw if raw is not None else request.body
    return judging_views.judgment_response(record_study_judgment, request.user, slot_id, body)
