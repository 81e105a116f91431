"""Importing production feedback events (preferences.core.feedback): every row checked first, bad
rows named by line; then all of them stored or none. Outside images are written to storage before
the rows and removed again when the rows cannot be stored. An event already stored (same source and
external id) is left as it is, so importing a file again is harmless.

A large file (up to MAX_ROWS events, each outside image written to storage: minutes on S3) tells its
progress to `on_progress(phase, done, total)`, in PHASES order, each phase from 0 to its total; the
command prints it."""
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
CHECKING, IMAGES, STORING, EVENTS = "checking the rows", "checking the outside images", "storing the outside images", \
    "storing the events"
PHASES = (CHECKING, IMAGES, STORING, EVENTS)
EVENTS_PER_WRITE = 5000  # rows per INSERT, in one transaction; the progress moves after each


class _Progress:
    """Calls on_progress at a phase's start and end and every 1 % of it between."""

    def __init__(self, on_progress):
        self.on_progress = on_progress

    def report(self, phase: str, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(phase, done, total)

    def each(self, phase: str, items: list):
        total = len(items)
        step = max(1, total // 100)
        self.report(phase, 0, total)
        for done, item in enumerate(items, start=1):
            yield item
            if done % step == 0 or done == total:
                self.report(phase, done, total)


class FeedbackRejected(Exception):
    def __init__(self, problems: list[FeedbackProblem]):
        super().__init__(f"{len(problems)} bad row(s); nothing was imported: "
                         + "; ".join(str(p) for p in problems[:10]) + (" ..." if len(problems) > 10 else ""))
        self.problems = problems


@dataclass
class FeedbackImported:
    created: int
    already_stored: int


def import_file(data: bytes, name: str, *, user=None, default_source: str = "", on_progress=None) -> FeedbackImported:
    try:
        rows = read_rows(data, name)
    except FeedbackProblem as problem:
        raise FeedbackRejected([problem]) from None
    return import_rows(rows, user=user, default_source=default_source, on_progress=on_progress)


def import_rows(rows: list[tuple[int, dict]], *, user=None, default_source: str = "",
                on_progress=None) -> FeedbackImported:
    """rows: (line, raw row). Raises FeedbackRejected naming every bad row; stores nothing then.
    on_progress(phase, done, total), when given, follows the work (the module docstring)."""
    if not rows:
        raise FeedbackRejected([FeedbackProblem(1, "no events")])
    if len(rows) > MAX_ROWS:
        raise FeedbackRejected([FeedbackProblem(1, f"{len(rows)} events; at most {MAX_ROWS} per import")])
    progress = _Progress(on_progress)
    problems, checked = [], []
    for line, raw in progress.each(CHECKING, rows):
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
    for row in progress.each(IMAGES, [row for row in checked if row.image is not None]):
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
    written, images = [], {}
    try:
        for row in progress.each(STORING, [row for row in new if row.image is not None]):
            image_hash = hashlib.sha256(row.image).hexdigest()
            name = f"feedback/{image_hash[:2]}/{image_hash}"
            if name not in images and not default_storage.exists(name):
                written.append(default_storage.save(name, ContentFile(row.image)))
            images[name] = image_hash
        events = []
        for row in new:
            image_hash = hashlib.sha256(row.image).hexdigest() if row.image is not None else ""
            candidate = candidates.get(row.candidate) if row.candidate else None
            events.append(FeedbackEvent(
                source=row.source, external_id=row.external_id, event=row.event, candidate=candidate,
                input_id=candidate.candidate_set.input_id if candidate else row.input_id,
                image=f"feedback/{image_hash[:2]}/{image_hash}" if image_hash else "", image_hash=image_hash,
                occurred_at=row.occurred_at, imported_by=user))
        progress.report(EVENTS, 0, len(events))
        with transaction.atomic():
            for start in range(0, len(events), EVENTS_PER_WRITE):
                # ignore_conflicts: a concurrent import of the same events stores each once.
                FeedbackEvent.objects.bulk_create(events[start:start + EVENTS_PER_WRITE], ignore_conflicts=True)
                progress.report(EVENTS, min(start + EVENTS_PER_WRITE, len(events)), len(events))
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
