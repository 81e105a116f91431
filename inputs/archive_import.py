"""The work of an InputImport job: read the stored zip, import all of it or none of it."""
from django.core.files.storage import default_storage

from onereward.jobs import JobStatus

from .core.images import CanvasSpec, InputProblem
from .core.sources import ImportDefaults, ZipTree, specs_from_tree
from .importing import ImportRejected, find_problems, import_inputs, zip_limits
from .models import InputImport
from .storage import delete_files


def defaults_of(job: InputImport) -> ImportDefaults:
    raw = job.defaults or {}
    canvas = CanvasSpec.parse(raw["canvas"], "canvas") if raw.get("canvas") else None
    return ImportDefaults(
        task=raw.get("task"), prompt=raw.get("prompt", ""), tags=list(raw.get("tags", [])), canvas=canvas
    )


def run_archive_import(job: InputImport) -> None:
    if job.status in (JobStatus.DONE, JobStatus.CANCELLED):
        return  # a redelivered message: the work is already done (or was called off)
    job.mark_running()
    try:
        with default_storage.open(job.archive.name, "rb") as archive:
            tree = ZipTree(archive, job.original_name, zip_limits())
            specs, problems = specs_from_tree(tree, defaults_of(job))
        if problems:
            # Report the readers' problems together with the checks of every readable entry.
            problems = problems + find_problems(specs)[1]
            raise ImportRejected(problems)
        created = import_inputs(
            specs, user=job.created_by, on_progress=lambda done, total: job.set_progress(done, total)
        )
        job.created_inputs.set(created)
        job.problems = []
        InputImport.objects.filter(pk=job.pk).update(problems=[])
        job.mark_done()
        _discard_archive(job)
    except InputProblem as problem:
        _reject(job, [problem])
    except ImportRejected as rejected:
        _reject(job, rejected.problems)
    except Exception as exc:
        job.mark_failed(f"{type(exc).__name__}: {exc}")
        raise


def _reject(job: InputImport, problems: list[InputProblem]) -> None:
    job.problems = [p.as_dict() for p in problems]
    InputImport.objects.filter(pk=job.pk).update(problems=job.problems)
    job.mark_failed(f"{len(problems)} bad entr{'y' if len(problems) == 1 else 'ies'}; nothing was imported.")
    _discard_archive(job)


def _discard_archive(job: InputImport) -> None:
    """The inputs (or the list of problems) are the record; the uploaded zip is not kept."""
    if job.archive.name:
        delete_files([job.archive.name])  # and its folder, imports/<random>/
        InputImport.objects.filter(pk=job.pk).update(archive="")
