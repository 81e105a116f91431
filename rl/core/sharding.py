"""Full fine-tuning of the FLUX Fill transformer sharded over the processes (FSDP2), built so that no
process ever holds more than its share of the policy, its optimizer state, the EMA or the reference.

Per parameter of a 12B transformer, the trainer keeps float32 master weights (4 bytes), their
gradients (4), AdamW's two moments (8), the EMA (float32, 4) and, for Algorithm 1, the frozen
reference (bf16, 2): 22 bytes, about 250 GiB in all. Loading the pipeline whole in every process,
upcasting it and deep-copying the EMA and the reference before sharding puts about 136 GiB on every
GPU before the first step. Built here instead:

1. The main process reads the transformer's weights, on the host, in the dtype they are stored in
   (with the base generator's LoRAs fused in); every other process builds the same module on the
   meta device (no storage). The text encoders, the VAE and the judge load as before, on every
   process.
2. The policy is a fresh module on the meta device, sharded with torch's `fully_shard` (one FSDP
   unit per FLUX block, as the model's `_no_split_modules` names them, then the root), then given
   storage for its local shards only (`to_empty`). The main process sends each tensor, cast to the
   master dtype on its device, in dim-0 chunks (`scatter`, FSDP2's chunking: ceil(rows / P) rows
   per process, the last ones shorter); each process keeps its chunk. Peak: its shard plus one
   tensor in transit.
3. The EMA (float32) and the reference (the VAE's dtype) are sharded frozen modules of the same
   layout, whose local shards are copies of the policy's local shards: no gather, no whole copy.
4. AdamW's moments are made from the sharded parameters, hence sharded.

Checkpoints: each process writes its own local shards (policy, AdamW state, EMA) to
shard-R-of-P.pt in the checkpoint directory, next to what accelerate saves (the learning-rate
schedule, the random states); a resume reads them back with the same number of processes. The
deliverable is gathered one tensor at a time (`full_tensor`) and written by the main process.

The same code runs on GPUs (NCCL) and, for tests and benchmarks, on CPU processes (gloo): accelerate
refuses FSDP on CPU, so a multi-process CPU run that asks for it (ACCELERATE_USE_FSDP, set by
`accelerate launch --config_file rl/core/accelerate/fsdp.yaml`) is sharded here all the same.

Plain Python + torch + diffusers + accelerate: no Django.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate.utils import DistributedType

from generation.core.backends.flux_fill import FluxFillBackend, FluxFillConfig, _load_transformer

SHARD_FILE = "shard-{rank}-of-{world}.pt"


def fsdp_requested(accelerator) -> bool:
    """Whether the run is sharded: accelerate's FSDP, or a multi-process CPU run launched with an
    FSDP config (which accelerate runs as plain multi-CPU)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    return (accelerator.distributed_type == DistributedType.MULTI_CPU
            and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true")


def _dtype(settings: FluxFillConfig, device: torch.device) -> torch.dtype:
    # FluxFillBackend.from_config's reading of "auto".
    if settings.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, settings.dtype)


class _MetaTransformer:
    """`from_pretrained` that reads a transformer's config only and builds it on the meta device, so
    that the generator's own search for the transformer (a directory, a repository's subfolder or a
    hub id) finds the same config the main process loads."""

    @staticmethod
    def from_pretrained(location, subfolder=None, dtype=None, torch_dtype=None):
        from diffusers import FluxTransformer2DModel

        config = FluxTransformer2DModel.load_config(location, subfolder=subfolder)
        with torch.device("meta"):
            return FluxTransformer2DModel.from_config(config).to(dtype or torch_dtype)


def load_sharded_backend(settings: FluxFillConfig, main: bool) -> FluxFillBackend:
    """The base generator with its transformer kept off the device: on the main process loaded on
    the host, elsewhere on the meta device; every other component on the process's device."""
    from diffusers import FluxTransformer2DModel

    device = torch.device(settings.device)
    model_class = FluxTransformer2DModel if main else _MetaTransformer
    location = settings.transformer or settings.base
    transformer = _load_transformer(model_class, location, _dtype(settings, device))
    return FluxFillBackend.from_config(settings, transformer=transformer)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The part of a (possibly sharded) tensor this process holds."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def held_bytes(tensors) -> int:
    """Bytes of storage behind the local parts of `tensors`, each storage counted once: what a
    process really holds for them (FSDP pads each local shard to the chunk size)."""
    seen, total = set(), 0
    for tensor in tensors:
        storage = local(tensor).untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


class ShardedTransformer:
    """Builds the sharded policy and its frozen copies over all processes (module docstring).

    compute_dtype: what the blocks compute in (the parameters are cast to it when gathered:
    bf16 under mixed precision), None for their own dtype."""

    def __init__(self, accelerator, compute_dtype: torch.dtype | None):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy

        self.accelerator = accelerator
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.mesh = init_device_mesh(self.device.type, (self.world,))
        self.precision = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        self.model_class = self.config = None

    def _meta_module(self, dtype: torch.dtype, trainable: bool):
        from torch.distributed.fsdp import fully_shard

        with torch.device("meta"):
            module = self.model_class.from_config(self.config).to(dtype)
        module.requires_grad_(trainable)
        units = set(getattr(module, "_no_split_modules", None) or ())
        for child in list(module.modules())[1:]:
            if type(child).__name__ in units:
                fully_shard(child, mesh=self.mesh, mp_policy=self.precision, reshard_after_forward=True)
        fully_shard(module, mesh=self.mesh, mp_policy=self.precision, reshard_after_forward=True)
        module.to_empty(device=self.device)
        return module

    def policy(self, source, dtype: torch.dtype):
        """The trainable policy in `dtype`, sharded, from `source` (the loaded transformer on the
        main process, its meta twin elsewhere); `source` is not needed afterwards."""
        self.model_class, self.config = type(source), source.config
        module = self._meta_module(dtype, trainable=True)
        weights = dict(source.named_parameters()) if self.accelerator.is_main_process else {}
        buffers = dict(source.named_buffers()) if self.accelerator.is_main_process else {}
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                self._receive(local(parameter), weights.get(name), parameter.shape)
            for name, buffer in module.named_buffers():
                self._receive(buffer, buffers.get(name), None)
        return module

    def _receive(self, target: torch.Tensor, full: torch.Tensor | None, shape) -> None:
        """Fill this process's chunk `target` of a tensor of `shape` (None: replicated) that the
        main process holds whole as `full`."""
        main = self.accelerator.is_main_process
        if main:
            full = full.detach().to(self.device, target.dtype)
        if shape is None or self.world == 1:
            if not main:
                full = torch.empty_like(target)
            dist.broadcast(full, src=0)
            target.copy_(full)
            return
        rows = math.ceil(shape[0] / self.world)
        expected = max(0, min(rows, shape[0] - self.rank * rows))
        if target.shape[0] != expected:
            raise RuntimeError(f"FSDP holds {target.shape[0]} rows of a {tuple(shape)} tensor on process "
                               f"{self.rank}, the chunking here expects {expected}")
        chunk = torch.empty((rows, *shape[1:]), dtype=target.dtype, device=self.device)
        chunks = None
        if main:
            padded = torch.zeros((rows * self.world, *shape[1:]), dtype=target.dtype, device=self.device)
            padded[:shape[0]] = full
            chunks = list(padded.split(rows))
        dist.scatter(chunk, chunks, src=0)
        target.copy_(chunk[:expected])

    def frozen_copy(self, policy, dtype: torch.dtype):
        """A frozen module of the policy's layout whose local shards are copies of the policy's,
        in `dtype`."""
        module = self._meta_module(dtype, trainable=False)
        own = dict(policy.named_parameters())
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                mine, theirs = local(parameter), local(own[name])
                if mine.shape != theirs.shape:
                    raise RuntimeError(f"{name}: shards of {tuple(mine.shape)} and {tuple(theirs.shape)}")
                mine.copy_(theirs)
            for (_, buffer), (_, theirs) in zip(module.named_buffers(), policy.named_buffers()):
                buffer.copy_(theirs)
        module.eval()
        return module

    # -- saving ---------------------------------------------------------------------------------------

    def gathered(self, module, dtype: torch.dtype) -> dict | None:
        """The whole state dict of a sharded module in `dtype` on the host of the main process
        (None elsewhere), gathered one tensor at a time."""
        from torch.distributed.tensor import DTensor

        weights = {} if self.accelerator.is_main_process else None
        with torch.no_grad():
            for name, tensor in module.state_dict().items():
                full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
                if weights is not None:
                    weights[name] = full.detach().to("cpu", dtype).clone()
                del full
        return weights

    def save_pretrained(self, module, dtype: torch.dtype, directory: Path) -> None:
        """Write a sharded module as a diffusers model folder (main process; called on all)."""
        weights = self.gathered(module, dtype)
        if weights is not None:
            with torch.device("meta"):
                fresh = self.model_class.from_config(self.config)
            fresh.load_state_dict(weights, assign=True)
            fresh.save_pretrained(directory)

    def save_state(self, directory: Path, trainable: list, optimizer, ema) -> None:
        """This process's local shards of the policy, its AdamW state and the EMA, in one file."""
        payload = {
            "policy": {name: local(p).detach().cpu().clone() for name, p in trainable},
            "ema": {name: local(ema.shadow[name]).detach().cpu().clone() for name in ema.names},
            "optimizer": _local_state(optimizer.state_dict()),
        }
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / SHARD_FILE.format(rank=self.rank, world=self.world)
        partial = path.with_name(f"{path.name}.partial")
        torch.save(payload, partial)
        partial.replace(path)

    def load_state(self, directory: Path, trainable: list, optimizer, ema) -> None:
        path = directory / SHARD_FILE.format(rank=self.rank, world=self.world)
        if not path.is_file():
            written = sorted(p.name for p in directory.glob("shard-*-of-*.pt"))
            raise ValueError(f"{directory} has no {path.name}: it was written by another number of processes "
                             f"({', '.join(written) or 'no shard files'}); resume with as many as wrote it")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for name, parameter in trainable:
                local(parameter).copy_(payload["policy"][name])
            for name in ema.names:
                local(ema.shadow[name]).copy_(payload["ema"][name])
        optimizer.load_state_dict(payload["optimizer"])
        _shard_state(optimizer)


def _local_state(state: dict) -> dict:
    """An optimizer state dict with every sharded tensor replaced by its local part."""
    return {**state, "state": {key: {name: local(value).detach().cpu().clone() if torch.is_tensor(value) else value
                                     for name, value in entry.items()}
                               for key, entry in state["state"].items()}}


def _shard_state(optimizer) -> None:
    """After load_state_dict from local parts: make the moments of sharded parameters sharded
    again, laid out as their parameter."""
    from torch.distributed.tensor import DTensor

    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if not isinstance(parameter, DTensor):
                continue
            entry = optimizer.state.get(parameter, {})
            for name, value in entry.items():
                if torch.is_tensor(value) and not isinstance(value, DTensor) and name != "step":
                    entry[name] = DTensor.from_local(value.to(parameter.device), parameter.device_mesh,
                                                     parameter.placements, run_check=False, shape=parameter.shape,
                                                     stride=parameter.stride())
