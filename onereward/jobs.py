"""The status row every piece of long work keeps: queued / running / done / failed / cancelled,
a progress figure and an error text. Celery tasks are thin: they load the row, do the work through
the row's methods, and leave the row telling what happened."""
import time

from django.conf import settings
from django.db import models, transaction
from django.template.response import TemplateResponse
from django.utils import timezone

from onereward.celery import app


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED}


class BackgroundJob(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    # The Celery task that runs this kind of job; subclasses name it.
    task_name: str = ""

    @property
    def progress(self) -> float:
        """Share of the work done, in [0, 1]."""
        if self.status == JobStatus.DONE:
            return 1.0
        return self.progress_done / self.progress_total if self.progress_total else 0.0

    # An error is its cause (one sentence a person can act on), then, after a blank line, the
    # details (a log's end, a traceback) for whoever debugs it.
    @property
    def error_cause(self) -> str:
        return self.error.split("\n\n", 1)[0].strip()

    @property
    def error_details(self) -> str:
        parts = self.error.split("\n\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def enqueue(self) -> None:
        """Send the job to its worker once the row is committed (a worker must find it)."""
        def send():
            result = app.send_task(self.task_name, args=[self.pk])
            type(self).objects.filter(pk=self.pk).update(celery_task_id=result.id)

        transaction.on_commit(send)

    def _update(self, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        type(self).objects.filter(pk=self.pk).update(**fields)

    def mark_running(self, total: int | None = None) -> None:
        fields = {"status": JobStatus.RUNNING, "started_at": timezone.now(), "error": ""}
        if total is not None:
            fields["progress_total"] = total
        self._update(**fields)

    def set_progress(self, done: int, total: int | None = None) -> None:
        fields = {"progress_done": done}
        if total is not None:
            fields["progress_total"] = total
        self._update(**fields)

    def finish(self, *, only_from=None, **fields) -> bool:
        """Mark the job done with `fields`, unless it was cancelled (or, given `only_from`, unless
        its status is not that one) in the meantime: a compare-and-set, so a worker finishing
        never overwrites a cancel. Returns whether this call finished it."""
        rows = type(self).objects.filter(pk=self.pk)
        rows = rows.filter(status=only_from) if only_from else rows.exclude(status=JobStatus.CANCELLED)
        finished = bool(rows.update(status=JobStatus.DONE, finished_at=timezone.now(), **{"error": "", **fields}))
        self.refresh_from_db()
        return finished

    def mark_done(self) -> None:
        self._update(status=JobStatus.DONE, finished_at=timezone.now())

    def mark_failed(self, error: str) -> None:
        self._update(status=JobStatus.FAILED, error=error, finished_at=timezone.now())

    def cancel(self) -> bool:
        """Cancel a job that has not finished; a running worker sees it at its next check."""
        updated = type(self).objects.filter(pk=self.pk).exclude(status__in=FINISHED).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
        self.refresh_from_db()
        return bool(updated)


def follow(job: BackgroundJob, describe, write, interval: float = 1.0) -> None:
    """Print `describe(job)` each time it changes until the job finishes (management commands' --wait)."""
    last = None
    while True:
        job.refresh_from_db()
        line = describe(job)
        if line != last:
            write(line)
            last = line
        if job.is_finished:
            return
        time.sleep(interval)


def progress_response(request, template: str, context: dict, job: BackgroundJob) -> TemplateResponse:
    """A job's progress fragment, polled by its change page (htmx) while the job runs. The poll that
    finds the job ended asks htmx to reload the whole page (HX-Refresh), so that every field of the
    record shows the end (status, counts, results) and not the bar alone; the reloaded page renders
    a finished job without polling."""
    response = TemplateResponse(request, template, context)
    if job.is_finished and request.headers.get("HX-Request") == "true":
        response["HX-Refresh"] = "true"
    return response
