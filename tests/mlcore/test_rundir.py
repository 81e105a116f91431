"""The run directory: what a trainer writes and what the platform reads back."""
import json
import os
import threading

import pytest

from mlcore.config import ConfigError
from mlcore.rundir import STATE_FILE, RunDirectory, check_resumable, read_json, write_json_atomic


def save(run: RunDirectory, step: int, keep: int | None) -> None:
    directory = run.checkpoint(step)
    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(bytes([step]))
    run.commit_checkpoint(directory, {"step": step, "config": {"lr": 0.1}}, keep)


def test_checkpoints_metrics_progress_and_result_read_back(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.latest_checkpoint() is None and run.read_metrics() == [] and run.read_progress() is None
    for step in (2, 4):
        save(run, step, keep=None)
        run.append_metrics({"step": step, "loss": 1.0 / step})
    run.write_progress({"step": 4, "total_steps": 4, "phase": "done"})
    run.write_result({"steps": 4})

    assert run.latest_checkpoint() == run.checkpoints / "step-4"
    assert run.read_state(run.latest_checkpoint()) == {"step": 4, "config": {"lr": 0.1}}
    assert run.read_metrics() == [{"step": 2, "loss": 0.5}, {"step": 4, "loss": 0.25}]
    assert run.read_progress()["phase"] == "done" and run.read_result() == {"steps": 4}
    run.clear_status()
    assert run.read_progress() is None and run.read_result() is None


def test_a_checkpoint_without_its_state_is_not_the_latest(tmp_path):
    run = RunDirectory(tmp_path)
    save(run, 1, keep=None)
    (run.checkpoints / "latest").write_text("step-2")  # pointer written, the state not (a crash)
    (run.checkpoints / "step-2").mkdir()
    assert run.latest_checkpoint() is None
    (run.checkpoints / "step-2" / STATE_FILE).write_text("{}")
    assert run.latest_checkpoint().name == "step-2"


def test_pruning_keeps_the_newest_and_the_latest(tmp_path):
    run = RunDirectory(tmp_path)
    for step in (1, 2, 3, 10):
        save(run, step, keep=2)
    assert sorted(p.name for p in run.checkpoints.glob("step-*")) == ["step-10", "step-3"]
    assert run.latest_checkpoint().name == "step-10"
    # The checkpoint just written survives even when its number sorts below older ones (a run
    # resumed from an earlier step into a directory that holds later ones).
    save(run, 5, keep=1)
    assert [p.name for p in run.checkpoints.glob("step-*")] == ["step-5"]
    assert run.latest_checkpoint().name == "step-5"
    assert run.prune_checkpoints(None, keep="step-5") == []


def test_truncated_metrics_drop_steps_after_the_checkpoint_and_torn_lines(tmp_path):
    run = RunDirectory(tmp_path)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "lo')  # a crash in the middle of a line
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 3]
    run.truncate_metrics(2)
    assert run.read_metrics() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    run.append_metrics({"step": 3, "loss": 9.0})
    assert [m["loss"] for m in run.read_metrics()] == [1.0, 2.0, 9.0]


def test_atomic_writes_leave_no_partial_file_and_readers_never_see_half(tmp_path):
    path = tmp_path / "progress.json"
    big = {"values": list(range(20000))}
    write_json_atomic(path, {"step": 0})
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(read_json(path))

    thread = threading.Thread(target=reader)
    thread.start()
    for step in range(30):
        write_json_atomic(path, {**big, "step": step})
    stop.set()
    thread.join()
    assert seen and all(value is not None for value in seen)  # never a torn file
    assert json.loads(path.read_text())["step"] == 29
    assert os.listdir(tmp_path) == ["progress.json"]
    assert read_json(tmp_path / "missing.json") is None


def test_the_resume_check_names_every_field_that_differs(tmp_path):
    saved = {"lr": 0.1, "batch_size": 8, "seed": 0, "log_every": 10}
    fields = ("lr", "batch_size", "seed")
    check_resumable(saved, {**saved, "log_every": 1}, fields, tmp_path)  # not a trajectory field
    with pytest.raises(ConfigError) as error:
        check_resumable(saved, {**saved, "lr": 0.2, "seed": 1}, fields, tmp_path,
                        other={"dataset_dir": "dataset (content hash)"})
    assert error.value.field == "lr"
    assert [name for name, _ in error.value.errors] == ["lr", "seed", "dataset_dir"]
    assert "other lr, seed, dataset (content hash)" in str(error.value) and str(tmp_path) in str(error.value)
