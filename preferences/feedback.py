"""Importing production feedback events (preferences.core.feedback): every row checked first, bad
rows named by line; then all of them stored or none. Outside images are written to storage before
the rows and removed again when the rows cannot be stored. An event already stored (same source and
external id) is left as it is, so importing a file again is harmless."""
import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from generation.models import Candidate
from inputs.core.images import InputProblem, open_image
from inputs.models import Input

from .core.feedback import FeedbackProblem, check_row, read_rows
from .models import FeedbackEvent

MAX_ROWS = 100_000


class FeedbackRejected(Exception):
    def __init__(self, problems: list[FeedbackProblem]):
        super().__init__(f"{len(problems)} bad row(s); nothing was imported: "
                         + "; ".join(str(p) for p in problems[:10]) + (" ..." if len(problems) > 10 else ""))
        self.problems = problems


@dataclass
class FeedbackImported:
    created: int
    already_stored: int


def import_file(data: bytes, name: str, *, user=None, default_source: str = "") -> FeedbackImported:
    try:
        rows = read_rows(data, name)
    except FeedbackProblem as problem:
        raise FeedbackRejected([problem]) from None
    return import_rows(rows, user=user, default_source=default_source)


def import_rows(rows: list[tuple[int, dict]], *, user=None, default_source: str = "") -> FeedbackImported:
    """rows: (line, raw row). Raises FeedbackRejected naming every bad row; stores nothing then."""
    if not rows:
        raise FeedbackRejected([FeedbackProblem(1, "no events")])
    if len(rows) > MAX_ROWS:
        raise FeedbackRejected([FeedbackProblem(1, f"{len(rows)} events; at most {MAX_ROWS} per import")])
    problems, checked = [], []
    for line, raw in rows:
        try:
            checked.append(check_row(line, raw, default_source))
        except FeedbackProblem as problem:
            problems.append(problem)
    seen = {}
    for row in checked:
        key = (row.source, row.external_id)
        if key in seen:
            problems.append(FeedbackProblem(row.line, f"event {row.external_id!r} of {row.source!r} is also on "
                                                      f"line {seen[key]}"))
        seen.setdefault(key, row.line)
    candidates = {str(c.public_id): c for c in Candidate.objects.filter(
        public_id__in=[r.candidate for r in checked if r.candidate and _is_uuid(r.candidate)]).select_related(
        "candidate_set")}
    inputs = set(Input.objects.filter(pk__in=[r.input_id for r in checked if r.input_id]).values_list("pk", flat=True))
    for row in checked:
        if row.candidate and row.candidate not in candidates:
            problems.append(FeedbackProblem(row.line, f"no candidate with public id {row.candidate!r}"))
        if row.input_id and row.input_id not in inputs:
            problems.append(FeedbackProblem(row.line, f"no input {row.input_id}"))
        if row.image is not None:
            try:
                open_image(row.image, f"line {row.line}", settings.ONEREWARD_MAX_IMAGE_PIXELS)
            except InputProblem as problem:
                problems.append(FeedbackProblem(row.line, f"the outside image cannot be used: {problem.problem}"))
    if problems:
        raise FeedbackRejected(sorted(problems, key=lambda p: p.line))

    existing = set(FeedbackEvent.objects.filter(
        source__in={r.source for r in checked}, external_id__in={r.external_id for r in checked}
    ).values_list("source", "external_id"))
    new = [row for row in checked if (row.source, row.external_id) not in existing]
    written = []
    try:
        events = []
        for row in new:
            image_name, image_hash = "", ""
            if row.image is not None:
                image_hash = hashlib.sha256(row.image).hexdigest()
                name = f"feedback/{image_hash[:2]}/{image_hash}"
                if not default_storage.exists(name):
                    written.append(default_storage.save(name, ContentFile(row.image)))
                image_name = name
            candidate = candidates.get(row.candidate) if row.candidate else None
            events.append(FeedbackEvent(
                source=row.source, external_id=row.external_id, event=row.event, candidate=candidate,
                input_id=candidate.candidate_set.input_id if candidate else row.input_id, image=image_name,
                image_hash=image_hash, occurred_at=row.occurred_at, imported_by=user))
        with transaction.atomic():
            # ignore_conflicts: a concurrent import of the same events stores each once.
            FeedbackEvent.objects.bulk_create(events, ignore_conflicts=True)
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return FeedbackImported(created=len(new), already_stored=len(checked) - len(new))


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
