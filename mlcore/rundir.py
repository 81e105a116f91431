"""A trainer's output directory, written by the trainer and read by whoever follows it (the
platform's worker, a notebook, the next call that resumes the run):

    checkpoints/step-N/          one checkpoint per saved step (what the trainer puts there), with
    checkpoints/step-N/trainer_state.json   the loop's own state (step, config, counters)
    checkpoints/latest           the name of the newest complete checkpoint ("step-N")
    metrics.jsonl                one JSON object per logged step, {"step": N, ...}
    progress.json                the latest {"step", "total_steps", "loss", "eta_seconds", "phase", ...}
    result.json                  what a finished run returns
    failure.json                 {"cause": one sentence} when the trainer stopped on an error

Every JSON file is replaced atomically (written aside, then renamed), so a reader never sees half
of one; metrics.jsonl is appended line by line and its reader skips a line cut by a crash.

Resuming (nanoGPT's train.py): the checkpoint's config must agree with the new one on the fields
that change the trajectory; `check_resumable` names those that do not.

Standard library only.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from .config import ConfigError

STATE_FILE = "trainer_state.json"
LATEST = "latest"
METRICS = "metrics.jsonl"
PROGRESS = "progress.json"
RESULT = "result.json"
FAILURE = "failure.json"


def write_json_atomic(path, data) -> None:
    """Write `data` as indented JSON to `path` so that readers see the old file or the new one."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)


def read_json(path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or unreadable (not written yet)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class RunDirectory:
    """The files of one run (see the module docstring); output_dir need not exist yet."""

    def __init__(self, output_dir):
        self.path = Path(output_dir)
        self.checkpoints = self.path / "checkpoints"

    # -- checkpoints --

    def checkpoint(self, step: int) -> Path:
        """Where the checkpoint of `step` goes: checkpoints/step-N."""
        return self.checkpoints / f"step-{int(step)}"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (its trainer_state.json written), or None."""
        pointer = self.checkpoints / LATEST
        if not pointer.is_file():
            return None
        path = self.checkpoints / pointer.read_text().strip()
        return path if (path / STATE_FILE).is_file() else None

    def commit_checkpoint(self, directory: Path, state: dict, keep_count: int | None) -> None:
        """Finish a checkpoint whose files are in `directory`: write its trainer state, point
        `latest` at it, then delete the oldest checkpoints beyond `keep_count` (None: keep all).
        A crash between the steps leaves `latest` on the previous complete checkpoint."""
        directory = Path(directory)
        write_json_atomic(directory / STATE_FILE, state)
        pointer = self.checkpoints / LATEST
        partial = pointer.with_name(f".{LATEST}.{os.getpid()}.partial")
        partial.write_text(directory.name)
        os.replace(partial, pointer)
        self.prune_checkpoints(keep_count, keep=directory.name)

    def prune_checkpoints(self, keep_count: int | None, keep: str) -> list[Path]:
        """Delete the oldest step-N directories so that `keep_count` remain, never `keep`; returns
        the deleted ones."""
        if keep_count is None:
            return []
        steps = sorted((int(path.name.split("-", 1)[1]), path) for path in self.checkpoints.glob("step-*")
                       if path.name.split("-", 1)[1].isdigit())
        old = [path for _, path in steps if path.name != keep][: max(0, len(steps) - keep_count)]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return old

    @staticmethod
    def read_state(directory) -> dict:
        """The trainer state saved with a checkpoint."""
        return json.loads((Path(directory) / STATE_FILE).read_text())

    # -- metrics --

    def append_metrics(self, values: dict) -> None:
        """One line of metrics.jsonl; values holds "step"."""
        with open(self.path / METRICS, "a") as handle:
            handle.write(json.dumps(values) + "\n")

    def read_metrics(self) -> list[dict]:
        """Every record of metrics.jsonl, in order ([] before the first; a torn line is skipped)."""
        try:
            lines = (self.path / METRICS).read_text().splitlines()
        except OSError:
            return []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop the lines after `step`: a resumed run trains those steps again and logs them anew."""
        path = self.path / METRICS
        if not path.exists():
            return
        kept = [json.dumps(record) for record in self.read_metrics() if record.get("step", 0) <= step]
        partial = path.with_name(f".{METRICS}.{os.getpid()}.partial")
        partial.write_text("".join(line + "\n" for line in kept))
        os.replace(partial, path)

    # -- progress and result --

    def write_progress(self, progress: dict) -> None:
        write_json_atomic(self.path / PROGRESS, progress)

    def read_progress(self) -> dict | None:
        return read_json(self.path / PROGRESS)

    def write_result(self, result: dict) -> None:
        write_json_atomic(self.path / RESULT, result)

    def read_result(self) -> dict | None:
        return read_json(self.path / RESULT)

    def write_failure(self, cause: str) -> None:
        write_json_atomic(self.path / FAILURE, {"cause": cause})

    def read_failure(self) -> str | None:
        """The one-sentence cause the trainer left when it stopped on an error, or None."""
        failure = read_json(self.path / FAILURE)
        return failure.get("cause") if isinstance(failure, dict) else None

    def clear_status(self) -> None:
        """Remove progress.json, result.json and failure.json of an earlier call, before a new one
        starts."""
        for name in (PROGRESS, RESULT, FAILURE):
            (self.path / name).unlink(missing_ok=True)


def check_resumable(saved: dict, current: dict, fields: Iterable[str], output_dir,
                    other: dict[str, str] | None = None) -> None:
    """Refuse to resume when the checkpoint's config `saved` and the new one `current` (both as
    dicts) differ on any of `fields`. other: {field: what} for differences the caller found
    outside the config (e.g. {"dataset_dir": "dataset (content hash)"}). The ConfigError names
    every differing field."""
    changed = [(name, name) for name in fields if saved.get(name) != current.get(name)]
    changed += list((other or {}).items())
    if not changed:
        return
    labels = ", ".join(label for _, label in changed)
    message = (f"output_dir {output_dir} holds a checkpoint of a run with other {labels}; resume it with the same "
               "options, or use a new output_dir")
    raise ConfigError(changed[0][0], f"differs from the checkpoint in output_dir {output_dir}",
                      [(name, f"differs from the checkpoint in output_dir {output_dir}") for name, _ in changed],
                      summary=message)
