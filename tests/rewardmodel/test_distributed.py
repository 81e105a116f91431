"""Two CPU processes under `accelerate launch` (DDP over gloo) against one process, and resume.

The launcher is `accelerate launch --multi_gpu --num_processes 2`: on a host without CUDA it starts
the processes with torchrun and the trainer picks gloo on CPU. (`--cpu` alone starts a single
process in accelerate 1.x unless an MPI hostfile is given.)

Tolerance: the per-step losses of one and two processes agree to 1e-5 (relative). A step of two
processes sees the same 8 pairs as a step of one, so they differ only by the order of float sums
in the gradient all-reduce (measured: at most 5e-7 absolute over the 8 steps at lr 1e-3).
"""
import json
import subprocess
from pathlib import Path

import pytest

from rewardmodel.core.demo_judge import save_tiny_qwen
from tests.trainer_processes import run_module

from .synthetic_pairs import brightness_pairs

TOLERANCE = 1e-5


def run_trainer(config: dict, processes: int, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"config-{Path(config['output_dir']).name}-{len(list(tmp_path.glob('config-*')))}.json"
    path.write_text(json.dumps(config))
    done = run_module("rewardmodel.core.train", ["--config", str(path)], processes)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def losses(output) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(output) / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    tiny = save_tiny_qwen(root / "tiny", seed=0)
    data = brightness_pairs(root / "data", {"train": 48, "test": 6}, seed=6)
    base = {"dataset_dir": str(data), "base_model": str(tiny), "learning_rate": 1e-3, "batch_size": 8,
            "max_steps": 8, "warmup_steps": 2, "log_every": 1, "save_every": 3, "zero_shot_eval": False, "seed": 1}
    return root, base


@pytest.fixture(scope="module")
def two_processes(setup):
    root, base = setup
    output = root / "two"
    run_trainer({**base, "output_dir": str(output)}, 2, root)
    return output


def test_two_processes_train_to_the_same_losses_as_one(setup, two_processes):
    root, base = setup
    run_trainer({**base, "output_dir": str(root / "one")}, 1, root)
    run_trainer({**base, "output_dir": str(root / "two-accumulated"), "per_device_batch_size": 2}, 2, root)
    resolved = json.loads((two_processes / "config.resolved.json").read_text())
    assert resolved["processes"] == 2 and resolved["per_device_batch_size"] == 4
    accumulated = json.loads((root / "two-accumulated" / "config.resolved.json").read_text())
    assert accumulated["processes"] == 2 and accumulated["accumulation_steps"] == 2

    one, two, two_accumulated = losses(root / "one"), losses(two_processes), losses(root / "two-accumulated")
    assert len(one) == len(two) == len(two_accumulated) == 8
    assert two == pytest.approx(one, rel=TOLERANCE)
    assert two_accumulated == pytest.approx(one, rel=TOLERANCE)
    assert one[-1] < one[0]
    # Only the main process writes: one line per step, one result.
    result = json.loads((two_processes / "result.json").read_text())
    assert result["steps"] == 8 and result["processes"] == 2 and result["evaluation"]["pairs"] == 6


def test_two_processes_resume_on_the_same_loss_curve(setup, two_processes):
    root, base = setup
    output = root / "two-resumed"
    run_trainer({**base, "output_dir": str(output), "stop_at_step": 4}, 2, root)
    assert len(losses(output)) == 4 and not (output / "result.json").exists()
    assert (output / "checkpoints" / "latest").read_text() == "step-4"
    assert {path.name for path in (output / "checkpoints" / "step-4").glob("random_states_*.pkl")} == {
        "random_states_0.pkl", "random_states_1.pkl"}
    done = run_trainer({**base, "output_dir": str(output)}, 2, root)
    assert "resuming from" in done.stderr
    assert losses(output) == pytest.approx(losses(two_processes), rel=1e-6)
