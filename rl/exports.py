"""A policy checkpoint as the files designers load (rl/core/export.py): its LoRA file or its merged
transformer, made by a background job on a GPU worker (where the checkpoint's files are), kept in
storage and downloaded from the checkpoint's admin page or the API; the `export_checkpoint` command
writes them here, without the job.

The job shows where it is on the row, as every job does: `details` holds the phase while it runs
(writing the file on the worker, then storing it), and the progress counts the bytes stored, so a
merged transformer of tens of GB going to S3 is followed to the end."""
import shutil
import tempfile
import traceback
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import Http404
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from mlcore.failures import cause_of
from onereward.files import stored_file_response
from onereward.jobs import JobStatus

from .core.export import ExportError, export_policy
from .models import ExportFormat, PolicyCheckpoint, PolicyExport, RLRun

STORAGE_FOLDER = "rl/exports"
WRITING = {ExportFormat.LORA: "writing the LoRA file", ExportFormat.MERGED: "merging the transformer"}
STORING = "storing the file"
# The row is updated each time this share more of the file is stored: 100 writes for any size.
PROGRESS_STEP = 0.01


def export_filename(checkpoint: PolicyCheckpoint, format: str) -> str:
    """The downloaded file's name: the generator's name, then what the file is."""
    stem = slugify(checkpoint.generator.name) or f"policy-{checkpoint.pk}"
    return f"{stem}-{'lora' if format == ExportFormat.LORA else 'transformer'}.safetensors"


def storage_name(checkpoint: PolicyCheckpoint, format: str) -> str:
    return f"{STORAGE_FOLDER}/checkpoint-{checkpoint.pk}/{export_filename(checkpoint, format)}"


def is_downloadable(export: PolicyExport | None) -> bool:
    return bool(export is not None and export.status == JobStatus.DONE and export.file
                and default_storage.exists(export.file.name))


def request_export(checkpoint: PolicyCheckpoint, format: str, user=None) -> PolicyExport:
    """Queue the export of `checkpoint` as `format` (idempotent: a queued, running or downloadable
    export is returned as it is; a failed or cancelled one, or one whose file is gone, is queued
    again). Raises ValidationError on the format when the checkpoint cannot be exported so."""
    problem = checkpoint.export_problem(format)
    if problem:
        raise ValidationError({"format": ValidationError(problem, code="format")})
    with transaction.atomic():
        export, created = PolicyExport.objects.select_for_update().get_or_create(
            checkpoint=checkpoint, format=format, defaults={"created_by": user})
        if not created:
            if export.status in (JobStatus.QUEUED, JobStatus.RUNNING) or is_downloadable(export):
                return export
            PolicyExport.objects.filter(pk=export.pk).update(
                status=JobStatus.QUEUED, error="", progress_done=0, started_at=None, finished_at=None, file="",
                size=0, details={}, created_by=user or export.created_by)
            export.refresh_from_db()
        export.enqueue()
    return export


class _ReadCounter:
    """A file read through, telling `on_read(position)` after each read (uploads read in chunks)."""

    def __init__(self, handle, on_read):
        self._handle, self._on_read = handle, on_read

    def read(self, size=-1):
        data = self._handle.read(size)
        self._on_read(self._handle.tell())
        return data

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _storing_progress(export: PolicyExport, size: int):
    """on_read for _ReadCounter: the bytes stored so far onto the row, every PROGRESS_STEP of the file."""
    step, last = max(1, int(size * PROGRESS_STEP)), [0]

    def on_read(position: int) -> None:
        if position - last[0] >= step or (position >= size and last[0] < size):
            last[0] = position
            export.set_progress(min(position, size))

    return on_read


def run_export(export: PolicyExport) -> None:
    """The job: write the file with the core, store it, record it. Safe to run again (the same
    storage name is overwritten)."""
    if export.status == JobStatus.CANCELLED:
        return
    export.mark_running(total=1)
    export._update(progress_done=0, details={"phase": WRITING[export.format]})
    checkpoint = export.checkpoint
    root = Path(settings.ONEREWARD_TRAINING_DIR)
    root.mkdir(parents=True, exist_ok=True)
    # Next to the checkpoints rather than in /tmp: a merged FLUX transformer is tens of GB.
    folder = Path(tempfile.mkdtemp(prefix="policy-export-", dir=root))
    stored = None
    try:
        local = folder / export_filename(checkpoint, export.format)
        details = export_policy(checkpoint.generator.settings, export.format, local)
        name = storage_name(checkpoint, export.format)
        size = local.stat().st_size
        export._update(progress_done=0, progress_total=size, details={"phase": STORING})
        default_storage.delete(name)  # a retry: the same name, never name_xyz
        with open(local, "rb") as handle:
            stored = default_storage.save(name, File(_ReadCounter(handle, _storing_progress(export, size)),
                                                     name=local.name))
        details.pop("path", None)
        if not export.finish(file=stored, size=size, details=details, progress_done=size):
            default_storage.delete(stored)  # cancelled meanwhile
    except ExportError as exc:
        export.mark_failed(str(exc))
    except Exception as exc:
        if stored:
            default_storage.delete(stored)
        export.mark_failed(f"{cause_of(exc)}\n\n{traceback.format_exc()}")
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    export.refresh_from_db()


def download_response(checkpoint: PolicyCheckpoint, format: str):
    """The stored export as an attachment; 404 while there is none to download."""
    export = checkpoint.exports.filter(format=format).first()
    if not is_downloadable(export):
        raise Http404(f"no {format} export of {checkpoint} is ready; prepare it first")
    response = stored_file_response(export.file.name, "application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, export_filename(checkpoint, format))
    return response


def export_states(checkpoint: PolicyCheckpoint) -> dict:
    """{format: {"status", "error", "size", "details", "progress", "phase", "downloadable", "problem"}} for
    pages and the API: status "not made" before the first request; progress in [0, 1] and phase (what
    the job is doing, "" unless it runs); problem: why that format is refused."""
    exports = {export.format: export for export in checkpoint.exports.all()}
    states = {}
    for format in ExportFormat.values:
        export = exports.get(format)
        states[format] = {
            "status": export.status if export else "not made",
            "error": export.error_cause if export else "",
            "size": export.size if export else 0,
            "details": export.details if export else {},
            "progress": export.progress if export else 0.0,
            "phase": (export.details or {}).get("phase", "") if export and export.status == JobStatus.RUNNING else "",
            "downloadable": is_downloadable(export),
            "problem": checkpoint.export_problem(format) or "",
        }
    return states


def find_checkpoint(reference: str) -> PolicyCheckpoint:
    """The checkpoint that `reference` names: "checkpoint:ID", "run:ID", or a bare ID, a run's
    name or the checkpoint's generator name. Raises LookupError saying what matched or not."""
    kind, _, value = reference.partition(":")
    if kind not in ("checkpoint", "run"):
        kind, value = "", reference
    value = value.strip()
    found: dict[int, PolicyCheckpoint] = {}
    runs_without: list[RLRun] = []
    checkpoints = PolicyCheckpoint.objects.select_related("generator", "run")
    if kind in ("", "checkpoint"):
        if value.isdigit():
            found.update((c.pk, c) for c in checkpoints.filter(pk=int(value)))
        if not kind:
            found.update((c.pk, c) for c in checkpoints.filter(generator__name=value))
    if kind in ("", "run"):
        runs = list(RLRun.objects.filter(pk=int(value))) if value.isdigit() else []
        if not kind and value:
            runs += [run for run in RLRun.objects.filter(name=value) if run not in runs]
        for run in runs:
            checkpoint = checkpoints.filter(run=run).first()
            if checkpoint is None:
                runs_without.append(run)
            else:
                found[checkpoint.pk] = checkpoint
    if len(found) > 1:
        raise LookupError(f"{reference!r} names several checkpoints ({', '.join(str(c) for c in found.values())}); "
                          f"say checkpoint:ID or run:ID")
    if found:
        return next(iter(found.values()))
    if runs_without:
        run = runs_without[0]
        raise LookupError(f"{run} has no policy checkpoint yet (status {run.get_status_display()}): a run registers "
                          f"one when it finishes")
    raise LookupError(f"no policy checkpoint or RL run {reference!r} (give checkpoint:ID, run:ID, a run's name or "
                      f"the checkpoint's generator name)")
