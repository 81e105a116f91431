from django.contrib.auth.decorators import permission_required
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from onereward.files import stored_file_response

from .models import Candidate

FILE_KINDS = {"image": "image/png", "thumbnail": "image/jpeg"}


@require_GET
@permission_required("generation.view_candidate", raise_exception=True)
def candidate_file(request, public_id, kind):
    """Candidate pixels by an opaque id: the URL says nothing about generator or settings."""
    if kind not in FILE_KINDS:
        raise Http404("unknown file kind")
    candidate = get_object_or_404(Candidate, public_id=public_id)
    return stored_file_response(getattr(candidate, kind).name, FILE_KINDS[kind], max_age=86400)
