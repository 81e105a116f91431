"""A large production-feedback file imported in the background (preferences.feedback does the
import): the file is kept in storage, a worker imports it, and the row shows the phase and the share
of it done, as every job does. Small files (up to BACKGROUND_BYTES) are imported at once by the
admin and the API; the command always imports at once, printing its progress."""
import traceback
import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models, transaction

from mlcore.failures import cause_of
from onereward.jobs import BackgroundJob, JobStatus

from .core.feedback import FeedbackProblem
from .feedback import FeedbackRejected, import_file

# About 10 000 events that name candidates, or a few dozen outside images: seconds either way.
BACKGROUND_BYTES = 1 << 20
STORAGE_FOLDER = "feedback/imports"


class FeedbackImport(BackgroundJob):
    """One file of feedback events being imported; its problems are kept when it is refused."""

    task_name = "preferences.import_feedback"

    name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    file = models.FileField(max_length=300, blank=True, help_text="The upload in storage, removed once imported.")
    source = models.CharField(max_length=100, blank=True, help_text="The source of rows that name none.")
    phase = models.CharField(max_length=40, blank=True, help_text="What the import is doing now.")
    created = models.PositiveIntegerField(default=0, help_text="Events stored.")
    already_stored = models.PositiveIntegerField(default=0, help_text="Events of the file stored before.")
    problems = models.JSONField(default=list, blank=True, help_text='[{"line", "problem"}] when refused.')

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Feedback import #{self.pk} ({self.name})"


def needs_background(upload) -> bool:
    return upload.size > BACKGROUND_BYTES


def start_import(upload, *, user=None, source: str = "") -> FeedbackImport:
    """Keep the upload in storage and queue its import; refuses a file that is neither JSONL nor CSV
    before anything is stored."""
    name = upload.name or ""
    if not name.lower().endswith((".jsonl", ".ndjson", ".json", ".csv")):
        raise FeedbackRejected([FeedbackProblem(1, f"{name}: give a .jsonl or .csv file")])
    stored = default_storage.save(f"{STORAGE_FOLDER}/{uuid.uuid4().hex}/{name.rsplit('/', 1)[-1]}",
                                  ContentFile(upload.read()))
    try:
        with transaction.atomic():
            job = FeedbackImport.objects.create(name=name, file=stored, source=source, created_by=user)
            job.enqueue()
    except BaseException:
        default_storage.delete(stored)
        raise
    return job


def run_import(job: FeedbackImport) -> None:
    """The job: import the stored file, the row following the phases; safe to run again (events
    stored before are left as they are)."""
    taken = FeedbackImport.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.RUNNING)
    job.refresh_from_db()
    if not taken:
        return
    job.mark_running()

    def progress(phase: str, done: int, total: int) -> None:
        job._update(phase=phase, progress_done=done, progress_total=total)

    try:
        with default_storage.open(job.file.name, "rb") as handle:
            data = handle.read()
        done = import_file(data, job.name, user=job.created_by, default_source=job.source, on_progress=progress)
    except FeedbackRejected as rejected:
        job._update(problems=[problem.as_dict() for problem in rejected.problems], phase="")
        job.mark_failed(str(rejected))
    except Exception as exc:
        job.mark_failed(f"{cause_of(exc)}\n\n{traceback.format_exc()}")
        raise
    else:
        job.finish(created=done.created, already_stored=done.already_stored, phase="")
    finally:
        if job.status != JobStatus.RUNNING:
            default_storage.delete(job.file.name)
