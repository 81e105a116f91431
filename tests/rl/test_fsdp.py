"""Full fine-tuning sharded over two gloo processes on CPU (FSDP2, rl/core/sharding.py), launched
with the shipped accelerate config (rl/core/accelerate/fsdp.yaml) on the tiny FLUX Fill policy.

What is checked: each process holds at most its share of the policy's parameters, AdamW's state,
the EMA and the reference, measured from the storage it really holds (tests/rl/fsdp_probe.py); the
sharded run's steps and saved policy are those of one unsharded process, for both algorithms; a
sharded run stopped at a checkpoint and resumed writes that same policy, and the policy exports.

Tolerance: one process and two agree to 1e-5 on the weights. The gradients of two processes are
their halves averaged by a reduce-scatter, so only the order of float sums differs (seen: 1.2e-7);
the three steps move the weights by about 2e-3, a lost AdamW state or EMA on resume by a fraction
of that, which the tolerance would show.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from generation.core.demo_flux import save_tiny_flux_fill
from rewardmodel.core.demo_judge import save_tiny_qwen
from rl.core.onereward import OneRewardTrainer
from tests.trainer_processes import REPO, free_port

from . import rl_config, write_default_conditions

POLICY = "policy/transformer/diffusion_pytorch_model.safetensors"


def launch_fsdp(module: str, arguments: list[str]) -> subprocess.CompletedProcess:
    """`module` in two processes under the FSDP config (gloo on a host without CUDA)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "rl/core/accelerate/fsdp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
               "--main_process_port", str(free_port()), "-m", module, *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp-world")
    return root, save_tiny_flux_fill(root / "flux"), save_tiny_qwen(root / "judge", seed=0), \
        write_default_conditions(root / "conditions")


def config_file(world, name: str, **overrides):
    root, flux, judge, conditions = world
    config = rl_config(flux, judge, conditions, root / name, lora_rank=None, max_steps=3, learning_rate=1e-3,
                       ema_decay=0.5, **overrides).as_dict()
    path = root / f"{name}-{overrides.get('stop_at_step')}.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def runs(world):
    """Per algorithm: one unsharded process run in this process, and a sharded run (Algorithm 1's
    through the probe, stopped at step 2 and resumed by the command line)."""
    root = world[0]
    outputs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for algorithm in ("fixed", "dynamic"):
            one = OneRewardTrainer(rl_config(*world[1:], root / f"one-{algorithm}", lora_rank=None, max_steps=3,
                                             learning_rate=1e-3, ema_decay=0.5, algorithm=algorithm))
            one.train()
            outputs[algorithm, 1] = root / f"one-{algorithm}"
    finally:
        torch.set_num_threads(threads)
    stopped = config_file(world, "two-fixed", algorithm="fixed", stop_at_step=2)
    launch_fsdp("tests.rl.fsdp_probe", [str(stopped), str(root / "held")])
    launch_fsdp("rl.core.train", ["--config", str(config_file(world, "two-fixed", algorithm="fixed"))])
    launch_fsdp("rl.core.train", ["--config", str(config_file(world, "two-dynamic", algorithm="dynamic"))])
    outputs["fixed", 2], outputs["dynamic", 2] = root / "two-fixed", root / "two-dynamic"
    outputs["held"] = [json.loads((root / "held" / f"held-{rank}.json").read_text()) for rank in (0, 1)]
    return outputs


def metrics(output):
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_each_process_holds_its_share_of_policy_optimizer_ema_and_reference(runs):
    held = runs["held"]
    assert all(report["processes"] == 2 for report in held)
    for group in ("policy", "optimizer", "ema", "reference"):
        whole, rows = held[0][group]["whole"], held[0][group]["rows"]
        assert whole > 0 and held[0][group]["tensors"] > 0, group
        for report in held:
            # Dim-0 chunks: ceil(rows / 2) of each tensor, so at most one row over half.
            assert report[group]["held"] <= whole / 2 + rows, (group, report[group])
        # Between them the two processes hold all of it.
        assert sum(report[group]["held"] for report in held) >= whole, group


@pytest.mark.parametrize("algorithm", ["fixed", "dynamic"])
def test_sharded_steps_and_policy_match_one_process(runs, world, algorithm):
    one, two = runs[algorithm, 1], runs[algorithm, 2]
    resolved = json.loads((two / "config.resolved.json").read_text())
    assert resolved["processes"] == 2
    for a, b in zip(metrics(one), metrics(two), strict=True):
        assert a["step"] == b["step"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        # The norm of near-zero gradients (about 1e-4 here) sums its squares in another order when
        # sharded: it differed by 3e-4 of itself in one run. Gradients left unreduced across the two
        # processes, or summed instead of averaged, change it by tens of percent.
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-2)
    weights = [load_file(output / POLICY) for output in (one, two)]
    base = load_file(world[1] / "transformer" / "diffusion_pytorch_model.safetensors")
    assert weights[0].keys() == weights[1].keys() == base.keys()
    moved = max((weights[0][k] - base[k]).abs().max().item() for k in base)
    assert moved > 1e-3  # the EMA policy did train: the tolerance below is far under it
    for name in base:
        torch.testing.assert_close(weights[1][name], weights[0][name], rtol=1e-5, atol=1e-5)


def test_a_sharded_run_resumes_from_its_shards_and_exports(runs, tmp_path):
    from rl.core.export import export_policy

    two = runs["fixed", 2]
    assert [m["step"] for m in metrics(two)] == [1, 2, 3]  # steps 1-2 by the probe's run, 3 after the resume
    step2 = two / "checkpoints" / "step-2"
    assert (step2 / "shard-0-of-2.pt").is_file() and (step2 / "shard-1-of-2.pt").is_file()
    shards = [torch.load(step2 / f"shard-{rank}-of-2.pt", weights_only=True) for rank in (0, 1)]
    # Each file holds its process's rows only: together, the whole policy once.
    policy = load_file(runs["fixed", 1] / POLICY)
    for name, tensor in policy.items():
        parts = [shard["policy"][name] for shard in shards]
        assert sum(part.shape[0] for part in parts) == tensor.shape[0], name
    result = json.loads((two / "result.json").read_text())
    settings = result["generator_settings"]
    assert settings["transformer"] == str((two / "policy").resolve()) and settings["loras"] == []
    exported = export_policy(settings, "merged", tmp_path / "merged.safetensors", dtype="float32")
    merged = load_file(exported["path"])
    saved = load_file(two / POLICY)
    assert merged.keys() == saved.keys()
    assert all(torch.equal(merged[name], saved[name]) for name in saved)
