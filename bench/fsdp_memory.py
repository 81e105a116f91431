"""Memory per process of full fine-tuning under FSDP: the sharded build (rl/core/sharding.py) against
the code of another commit, in the same run, on a mid-size random FLUX-like transformer, two gloo
processes on the CPU launched with rl/core/accelerate/fsdp.yaml.

    .venv/bin/python bench/fsdp_memory.py --baseline 975c2ec
    .venv/bin/python bench/fsdp_memory.py --layers 3 --single-layers 6 --heads 6

Each process builds the trainer (Algorithm 1: policy, EMA and reference), gives every trainable
weight a zero gradient and makes one AdamW step (so the optimizer state exists), then reports its
peak resident memory (ru_maxrss) and the bytes of storage it holds for the policy's parameters, the
optimizer state, the EMA and the reference (local shards when sharded). The baseline commit is
checked out into a temporary worktree and runs the same worker against its own code. Prints
figures and ratios; never judges them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("policy", "optimizer", "ema", "reference")


def worker(config_path: str, out_dir: str) -> None:
    """Runs inside each launched process, against the code of the tree first on sys.path."""
    import torch

    from rl.core.config import OneRewardConfig
    from rl.core.onereward import OneRewardTrainer

    config = OneRewardConfig.from_dict(json.loads(Path(config_path).read_text()))
    run = OneRewardTrainer(config)
    for _, parameter in run.trainable:
        parameter.grad = torch.zeros_like(parameter)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    groups = {
        "policy": list(run.transformer.parameters()),
        "optimizer": [v for state in run.optimizer.state.values() for v in state.values() if torch.is_tensor(v)],
        "ema": list(run.ema_module.parameters()),
        "reference": list(run.reference_module.parameters()),
    }
    report = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "parameters": sum(p.numel() for p in groups["policy"]), "sharded": bool(getattr(run, "sharded", False))}
    for name, tensors in groups.items():
        report[name] = _storage_bytes(tensors)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"process-{run.accelerator.process_index}.json").write_text(json.dumps(report))


def _storage_bytes(tensors) -> int:
    from torch.distributed.tensor import DTensor

    seen, total = set(), 0
    for tensor in tensors:
        held = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        storage = held.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def build_world(root: Path, layers: int, single_layers: int, heads: int) -> Path:
    """The tiny pipeline with a FLUX-like transformer of `layers` double and `single_layers` single
    blocks of heads x 128 channels, a tiny judge and conditions; returns the RL config file."""
    sys.path.insert(0, str(ROOT))
    import torch
    from diffusers import FluxTransformer2DModel

    from generation.core.demo_flux import build_pipeline, tiny_transformer_config
    from rewardmodel.core.demo_judge import save_tiny_qwen
    from tests.rl import rl_config, write_default_conditions

    pipeline = build_pipeline(seed=0)
    torch.manual_seed(0)
    pipeline.transformer = FluxTransformer2DModel(**tiny_transformer_config(
        num_layers=layers, num_single_layers=single_layers, attention_head_dim=128, num_attention_heads=heads,
        axes_dims_rope=(16, 56, 56)))
    pipeline.save_pretrained(root / "flux")
    del pipeline
    judge = save_tiny_qwen(root / "judge", seed=0)
    conditions = write_default_conditions(root / "conditions")
    config = rl_config(root / "flux", judge, conditions, root / "run", lora_rank=None, algorithm="fixed").as_dict()
    path = root / "config.json"
    path.write_text(json.dumps(config))
    return path


def launch(tree: Path, config: Path, out: Path) -> list[dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(tree / "rl/core/accelerate/fsdp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
               "--main_process_port", str(port), str(ROOT / "bench" / "fsdp_memory.py"), "--worker", str(config),
               str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the run in {tree} failed:\n{done.stderr[-4000:]}")
    return [json.loads((out / f"process-{rank}.json").read_text()) for rank in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a commit measured beside this tree")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--single-layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0])
        worker(*args.worker)
        return
    work = Path(tempfile.mkdtemp(prefix="fsdp-memory-"))
    trees = {"this tree": ROOT}
    try:
        config = build_world(work, args.layers, args.single_layers, args.heads)
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=ROOT, check=True,
                           capture_output=True)
            trees[args.baseline] = tree
        results = {}
        for label, tree in trees.items():
            shutil.rmtree(work / "run", ignore_errors=True)
            results[label] = launch(tree, config, work / f"out-{len(results)}")
        parameters = results["this tree"][0]["parameters"]
        print(f"transformer: {parameters / 1e6:.0f}M parameters; 2 processes; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for label, processes in results.items():
            for rank, report in enumerate(processes):
                held = sum(report[g] for g in GROUPS)
                parts = ", ".join(f"{g} {report[g] / 2**20:.0f}" for g in GROUPS)
                print(f"  {label:>10} process {rank}: peak RSS {report['peak_rss'] / 2**20:,.0f} MiB; held "
                      f"{held / 2**20:,.0f} MiB ({parts}); sharded {report['sharded']}")
        if args.baseline:
            for rank in (0, 1):
                new, old = results["this tree"][rank], results[args.baseline][rank]
                held = sum(old[g] for g in GROUPS) / sum(new[g] for g in GROUPS)
                rss = old["peak_rss"] / new["peak_rss"]
                print(f"  process {rank}: {args.baseline} / this tree: peak RSS {rss:.2f}x, held {held:.2f}x")
    finally:
        if args.baseline and (work / "baseline").exists():
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "baseline")], cwd=ROOT,
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
