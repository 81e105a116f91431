"""Running an ML-core trainer (reward model, RL) as a child process of a GPU worker.

The trainer is started as `python -m MODULE --config FILE` (or under `accelerate launch` for
several processes) in a new session, so that a crash, an out-of-memory kill or a cancel ends the
child and never the worker. It rewrites `progress.json` at every log step and writes
`result.json` when it ends well; this module follows the first, copies it to the job row through a
callback, stops the child when the job is cancelled, and returns the second.
"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from onereward.jobs import JobStatus

POLL_SECONDS = 2.0
LOG_TAIL = 4000
HISTORY_POINTS = 500  # points kept for a plot; older ones are thinned


@dataclass
class TrainerOutcome:
    cancelled: bool
    returncode: int | None
    result: dict | None
    log_tail: str


def trainer_command(module: str, config_path: Path, processes: int = 1, accelerate_config: Path | None = None) -> list[str]:
    if processes <= 1:
        return [sys.executable, "-m", module, "--config", str(config_path)]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if accelerate_config is not None:
        command += ["--config_file", str(accelerate_config)]
    else:
        # Several processes without a config file: one per GPU (DDP); on a CPU host the trainers fall
        # back to gloo themselves.
        command += ["--multi_gpu"]
    return command + ["-m", module, "--config", str(config_path)]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or being replaced


def read_metrics(output: Path) -> list[dict]:
    """Every record of the trainer's metrics.jsonl (a torn last line is skipped)."""
    try:
        lines = (output / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def thin(points: list, limit: int = HISTORY_POINTS) -> list:
    while len(points) > limit:
        points = points[::2]
    return points


def run_trainer(job, command: list[str], output: Path, on_progress) -> TrainerOutcome:
    """Start `command`, call `on_progress(dict)` with each new progress file, stop the child if
    `job` is cancelled meanwhile. The child's output goes to output/train.log."""
    log_path = output / "train.log"
    for stale in ("progress.json", "result.json"):
        (output / stale).unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    root = Path(__file__).resolve().parent.parent
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True, cwd=root)
        last = None
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            progress = read_json(output / "progress.json")
            if progress and progress != last:
                on_progress(progress)
                last = progress
            if type(job).objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                return TrainerOutcome(True, child.returncode, None, "")
    progress = read_json(output / "progress.json")
    if progress and progress != last:
        on_progress(progress)
    tail = log_path.read_bytes()[-LOG_TAIL:].decode(errors="replace")
    return TrainerOutcome(False, child.returncode, read_json(output / "result.json") if child.returncode == 0 else None,
                          tail)


def resume_job(job) -> bool:
    """Queue a failed or cancelled training job again: the trainer continues from its last checkpoint."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return False
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, finished_at=None, error="")
    job.refresh_from_db()
    job.enqueue()
    return True
