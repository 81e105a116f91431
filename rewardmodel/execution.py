"""Running a reward model run on a GPU worker.

The Celery task copies the dataset version's files from storage into the run's directory, writes
the trainer's configuration, and starts the trainer as a child process (`python -m
rewardmodel.train`, or `accelerate launch` for several processes), so that a crash, an
out-of-memory kill or a cancel ends the child and never the worker. It follows the child through
the progress file the trainer rewrites at every log step, copies it onto the run row, and, when
the child ends well, registers the reward model version from the trainer's result file.

Retrying is safe: the dataset copy is skipped when complete, the trainer resumes from its last
checkpoint in the same directory, and the version is keyed by the run.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotation.preference_export import stored_files
from onereward.jobs import JobStatus

from .models import RewardModelRun, RewardModelVersion

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
LOSS_POINTS = 500  # kept for the plot; older points are thinned
LOG_TAIL = 4000


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


def trainer_command(run: RewardModelRun, config_path: Path) -> list[str]:
    if run.processes <= 1:
        return [sys.executable, "-m", "rewardmodel.train", "--config", str(config_path)]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(run.processes)]
    if run.accelerate_config:
        command += ["--config_file", str(Path(__file__).parent / "accelerate" / f"{run.accelerate_config}.yaml")]
    return command + ["-m", "rewardmodel.train", "--config", str(config_path)]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or being replaced


def _copy_progress(run: RewardModelRun, progress: dict) -> None:
    history = list(run.loss_history)
    step, loss = progress.get("step"), progress.get("loss")
    if step is not None and loss is not None and (not history or history[-1][0] != step):
        history.append([step, loss])
        if len(history) > LOSS_POINTS:
            history = history[::2]
    fields = {"step": step or 0, "total_steps": progress.get("total_steps") or run.total_steps, "loss": loss,
              "eta_seconds": progress.get("eta_seconds"), "samples_per_second": progress.get("samples_per_second"),
              "loss_history": history}
    run._update(progress_done=fields["step"], progress_total=fields["total_steps"], **fields)


def _loss_history(output: Path) -> list | None:
    """Every logged (step, loss) from the trainer's metrics file, thinned to LOSS_POINTS: the plot of
    a finished run does not depend on how often the worker looked at the progress file."""
    try:
        lines = (output / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    points = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("loss") is not None and record.get("step") is not None:
            points.append([record["step"], record["loss"]])
    while len(points) > LOSS_POINTS:
        points = points[::2]
    return points


def _cancelled(run: RewardModelRun) -> bool:
    return RewardModelRun.objects.filter(pk=run.pk, status=JobStatus.CANCELLED).exists()


def register_version(run: RewardModelRun, result: dict) -> RewardModelVersion:
    model_path = run.output_dir / "model"
    version, _ = RewardModelVersion.objects.update_or_create(run=run, defaults={
        "name": f"{run.name or 'reward-model'}-run{run.pk}",
        "model_path": str(model_path),
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
    log_path = output / "train.log"
    for stale in ("progress.json", "result.json"):
        (output / stale).unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(trainer_command(run, config_path), stdout=log_file, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
        last_progress = None
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            progress = _read_json(output / "progress.json")
            if progress and progress != last_progress:
                _copy_progress(run, progress)
                last_progress = progress
            if _cancelled(run):
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                return
    progress = _read_json(output / "progress.json")
    if progress:
        _copy_progress(run, progress)
    history = _loss_history(output)
    if history:
        run._update(loss_history=history)
    result = _read_json(output / "result.json")
    if child.returncode != 0 or result is None:
        tail = log_path.read_bytes()[-LOG_TAIL:].decode(errors="replace")
        run.mark_failed(f"the trainer exited with code {child.returncode}; the end of its log:\n{tail}")
        return
    with transaction.atomic():
        register_version(run, result)
        RewardModelRun.objects.filter(pk=run.pk).exclude(status=JobStatus.CANCELLED).update(
            status=JobStatus.DONE, finished_at=timezone.now(), error="")
    run.refresh_from_db()


def resume(run: RewardModelRun) -> bool:
    """Queue a failed or cancelled run again: training continues from its last checkpoint."""
    if run.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return False
    RewardModelRun.objects.filter(pk=run.pk).update(status=JobStatus.QUEUED, finished_at=None, error="")
    run.refresh_from_db()
    run.enqueue()
    return True
