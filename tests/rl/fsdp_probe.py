"""Run a trainer from a config file and report, per process, the bytes of storage it really holds
for the policy's parameters, AdamW's state, the EMA and the reference (the local shards under FSDP,
whole tensors otherwise), next to the whole tensors' bytes.

    accelerate launch --config_file rl/core/accelerate/fsdp.yaml ... -m tests.rl.fsdp_probe CONFIG OUT_DIR

Writes OUT_DIR/held-<process index>.json after train() returns (a stop_at_step run stops after
its checkpoint, with the optimizer state made).
"""
import json
import sys
from pathlib import Path

import torch

from rl.core.config import OneRewardConfig
from rl.core.onereward import OneRewardTrainer


def storage_bytes(tensors) -> int:
    """Bytes of the storages behind the tensors this process holds, each counted once."""
    from torch.distributed.tensor import DTensor

    seen, total = set(), 0
    for tensor in tensors:
        held = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        storage = held.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def whole_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def row_bytes(tensors) -> int:
    """One dim-0 row of each tensor: what dim-0 chunking over P processes can add to total / P."""
    return sum((t.numel() // t.shape[0] if t.dim() else 1) * t.element_size() for t in tensors)


def main(config_path: str, out_dir: str) -> None:
    config = OneRewardConfig.from_dict(json.loads(Path(config_path).read_text()))
    run = OneRewardTrainer(config)
    run.train()
    groups = {
        "policy": [p for p in run.transformer.parameters()],
        "optimizer": [v for state in run.optimizer.state.values() for v in state.values() if torch.is_tensor(v)],
        "ema": [p for p in run.ema_module.parameters()],
        "reference": [p for p in run.reference_module.parameters()] if run.reference_module is not None else [],
    }
    report = {"processes": run.accelerator.num_processes, "sharded": run.sharded}
    for name, tensors in groups.items():
        report[name] = {"held": storage_bytes(tensors), "whole": whole_bytes(tensors), "rows": row_bytes(tensors),
                        "tensors": len(tensors)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"held-{run.accelerator.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
