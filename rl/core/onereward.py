"""OneReward RL of a FLUX.1 Fill policy against a pairwise judge (METHOD.md §4-§5).

Flow matching in diffusers' convention: x_t = (1 - s) x_0 + s e, velocity v = e - x_0, so from any
step the one-call clean prediction is x0_hat = x_t - s_t * v_theta(x_t, s_t, c).

One step (global batch of `batch_size` conditions, split over the processes):

    for each condition c (task k ~ Categorical(p), then an input of k's pool; rl/core/conditions.py):
        two noises e1, e2 (seeds), a stop index t = floor(u * steps), u ~ U[t1, t2]
        x_ref   = decode(full sampling of the REFERENCE from e1 given c)          # no grad
        x_t     = POLICY sampling from e2 down to step t                          # no grad
        x_theta = decode(x_t - s_t * v_theta(x_t, s_t, c))                        # grad: one call
        P_e     = P_judge(Yes | first = x_theta, second = x_ref, q_e)  for each dimension e of k
        loss_c  = mean_e max(0, lambda - P_e)
    loss = mean_c loss_c ; backward ; clip ; AdamW on the trainable weights only
    ema <- tau * ema + (1 - tau) * policy

- algorithm "fixed" (Algorithm 1): the reference is the starting policy, frozen. With LoRA it is the
  transformer with the adapter disabled (the base weights exactly); with full fine-tuning a frozen
  copy. The EMA of the policy is kept as the deliverable.
- algorithm "dynamic" (Algorithm 2): the reference is the EMA itself, updated after every step. With
  LoRA the EMA holds the adapter weights only and is swapped into the adapter for the reference
  rollout: one copy of the transformer in memory.
- Decoding: the frozen VAE, differentiable on the policy branch, the padding strip cropped, so the
  judge sees images in [0, 1] of the input's size. The judge sees them as annotators saw the
  candidates it learned from: with the unmasked area taken from the source (blend by the binarised
  mask; gradients then flow through the masked area only) when the base generator delivers its
  candidates that way, whole decodes otherwise (`composite_source`, null by default: the base
  generator's own setting).
- The judge is frozen; its preprocessing is differentiable (rewardmodel/preprocessing.py), so
  gradients reach the policy through judge -> VAE decoder -> the one transformer call.

Randomness: a step's conditions, seeds and stop indices come from numpy's generator seeded with
(seed, step), and each noise from a CPU torch generator seeded as FluxFillBackend seeds a candidate,
so Algorithm 1's reference rollout of seed s is the base generator's candidate of seed s (before
compositing), and a resumed run draws exactly what the uninterrupted one drew.

Processes: sample i of the global batch runs on process i % P; the stop index is shared by the P
samples of a "slot" (i // P), so every process makes the same number of transformer calls (needed
under FSDP). Without FSDP the transformer is not wrapped in DDP: the gradients (LoRA: a few MB) are
summed over the processes once per step, after the per-sample backward passes.

Outputs in output_dir: checkpoints/step-N (+ checkpoints/latest), metrics.jsonl, tensorboard/,
progress.json, config.resolved.json, policy/ (the EMA policy), result.json, evaluation.json (when
eval_inputs is set).

Plain Python + torch + diffusers + accelerate: no Django.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import logging
import math
import os
import time
import types
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import gather_object, set_seed

from generation.core.backends.flux_fill import (
    Canvas,
    FluxFillBackend,
    FluxFillConfig,
    TextConditioning,
    uses_true_cfg,
)
from mlcore.rundir import RunDirectory, check_resumable, write_json_atomic
from rewardmodel.core.judge import Judge

from .conditions import Condition, ConditionPool
from .config import TRAJECTORY_FIELDS, ConfigError, OneRewardConfig
from .evaluate import evaluate_policy
from .sharding import ShardedTransformer, fsdp_requested, load_sharded_backend

log = logging.getLogger(__name__)

POLICY_DIR = "policy"
LORA_FILE = "pytorch_lora_weights.safetensors"
POLICY_LORA_NAME = "onereward_policy"


TEXT_CACHE_SIZE = 1024  # encoded prompts kept on the host


def pool_seed(seed: int, condition: Condition, member: int) -> int:
    """The noise seed of reference-pool member `member` of a condition: fixed by the run's seed."""
    digest = hashlib.sha256(f"{seed}:{condition.task}:{condition.id}:{member}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def device_setting(device) -> str:
    """A torch device as FluxFillConfig's device setting ("cpu", "cuda", "cuda:N")."""
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    return f"{device.type}:{device.index}" if device.index is not None else device.type


def resolve_mixed_precision(value: str) -> str:
    if value == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return value


def predict_clean(latents: "torch.Tensor", v: "torch.Tensor", sigma) -> "torch.Tensor":
    """x0_hat = x_t - s_t * v (float32), latents and v (B, S, 4C): the clean latents that one Euler
    step from sigma s_t to 0 gives."""

    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device)
    return latents.float() - sigma * v.float()


# --- the EMA ------------------------------------------------------------------------------------------------


class ExponentialMovingAverage:
    """shadow <- decay * shadow + (1 - decay) * weights, per named tensor, after every step.

    named: [(name, parameter)] of the trained weights. shadow: {name: tensor} to update in place
    (a full-fine-tuning EMA is a module copy, whose parameters are passed here); by default float32
    copies of the weights (the LoRA case: a few MB).
    """

    def __init__(self, named: list, decay: float, shadow: dict | None = None):
        self.decay = float(decay)
        self.names = [name for name, _ in named]
        if shadow is None:
            shadow = {name: p.detach().to(torch.float32).clone() for name, p in named}
        missing = [name for name in self.names if name not in shadow]
        if missing:
            raise ValueError(f"the EMA has no tensor for {missing[0]!r}")
        self.shadow = shadow

    def update(self, named: list) -> None:
        with torch.no_grad():
            for name, parameter in named:
                average = self.shadow[name]
                average.mul_(self.decay).add_(parameter.detach().to(average.dtype), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def applied_to(self, named: list):
        """The weights hold the EMA inside the block and get their own values back after it."""
        with torch.no_grad():
            kept = [p.detach().clone() for _, p in named]
            for name, parameter in named:
                parameter.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, parameter), value in zip(named, kept):
                    parameter.copy_(value)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {name: self.shadow[name].detach().cpu() for name in self.names}}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name in self.names:
                self.shadow[name].copy_(state["shadow"][name])


class _TrainableWeights:
    """The trained weights as a checkpoint object (accelerate's register_for_checkpointing)."""

    def __init__(self, named: list):
        self.named = named

    def state_dict(self) -> dict:
        return {name: p.detach().cpu().clone() for name, p in self.named}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, parameter in self.named:
                parameter.copy_(state[name])


# --- the trainer ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One condition of a step: its input, the seeds of the two noises (e1: reference, e2: policy),
    the policy's stop index t, and its place in the global batch."""

    index: int
    condition: Condition
    reference_seed: int
    policy_seed: int
    stop: int


class OneRewardTrainer:
    """Algorithms 1 and 2 (see the module docstring). `train()` runs to config.max_steps (or
    stop_at_step); `step()` makes one optimisation step and returns its per-sample records.

    backend / judge: already loaded components to use instead of loading them from the config
    (benchmarks build full-size models in memory); pool: a ConditionPool.
    """

    def __init__(self, config: OneRewardConfig, *, backend=None, judge=None, pool: ConditionPool | None = None):
        self.config = config
        self.pool = pool if pool is not None else config.check_inputs()
        self.probabilities = self.pool.probabilities(config.task_probabilities)
        self.output = Path(config.output_dir)
        self.run_dir = RunDirectory(self.output)

        # Processes started by `accelerate launch --multi_gpu` on a host without CUDA: gloo on CPU.
        cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        state = PartialState(cpu=cpu)
        if config.batch_size % state.num_processes:
            raise ConfigError("batch_size", f"{config.batch_size} conditions cannot be split evenly over "
                                            f"{state.num_processes} processes")
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=resolve_mixed_precision(config.mixed_precision))
        self.sharded = fsdp_requested(self.accelerator)
        if self.sharded and config.lora_rank is not None:
            raise ConfigError("lora_rank", "FSDP is for full fine-tuning (lora_rank null); a LoRA policy trains "
                                           "with DDP")
        self.sharding = None  # FSDP: the builder of the sharded policy, EMA and reference (rl/core/sharding.py)
        if self.sharded:
            self._check_sharded_options()
        self.main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.rollout = config.rollout

        # 1. Models. The policy is the pipeline's transformer; everything else is frozen.
        self.backend = backend if backend is not None else self._load_backend()
        self.pipeline = self.backend.pipeline
        pipe = self.pipeline
        for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.transformer):
            module.requires_grad_(False)
        # Judge what annotators judged: the base generator's own delivery unless the config says.
        self.composite_source = (config.composite_source if config.composite_source is not None
                                 else self.backend.config.composite_source)
        self.judge = judge if judge is not None else self._load_judge()
        self.judge.requires_grad_(False)
        self._check_queries()
        self.transformer = self.pipeline.transformer
        set_seed(config.seed)  # the adapter's random initialisation
        self._make_policy()
        # Full fine-tuning: the EMA is a module copy whose parameters are the averages, and
        # Algorithm 1 keeps a frozen copy of the starting weights as its reference. With LoRA the
        # policy's own transformer serves as the reference (adapter disabled, or the EMA swapped in).
        self.ema_module = self.reference_module = None
        if config.lora_rank is None:
            self.ema_module = self._frozen_copy(self.transformer, torch.float32)
            if config.algorithm == "fixed":
                self.reference_module = self._frozen_copy(self.transformer, self.pipeline.vae.dtype)

        # 2. Optimizer (AdamW on the trainable weights only), linear warmup then constant.
        trainable = [p for p in self.transformer.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("lora_targets", "the policy has no trainable weight (check lora_targets against the "
                                              "transformer)")
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = config.warmup_steps
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)) if warmup else 1.0)
        if not self.sharded:
            # FSDP: the policy and the copies were built sharded, AdamW's state is made from the
            # sharded parameters, and the checkpoints write each process's shards themselves.
            self.optimizer = self.accelerator.prepare(self.optimizer)
        self.accelerator.register_for_checkpointing(self.lr_schedule)
        self.trainable = [(name, p) for name, p in self.transformer.named_parameters() if p.requires_grad]

        # 3. The EMA and the reference.
        self._reference_backend = None  # full fine-tuning: a backend calling the reference module
        if config.lora_rank is not None:
            self.ema = ExponentialMovingAverage(self.trainable, config.ema_decay)
        else:
            self.ema = ExponentialMovingAverage(self.trainable, config.ema_decay,
                                                shadow=dict(self.ema_module.named_parameters()))
            reference = self.reference_module if config.algorithm == "fixed" else self.ema_module
            self._reference_backend = FluxFillBackend(types.SimpleNamespace(transformer=reference),
                                                      self.backend.config)
        if not self.sharded:
            # Sharded, the EMA and the policy are prepared models: save_state has them already.
            self.accelerator.register_for_checkpointing(_TrainableWeights(self.trainable))
            self.accelerator.register_for_checkpointing(self.ema)
        self._text_cache: OrderedDict = OrderedDict()
        self.text_encoders_offloaded = self._encode_pool_prompts()
        self.step_count = 0
        if config.compile:
            self._compile_policy()

    # -- building ------------------------------------------------------------------------------------

    def _load_backend(self):
        settings = FluxFillConfig.from_dict({**self.config.base_generator, "device": device_setting(self.device)})
        if self.sharded:
            backend = load_sharded_backend(settings, self.main)  # the transformer read by the main process only
        else:
            backend = FluxFillBackend.from_config(settings)
        if settings.loras:
            # The base's own LoRAs become part of the weights the policy starts from, so that
            # "adapter disabled" means the base generator and only the policy's adapter trains.
            pipe = backend.pipeline
            names = [lora.name for lora in settings.loras]
            components = ["transformer"] + (["text_encoder"] if hasattr(pipe.text_encoder, "peft_config") else [])
            pipe.fuse_lora(components=components, adapter_names=names)
            pipe.unload_lora_weights()
        return backend

    def _load_judge(self):
        judge = Judge.from_pretrained(self.config.judge, dtype=self.config.judge_dtype, device=self.device,
                                      gradient_checkpointing=self.config.gradient_checkpointing,
                                      attn_implementation=self.config.judge_attention)
        judge.eval()
        if self.config.gradient_checkpointing:
            _activate_judge_checkpointing(judge)
        return judge

    def _check_sharded_options(self) -> None:
        if self.accelerator.mixed_precision == "fp16":
            raise ConfigError("mixed_precision", "FSDP full fine-tuning computes in bf16 or float32: fp16 would need "
                                                 "a gradient scaler over the sharded gradients")
        if self.config.reference_pool:
            # Under FSDP every process must make the same transformer calls; a pool member missing
            # on one process only would be a reference rollout the others do not join.
            raise ConfigError("reference_pool", "a reference pool cannot be used with FSDP (its members are made "
                                                "where they are first needed, on one process)")

    def _check_queries(self) -> None:
        """Every (input, dimension) of the pool can be put to the judge (template version, prompts)."""
        for condition in self.pool.inputs:
            for dimension in self.pool.dimensions(condition):
                try:
                    self.judge.query(self.pool.taxonomy, condition.task, dimension, condition.prompt)
                except (KeyError, ValueError) as exc:
                    raise ConfigError("conditions_dir",
                                      f"input {condition.id}, dimension {dimension}: {exc}") from None

    def _make_policy(self) -> None:
        config, transformer = self.config, self.transformer
        if config.lora_rank is not None:
            from peft import LoraConfig

            transformer.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank,
                                               init_lora_weights=True, target_modules=list(config.lora_targets)))
            # B = 0 at the start: the policy is the base exactly. Adapter weights train in float32
            # whatever the base's dtype (autocast computes in bf16).
            for parameter in transformer.parameters():
                if parameter.requires_grad:
                    parameter.data = parameter.data.to(torch.float32)
        elif self.sharded:
            # Built sharded from the loaded weights: float32 master shards under mixed precision.
            compute = torch.bfloat16 if self.accelerator.mixed_precision == "bf16" else None
            dtype = torch.float32 if compute is not None else next(transformer.parameters()).dtype
            self.sharding = ShardedTransformer(self.accelerator, compute)
            transformer = self.transformer = self.pipeline.transformer = self.sharding.policy(transformer, dtype)
            gc.collect()  # the main process's whole copy goes
        else:
            if self.accelerator.mixed_precision != "no":
                transformer.to(torch.float32)  # float32 master weights, bf16/fp16 compute under autocast
            transformer.requires_grad_(True)
        if config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
            self.pipeline.vae.enable_gradient_checkpointing()
        transformer.train()

    def _frozen_copy(self, module, dtype):
        if self.sharded:
            return self.sharding.frozen_copy(module, dtype)  # copies of this process's shards
        copied = copy.deepcopy(module)
        if next(copied.parameters()).dtype != dtype:
            copied.to(dtype)
        copied.requires_grad_(False)
        copied.eval()
        copied.disable_gradient_checkpointing()
        return copied

    def _compile_policy(self) -> None:
        """torch.compile the policy transformer in place (nn.Module.compile): the pipeline, the
        adapter switches, the optimizer and the checkpoints keep the same module and parameter
        names. Batch sizes change within a step (samples stop at their own step, the CFG rows), so
        the batch dimension becomes dynamic after the first recompilation instead of one graph per
        size; the adapter switched off for Algorithm 1's reference is one more graph."""
        self.transformer.compile()

    # -- one step ------------------------------------------------------------------------------------

    def plan(self, step: int) -> list[Sample]:
        """The global batch of `step` (1-based), drawn from (seed, step) alone."""
        config = self.config
        processes = self.accelerator.num_processes
        rng = np.random.default_rng([config.seed, step])
        conditions = self.pool.sample(rng, self.probabilities, config.batch_size)
        seeds = rng.integers(0, 2**63 - 1, size=(config.batch_size, 2), dtype=np.int64)
        t1, t2 = config.t_range
        steps = self.rollout.steps
        fractions = rng.uniform(t1, t2, size=config.batch_size // processes)
        stops = [min(steps - 1, int(math.floor(u * steps))) for u in fractions]
        return [Sample(index=i, condition=conditions[i], reference_seed=int(seeds[i, 0]), policy_seed=int(seeds[i, 1]),
                       stop=stops[i // processes]) for i in range(config.batch_size)]

    def step(self) -> dict:
        """One optimisation step; returns {"loss", "grad_norm", "lr", "records"} where records are
        every sample's {"index", "task", "dimensions", "rewards", "loss"} over all processes."""
        config, accelerator = self.config, self.accelerator
        step = self.step_count + 1
        records = self.accumulate(self.plan(step))
        if not self.sharded and accelerator.num_processes > 1:
            self._sum_gradients()
        parameters = [p for _, p in self.trainable]
        grad_norm = accelerator.clip_grad_norm_(parameters, config.gradient_clip if config.gradient_clip else math.inf)
        lr = self.lr_schedule.get_last_lr()[0]
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.trainable)
        self.step_count = step
        records = sorted(gather_object(records), key=lambda r: r["index"])
        return {"loss": sum(r["loss"] for r in records) / len(records), "grad_norm": float(grad_norm), "lr": lr,
                "records": records}

    def accumulate(self, samples: list[Sample]) -> list[dict]:
        """Forward and backward passes of this process's share of the global batch `samples`, one
        micro-batch at a time, the gradients adding up in .grad; returns this process's records."""
        accelerator = self.accelerator
        # The step's loss is the mean over the global batch: without FSDP the gradients are summed
        # over the processes afterwards; FSDP averages them, hence the factor.
        scale = (accelerator.num_processes if self.sharded else 1) / self.config.batch_size
        records = []
        for micro in self.micro_batches(samples):
            losses, micro_records = self.micro_batch_loss(micro)
            accelerator.backward(losses.sum() * scale)
            records.extend(micro_records)
        return records

    def micro_batches(self, samples: list[Sample]) -> list[list[Sample]]:
        """This process's samples of the global batch, in micro-batches of at most micro_batch.

        Samples run together when their canvases have the same padded size: then they share the
        token layout, the schedule (its shift depends on the sequence length) and the latent
        positions, and their rollouts stack into one batch with no padding of tokens; their stop
        indices may differ (denoise_to runs each to its own). Canvases of other sizes go to other
        micro-batches rather than being padded to a common size, which would need attention masks
        in the transformer and change what a sample's pixels depend on.

        The grouping is of slots (the i // P of a sample, which fixes its stop), decided from the
        global batch that every process draws alike: a slot's key is the canvas sizes of all its P
        samples, so every process cuts the same slots into the same micro-batches and makes the
        same transformer calls with the same batch sizes (needed under FSDP)."""
        processes, index = self.accelerator.num_processes, self.accelerator.process_index
        groups: dict[tuple, list[Sample]] = {}
        for start in range(0, len(samples), processes):
            slot = samples[start:start + processes]
            key = tuple(self._canvas_size(sample.condition) for sample in slot)
            groups.setdefault(key, []).append(slot[index])
        size = self.config.micro_batch
        return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]

    def _canvas_size(self, condition: Condition) -> tuple[int, int]:
        """(width, height) of a condition's canvas once padded for FLUX (from the file's header)."""
        from PIL import Image

        multiple = self.pipeline.vae_scale_factor * 2
        with Image.open(condition.source) as image:
            width, height = image.size
        return -(-width // multiple) * multiple, -(-height // multiple) * multiple

    def sample_loss(self, sample: Sample) -> tuple["torch.Tensor", dict]:
        """The loss of one condition (with its graph to the policy's weights) and its record."""
        losses, [record] = self.micro_batch_loss([sample])
        return losses[0], record

    def micro_batch_loss(self, samples: list[Sample]) -> tuple["torch.Tensor", list[dict]]:
        """The losses (m,) of m samples whose canvases have the same padded size, with their graph to
        the policy's weights, and their records: the reference images, the policy's rollouts (each to
        its stop) and its one call with gradient batched, decoded one by one, judged in one call."""
        backend = self.backend
        conditions = [sample.condition for sample in samples]
        canvases = self._canvases(conditions)
        text = self.texts([self.pool.prompt(condition) for condition in conditions])
        stops = [sample.stop for sample in samples]
        # The canvases have one padded size, so one schedule and one set of latent positions serve all.
        canvas = canvases[0]
        with torch.no_grad():
            reference_images = self.reference_images(samples, canvases, text)
            scheduler, timesteps, latents, conditioning = self.start_batch(canvases, [s.policy_seed for s in samples])
            with self.accelerator.autocast():
                latents = backend.denoise_to(scheduler, timesteps, latents, conditioning, text, canvas, stops)
        rows = torch.tensor(stops, dtype=torch.long)
        with self.accelerator.autocast():
            v = backend.predict_velocity(latents, conditioning, timesteps[rows.to(timesteps.device)], text, canvas)
        clean = predict_clean(latents, v, scheduler.sigmas[rows.to(scheduler.sigmas.device)].view(-1, 1, 1))
        with self.accelerator.autocast():
            policy_images = [self.decode(canvases[i], clean[i:i + 1]) for i in range(len(samples))]
            rewards = self.batch_rewards(policy_images, reference_images, conditions)
        losses, records = [], []
        for sample, reward in zip(samples, rewards):
            loss = torch.relu(self.config.reward_cap - reward).mean()
            losses.append(loss)
            records.append({"index": sample.index, "task": sample.condition.task, "input": sample.condition.id,
                            "stop": sample.stop, "dimensions": self.pool.dimensions(sample.condition),
                            "rewards": reward.detach().float().cpu().tolist(), "loss": float(loss.detach())})
        return torch.stack(losses), records

    def _canvases(self, conditions: list[Condition]) -> list[Canvas]:
        """The prepared canvas of each condition; a condition drawn twice shares one (the VAE
        encodes it once: preparing a canvas is deterministic)."""
        prepared: dict[tuple, Canvas] = {}
        canvases = []
        for condition in conditions:
            key = (condition.task, condition.id)
            if key not in prepared:
                image, mask = condition.load()
                prepared[key] = self.backend.prepare_canvas(image, mask)
            canvases.append(prepared[key])
        return canvases

    def start(self, canvas: Canvas, seed: int) -> tuple:
        """(scheduler, timesteps, packed noise (1, S, 4C), Fill conditioning (1, S, 4C + 4s^2)) of
        one rollout: the base generator's draws for a candidate of this seed at strength 1."""
        return self.start_batch([canvas], [seed])

    def start_batch(self, canvases: list[Canvas], seeds: list[int]) -> tuple:
        """start() for m rollouts on canvases of one padded size: one scheduler, latents and
        conditioning (m, ...) stacked, each row drawn from its own seed as a batch of one draws it."""
        scheduler, timesteps = self.backend.prepare_timesteps(canvases[0], self.rollout.steps)
        latents, conditioning = [], []
        for canvas, seed in zip(canvases, seeds):
            generators = [torch.Generator("cpu").manual_seed(int(seed))]
            latents.append(self.backend.prepare_latents(canvas, generators, scheduler, timesteps[:1]))
            conditioning.append(self.backend.prepare_mask_latents(canvas, generators))
        return scheduler, timesteps, torch.cat(latents), torch.cat(conditioning)

    def decode(self, canvas: Canvas, latents: "torch.Tensor") -> "torch.Tensor":
        """Packed latents (1, S, 4C) -> the image the judge sees, float32 (3, H, W) in [0, 1],
        differentiable: with composite_source the unmasked area is the source's."""
        image = self.backend.decode_latents(latents, canvas)
        return (canvas.composite(image) if self.composite_source else image)[0]

    def reference_rollout(self, canvas: Canvas, text: TextConditioning, seed: int) -> "torch.Tensor":
        """The reference's full sampling from the noise of `seed`, decoded: (3, H, W) in [0, 1]."""
        with torch.no_grad(), self.accelerator.autocast():
            return self.decode(canvas, self.reference_latents(canvas, text, seed))

    def prepare_reference_pool(self) -> int:
        """Make every member of the reference pool ahead (each process its share of the conditions;
        members already in the run directory are kept), micro_batch members per batched rollout;
        returns how many this process made."""
        made = 0
        processes, index = self.accelerator.num_processes, self.accelerator.process_index
        size = self.config.micro_batch
        for number, condition in enumerate(self.pool.inputs):
            if number % processes != index:
                continue
            missing = [m for m in range(self.config.reference_pool) if not self._pool_path(condition, m).is_file()]
            if not missing:
                continue
            [canvas] = self._canvases([condition])
            for start in range(0, len(missing), size):
                members = missing[start:start + size]
                text = self.texts([self.pool.prompt(condition)] * len(members))
                self._make_pool_members([condition] * len(members), [canvas] * len(members), text, members)
                made += len(members)
        self.accelerator.wait_for_everyone()
        return made

    def reference_latents(self, canvas: Canvas, text: TextConditioning, seed: int) -> "torch.Tensor":
        """The reference's full sampling from the noise of `seed`: packed latents (1, S, 4C)."""
        return self.reference_latents_batch([canvas], text, [seed])

    def reference_latents_batch(self, canvases: list[Canvas], text: TextConditioning,
                                seeds: list[int]) -> "torch.Tensor":
        """The reference's full samplings of m rollouts on canvases of one padded size, batched
        (text: their m samples' text inputs): packed latents (m, S, 4C)."""
        with torch.no_grad(), self.reference() as backend, self.accelerator.autocast():
            scheduler, timesteps, latents, conditioning = self.start_batch(canvases, seeds)
            return backend.denoise(scheduler, timesteps, latents, conditioning, text, canvases[0])

    def reference_image(self, condition: Condition, canvas: Canvas, text: TextConditioning,
                        seed: int) -> "torch.Tensor":
        """The reference image of a sample. Without a pool: a fresh full rollout from `seed`. With a
        pool of K (Algorithm 1 only): the reference never changes, so the image of (condition, noise)
        is always the same; the sample takes pool member k = seed mod K, whose latents are sampled
        once, from a noise fixed by (run seed, condition, k), and kept in the run directory (a
        resumed run finds them). Each member is a draw from the same reference distribution as a
        fresh rollout, so the expected loss is the same; only its variance differs (K draws per
        condition instead of new ones)."""
        sample = Sample(index=0, condition=condition, reference_seed=seed, policy_seed=seed, stop=0)
        return self.reference_images([sample], [canvas], text)[0]

    def reference_images(self, samples: list[Sample], canvases: list[Canvas],
                         text: TextConditioning) -> list["torch.Tensor"]:
        """reference_image of m samples on canvases of one padded size (text: their text inputs):
        the fresh rollouts, or the pool members still missing, sampled in one batch; (3, H, W) each."""
        size = self.config.reference_pool
        if not size:
            latents = self.reference_latents_batch(canvases, text, [s.reference_seed for s in samples])
            latents = list(latents.split(1))
        else:
            members = [s.reference_seed % size for s in samples]
            first: dict[tuple, int] = {}  # (condition, member) -> the first sample drawing it
            for row, (sample, member) in enumerate(zip(samples, members)):
                first.setdefault((sample.condition, member), row)
            missing = [row for (condition, member), row in first.items()
                       if not self._pool_path(condition, member).is_file()]
            if missing:
                self._make_pool_members([samples[row].condition for row in missing],
                                        [canvases[row] for row in missing], text.select(missing),
                                        [members[row] for row in missing])
            latents = [self._pooled_latents(s.condition, member).to(self.device)
                       for s, member in zip(samples, members)]
        with torch.no_grad(), self.accelerator.autocast():
            return [self.decode(canvas, row) for canvas, row in zip(canvases, latents)]

    def _pool_path(self, condition: Condition, member: int) -> Path:
        return self.output / "reference_pool" / f"{condition.task}-{condition.id}-{member}.pt"

    def _pooled_latents(self, condition: Condition, member: int) -> "torch.Tensor":
        return torch.load(self._pool_path(condition, member), map_location="cpu", weights_only=True)

    def _make_pool_members(self, conditions: list[Condition], canvases: list[Canvas], text: TextConditioning,
                           members: list[int]) -> None:
        """Sample pool members (condition i, member i) in one batched reference rollout and keep
        each one's latents (1, S, 4C) in the run directory."""
        seeds = [pool_seed(self.config.seed, condition, member) for condition, member in zip(conditions, members)]
        latents = self.reference_latents_batch(canvases, text, seeds).cpu()
        for condition, member, row in zip(conditions, members, latents.split(1)):
            path = self._pool_path(condition, member)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            torch.save(row.clone(), partial)
            partial.replace(path)  # atomic: two processes making the same member leave one file

    @contextlib.contextmanager
    def reference(self):
        """A backend whose transformer is the reference inside the block (Algorithm 1: the start
        weights; Algorithm 2: the EMA)."""
        if self.config.lora_rank is None:
            yield self._reference_backend
        elif self.config.algorithm == "fixed":
            self.transformer.disable_adapters()
            try:
                yield self.backend
            finally:
                self.transformer.enable_adapters()
        else:
            with self.ema.applied_to(self.trainable):
                yield self.backend

    def batch_rewards(self, firsts: list["torch.Tensor"], seconds: list["torch.Tensor"],
                      conditions: list[Condition]) -> list["torch.Tensor"]:
        """P(Yes | first_i, second_i, q_e) for each dimension e of each of m samples, in one judge
        call, with the graph to the first images: row (i, e) shows sample i's two images (the
        same tensor objects for all its dimensions, so the judge may encode each image once) with
        the query of its dimension e. Returns m float32 tensors (D_i,)."""
        first, second, queries, counts = [], [], [], []
        for image, reference, condition in zip(firsts, seconds, conditions):
            dimensions = self.pool.dimensions(condition)
            queries += [self.judge.query(self.pool.taxonomy, condition.task, d, condition.prompt) for d in dimensions]
            first += [image] * len(dimensions)
            second += [reference] * len(dimensions)
            counts.append(len(dimensions))
        log_yes, _ = self.judge.answer_logprobs(first, second, queries)
        return list(log_yes.float().exp().split(counts))

    def text(self, prompt: str) -> TextConditioning:
        """The transformer's text inputs for `prompt` and the rollout's negative prompt (a batch of
        one); each text is encoded once (an LRU cache of TEXT_CACHE_SIZE on the host)."""
        return self.texts([prompt])

    def texts(self, prompts: list[str]) -> TextConditioning:
        """text() for a batch of samples, one prompt each."""
        rollout = self.rollout
        negative = self._encoded(rollout.negative_prompt) if uses_true_cfg(rollout.true_cfg) else None
        return self.backend.prepare_text([self._encoded(prompt) for prompt in prompts], [negative] * len(prompts),
                                         [rollout.guidance] * len(prompts), [rollout.true_cfg] * len(prompts))

    def _encode_pool_prompts(self) -> bool:
        """Encode every prompt of the pool (and the negative prompt) once, up front; on a GPU the
        text encoders (T5-XXL alone is 9 GB in bf16) then leave it for the host, since no other
        text will come. A pool with more prompts than the cache holds keeps them where they are.
        Returns whether they were moved."""
        prompts = {self.pool.prompt(condition) for condition in self.pool.inputs}
        if uses_true_cfg(self.rollout.true_cfg):
            prompts.add(self.rollout.negative_prompt)
        if len(prompts) > TEXT_CACHE_SIZE:
            return False
        for prompt in sorted(prompts):
            self._encoded(prompt)
        if self.device.type != "cuda":
            return False
        for encoder in (self.pipeline.text_encoder, self.pipeline.text_encoder_2):
            encoder.to("cpu")
        torch.cuda.empty_cache()
        return True

    def _encoded(self, prompt: str):
        if prompt in self._text_cache:
            self._text_cache.move_to_end(prompt)
            return self._text_cache[prompt]
        with torch.no_grad():
            encoded = self.backend.encode_prompt(prompt)
        encoded.embeds, encoded.pooled = encoded.embeds.cpu(), encoded.pooled.cpu()
        self._text_cache[prompt] = encoded
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return encoded

    def _sum_gradients(self) -> None:
        parameters = [p for _, p in self.trainable]
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in parameters])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        offset = 0
        for p in parameters:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    # -- checkpoints ------------------------------------------------------------------------------

    def save_checkpoint(self, extra: dict) -> Path:
        directory = self.run_dir.checkpoint(self.step_count)
        self.accelerator.save_state(str(directory))
        if self.sharded:
            self.sharding.save_state(directory, self.trainable, self.optimizer, self.ema)
            self.accelerator.wait_for_everyone()
        if self.main:
            state = {"step": self.step_count, "config": self.config.as_dict(), **extra}
            self.run_dir.commit_checkpoint(directory, state, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return directory

    def load_checkpoint(self, directory: Path) -> dict:
        state = self.run_dir.read_state(directory)
        check_resumable(state.get("config", {}), self.config.as_dict(), TRAJECTORY_FIELDS, self.config.output_dir)
        self.accelerator.load_state(str(directory))
        if self.sharded:
            self.sharding.load_state(directory, self.trainable, self.optimizer, self.ema)
        self.step_count = state["step"]
        return state

    # -- the deliverable ----------------------------------------------------------------------------------

    def save_policy(self) -> dict:
        """Write the EMA policy to output_dir/policy and return the FluxFillConfig dict that
        generates with it: with LoRA, policy/pytorch_lora_weights.safetensors (diffusers' FLUX
        LoRA format) added to the base's LoRAs; with full fine-tuning, policy/transformer (the
        generator's "transformer"). Called on every process (FSDP gathers the weights)."""
        directory = (self.output / POLICY_DIR).resolve()
        base = FluxFillConfig.from_dict(self.config.base_generator).as_dict()
        if self.config.lora_rank is not None:
            from diffusers import FluxFillPipeline
            from peft import get_peft_model_state_dict

            with self.ema.applied_to(self.trainable):
                adapter = get_peft_model_state_dict(self.accelerator.unwrap_model(self.transformer))
                weights = {k: v.detach().to("cpu", torch.float32).clone() for k, v in adapter.items()}
            if self.main:
                directory.mkdir(parents=True, exist_ok=True)
                FluxFillPipeline.save_lora_weights(directory, transformer_lora_layers=weights, safe_serialization=True)
            settings = {**base, "loras": base["loras"] + [{"path": str(directory / LORA_FILE), "weight": 1.0,
                                                           "name": POLICY_LORA_NAME}]}
        else:
            dtype = self.pipeline.vae.dtype  # saved in the base's dtype
            if self.sharded:
                self.sharding.save_pretrained(self.ema_module, dtype, directory / "transformer")
            elif self.main:
                ema = self.ema_module
                if next(ema.parameters()).dtype != dtype:
                    ema = copy.deepcopy(ema).to(dtype)
                ema.save_pretrained(directory / "transformer")
            settings = {**base, "transformer": str(directory), "loras": []}
        self.accelerator.wait_for_everyone()
        return settings

    # -- the loop ---------------------------------------------------------------------------------------

    def train(self, progress: Callable[[dict], None] | None = None) -> dict:
        """Run to max_steps (resuming from output_dir's latest checkpoint) and write the outputs.
        Returns result.json's content on the main process ({"main_process": False} elsewhere, or
        {"stopped_at", "total_steps"} after stop_at_step). progress(dict) gets progress.json's
        content at every log step on the main process."""
        config, accelerator, output = self.config, self.accelerator, self.output
        if self.main:
            (output / "checkpoints").mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        pending = _Interval()
        elapsed, last = 0.0, {}
        run_dir = self.run_dir
        resume = run_dir.latest_checkpoint()
        if resume is not None:
            state = self.load_checkpoint(resume)
            elapsed, last = state.get("elapsed", 0.0), state.get("last", {})
            pending = _Interval.from_dict(state.get("pending", {}))
            log.info("resuming from %s (step %d of %d)", resume, self.step_count, config.max_steps)

        tensorboard = None
        if self.main:
            run_dir.truncate_metrics(self.step_count)
            from torch.utils.tensorboard import SummaryWriter

            tensorboard = SummaryWriter(str(output / "tensorboard"),
                                        purge_step=self.step_count + 1 if self.step_count else None)
            write_json_atomic(output / "config.resolved.json", {
                **config.as_dict(), "processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision, "task_probabilities_used": self.probabilities,
                "distributed_type": str(accelerator.distributed_type)})

        started, steps_this_call = time.monotonic(), 0
        stopped = False
        while self.step_count < config.max_steps:
            step_started = time.monotonic()
            result = self.step()
            steps_this_call += 1
            now = time.monotonic()
            elapsed += now - step_started
            pending.add(result, config.reward_cap)
            step = self.step_count
            if step % config.log_every == 0 or step == config.max_steps:
                seconds_per_step = (now - started) / steps_this_call
                values = {"step": step, **pending.summary(), "lr": result["lr"], "seconds_per_step": seconds_per_step,
                          "elapsed": elapsed}
                pending = _Interval()
                last = values
                if self.main:
                    run_dir.append_metrics(values)
                    for key, value in values.items():
                        if key != "step" and isinstance(value, (int, float)):
                            tensorboard.add_scalar(key if "/" in key else f"train/{key}", value, step)
                    eta = seconds_per_step * (config.max_steps - step)
                    update = _progress(values, config.max_steps, eta, "training")
                    run_dir.write_progress(update)
                    if progress is not None:
                        progress(update)
            if step % config.save_every == 0 or step == config.max_steps or step == config.stop_at_step:
                self.save_checkpoint({"elapsed": elapsed, "pending": pending.as_dict(), "last": last,
                                      "total_steps": config.max_steps})
            if step == config.stop_at_step and step < config.max_steps:
                stopped = True
                break

        if tensorboard is not None:
            tensorboard.flush()
            tensorboard.close()
        if stopped:
            return {"stopped_at": self.step_count, "total_steps": config.max_steps, "main_process": self.main}

        generator_settings = self.save_policy()
        if not self.main:
            return {"main_process": False}
        result = {
            "config": config.as_dict(),
            "steps": self.step_count,
            "final_reward": last.get("reward_mean"),
            "final_rewards": {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("reward/")},
            "generator_settings": generator_settings,
            "policy": str((output / POLICY_DIR).resolve()),
            "elapsed": elapsed,
            "processes": accelerator.num_processes,
        }
        if config.eval_inputs:
            run_dir.write_progress(_progress(last, config.max_steps, 0.0, "evaluating"))
            result["evaluation"] = self._evaluate(generator_settings)
        run_dir.write_result(result)
        run_dir.write_progress(_progress(last, config.max_steps, 0.0, "done"))
        return result

    def _evaluate(self, generator_settings: dict) -> dict:
        config = self.config
        judge = self.judge
        # The training pipeline is not needed any more (the policy is saved): make room for the two
        # generators. The trainer cannot step after this.
        self.backend = self.pipeline = self.transformer = self._reference_backend = None
        self.ema_module = self.reference_module = self.optimizer = self.ema = None
        self.trainable = []
        self.accelerator.free_memory()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        judge.eval()
        base = {**config.base_generator, "device": device_setting(self.device)}
        policy = {**generator_settings, "device": device_setting(self.device)}
        return evaluate_policy(policy, base, judge, config.eval_inputs,
                               samples_per_input=config.eval_samples_per_input, seed=config.seed,
                               rollout=config.rollout, composite_source=self.composite_source,
                               output=self.output / "evaluation.json")


def train(config: OneRewardConfig, progress: Callable[[dict], None] | None = None) -> dict:
    """Train as `config` says (see OneRewardTrainer.train)."""
    return OneRewardTrainer(config).train(progress=progress)


# --- metrics and files ----------------------------------------------------------------------------------------


class _Interval:
    """Sums over the steps since the last metric line."""

    def __init__(self):
        self.steps = 0
        self.loss = 0.0
        self.grad_norm = 0.0
        self.reward = defaultdict(float)   # "task/dimension" -> sum of P(Yes)
        self.hinge = defaultdict(int)      # "task/dimension" -> count of P(Yes) < lambda
        self.count = defaultdict(int)

    def add(self, result: dict, cap: float) -> None:
        self.steps += 1
        self.loss += result["loss"]
        self.grad_norm += result["grad_norm"]
        for record in result["records"]:
            for dimension, reward in zip(record["dimensions"], record["rewards"]):
                key = f"{record['task']}/{dimension}"
                self.reward[key] += reward
                self.hinge[key] += int(reward < cap)
                self.count[key] += 1

    def summary(self) -> dict:
        total = sum(self.count.values())
        values = {
            "loss": self.loss / max(self.steps, 1),
            "grad_norm": self.grad_norm / max(self.steps, 1),
            "reward_mean": sum(self.reward.values()) / total if total else None,
            "hinge_share": sum(self.hinge.values()) / total if total else None,
            "samples": total,
        }
        for key in sorted(self.count):
            values[f"reward/{key}"] = self.reward[key] / self.count[key]
            values[f"hinge_share/{key}"] = self.hinge[key] / self.count[key]
        return values

    def as_dict(self) -> dict:
        return {"steps": self.steps, "loss": self.loss, "grad_norm": self.grad_norm, "reward": dict(self.reward),
                "hinge": dict(self.hinge), "count": dict(self.count)}

    @classmethod
    def from_dict(cls, data: dict) -> "_Interval":
        interval = cls()
        interval.steps = data.get("steps", 0)
        interval.loss, interval.grad_norm = data.get("loss", 0.0), data.get("grad_norm", 0.0)
        interval.reward.update(data.get("reward", {}))
        interval.hinge.update(data.get("hinge", {}))
        interval.count.update(data.get("count", {}))
        return interval


def _progress(values: dict, total_steps: int, eta: float, phase: str) -> dict:
    return {"step": values.get("step", 0), "total_steps": total_steps, "loss": values.get("loss"), "eta_seconds": eta,
            "reward_mean": values.get("reward_mean"),
            "rewards": {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("reward/")},
            "phase": phase}


def _activate_judge_checkpointing(judge) -> None:
    """transformers checkpoints a layer only in training mode: put the checkpointed layers in it
    (Qwen2-VL's layers have no dropout module; attention dropout is 0 in its configs)."""

    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return
    for module in judge.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module.train()
            for child in module.modules():
                if isinstance(child, torch.nn.Dropout):
                    child.eval()
