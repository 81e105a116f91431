"""Running a reward model run on a GPU worker.

The Celery task copies the dataset version's files from storage into the run's directory, writes
the trainer's configuration, and runs the trainer (`rewardmodel.core.train`) as a child process
(onereward/trainer_process.py), copying its progress onto the run row; when the trainer ends well
it registers the reward model version from the trainer's result file.

Retrying is safe: the dataset copy is skipped when complete, the trainer resumes from its last
checkpoint in the same directory, and the version is keyed by the run.
"""
import json
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from preferences.export import stored_files
from onereward.jobs import JobStatus
from onereward.trainer_process import read_metrics, resume_job, run_trainer, thin, trainer_command

from .models import RewardModelRun, RewardModelVersion

ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


def copy_dataset(run: RewardModelRun) -> Path:
    """The dataset version's files in the run's directory, as the trainer reads them."""
    target = run.output_dir / "dataset"
    done = target / ".complete"
    if done.exists():
        return target
    dataset = run.dataset
    for name in stored_files(dataset):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(f"{dataset.storage_prefix}/{name}", "rb") as source, open(path, "wb") as sink:
            for block in iter(lambda: source.read(1 << 20), b""):
                sink.write(block)
    done.write_text(dataset.content_hash)
    return target


def _copy_progress(run: RewardModelRun, progress: dict) -> None:
    history = list(run.loss_history)
    step, loss = progress.get("step"), progress.get("loss")
    if step is not None and loss is not None and (not history or history[-1][0] != step):
        history = thin([*history, [step, loss]])
    fields = {"step": step or 0, "total_steps": progress.get("total_steps") or run.total_steps, "loss": loss,
              "eta_seconds": progress.get("eta_seconds"), "samples_per_second": progress.get("samples_per_second"),
              "loss_history": history}
    run._update(progress_done=fields["step"], progress_total=fields["total_steps"], **fields)


def register_version(run: RewardModelRun, result: dict) -> RewardModelVersion:
    version, _ = RewardModelVersion.objects.update_or_create(run=run, defaults={
        "name": f"{run.name or 'reward-model'}-run{run.pk}",
        "model_path": str(run.output_dir / "model"),
        "base_model": run.base_model,
        "template_version": result.get("template_version", 0),
        "evaluation": result.get("evaluation") or {},
        "zero_shot": result.get("zero_shot") or {},
        "steps": result.get("steps") or run.step,
        "final_loss": result.get("final_loss"),
    })
    return version


def run_training(run: RewardModelRun, worker: str = "") -> None:
    """Train, follow and register; the run row tells what happened."""
    if run.status in (JobStatus.CANCELLED, JobStatus.DONE):
        return
    run.mark_running()
    run._update(worker=worker)
    output = run.output_dir
    output.mkdir(parents=True, exist_ok=True)
    try:
        copy_dataset(run)
    except Exception as exc:  # noqa: BLE001 - recorded on the run
        run.mark_failed(f"could not copy dataset {run.dataset}: {type(exc).__name__}: {exc}")
        return
    config_path = output / "config.json"
    config_path.write_text(json.dumps(run.training_config(), indent=2))
    accelerate_config = ACCELERATE_DIR / f"{run.accelerate_config}.yaml" if run.accelerate_config else None
    outcome = run_trainer(run, trainer_command("rewardmodel.core.train", config_path, run.processes, accelerate_config),
                          output, lambda progress: _copy_progress(run, progress))
    if outcome.cancelled:
        return
    # The plot of a finished run comes from every logged step, not from the polls that saw it.
    metrics = read_metrics(output)
    history = thin([[r["step"], r["loss"]] for r in metrics if r.get("step") is not None and r.get("loss") is not None])
    validation = thin([[r["step"], r["validation/forward_accuracy"], r["validation/reversed_accuracy"],
                        r["validation/accuracy"]] for r in metrics if r.get("validation/accuracy") is not None])
    if history or validation:
        run._update(loss_history=history, validation_history=validation)
    if outcome.result is None:
        run.mark_failed(f"the trainer exited with code {outcome.returncode}; the end of its log:\n{outcome.log_tail}")
        return
    with transaction.atomic():
        register_version(run, outcome.result)
        run.finish()


def resume(run: RewardModelRun) -> bool:
    """Queue a failed or cancelled run again: training continues from its last checkpoint."""
    return resume_job(run)
