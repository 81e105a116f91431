"""OneReward RL of a FLUX.1 Fill policy against a pairwise judge (METHOD.md §4-§5).

Flow matching in diffusers' convention: x_t = (1 - s) x_0 + s e, velocity v = e - x_0, so from any
step the one-call clean prediction is x0_hat = x_t - s_t * v_theta(x_t, s_t, c).

One step (global batch of `batch_size` conditions, split over the processes):

    for each condition c (task k ~ Categorical(p), then an input of k's pool; rl/conditions.py):
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
- Decoding: the frozen VAE, differentiable on the policy branch; the unmasked area is taken from the
  source (blend by the binarised mask, `composite_source`) and the padding strip cropped, so the
  judge sees images in [0, 1] of the input's size and gradients flow through the masked area only.
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
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import types
from collections import OrderedDict, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .conditions import Condition, ConditionPool, ConditionsError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ALGORITHMS = ("fixed", "dynamic")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
STATE_FILE = "trainer_state.json"
POLICY_DIR = "policy"
LORA_FILE = "pytorch_lora_weights.safetensors"
POLICY_LORA_NAME = "onereward_policy"
# The linear layers of FLUX's blocks, as diffusers' FLUX LoRA trainers target them: attention of
# both streams (double blocks) and of the single blocks, the feed-forwards of both streams, the
# single blocks' MLP in and out projections (and, by name, the final output projection).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                        "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
                        "proj_mlp", "proj_out")
# Options that change the trajectory: a resumed run must have the same values as its checkpoint.
TRAJECTORY_FIELDS = ("conditions_dir", "base_generator", "judge", "algorithm", "task_probabilities", "reward_cap",
                     "t_range", "ema_decay", "learning_rate", "weight_decay", "warmup_steps", "batch_size",
                     "max_steps", "lora_rank", "lora_targets", "rollout", "gradient_clip", "composite_source", "seed")


class ConfigError(ValueError):
    """An RL configuration that cannot run; the message says which option and why."""


# --- configuration ------------------------------------------------------------------------------------


@dataclass
class RolloutSettings:
    """How rollouts sample (both the reference's full sampling and the policy's partial one).

    Defaults are the OneReward release's inference settings (METHOD.md §6): 50 steps, embedded
    guidance 1.0, true CFG 4.0 with the negative prompt "nsfw". A plain FLUX.1 Fill dev base is
    usually run with guidance 30 and true_cfg 1 (no negative branch): set them to match the base.
    """

    steps: int = 50
    guidance: float = 1.0
    true_cfg: float = 4.0
    negative_prompt: str = "nsfw"

    @classmethod
    def from_dict(cls, values) -> "RolloutSettings":
        if isinstance(values, RolloutSettings):
            return values
        if not isinstance(values, dict):
            raise ConfigError("rollout: must be an object with steps, guidance, true_cfg, negative_prompt, "
                              f"got {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"rollout: unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        settings = cls(**values)
        errors = []
        if not _is_int(settings.steps) or settings.steps < 1:
            errors.append(f"rollout.steps: a positive integer, got {settings.steps!r}")
        for name in ("guidance", "true_cfg"):
            value = getattr(settings, name)
            if not _is_number(value) or value < 0:
                errors.append(f"rollout.{name}: a non-negative number, got {value!r}")
        if not isinstance(settings.negative_prompt, str):
            errors.append("rollout.negative_prompt: must be text")
        if errors:
            raise ConfigError("; ".join(errors))
        return settings


@dataclass
class OneRewardConfig:
    """What `train` needs. Defaults follow METHOD.md §4-§6 where the paper publishes a value
    (batch 8, learning rate 1e-5, about 8k steps); the others are our [choice]s, documented here.

    conditions_dir: a conditions directory (rl/conditions.py). output_dir: checkpoints, metrics, policy.
    base_generator: a FluxFillConfig dict (generation/backends/flux_fill.py): base, transformer,
        loras, dtype, max_sequence_length... The policy starts from it; its LoRAs are fused into the
        weights before training (and listed again in the generator settings of the result). Its
        device is replaced by each process's device.
    judge: a saved judge directory (rewardmodel.core.judge.Judge.save_pretrained).
    algorithm: "fixed" (Algorithm 1, frozen reference) or "dynamic" (Algorithm 2, EMA reference).
    task_probabilities: {task slug: weight}; None = the taxonomy's rl_probability (tasks without
        inputs in the pool left out, the rest renormalised).
    reward_cap: lambda; a (sample, dimension) whose P(Yes) reaches it gives no gradient.
    t_range: (t1, t2), fractions of the sampling schedule already run when the policy makes its
        one-call prediction: stop index floor(u * steps), u ~ U[t1, t2]. The default (0.6, 0.75)
        leaves the last 25-40 % of the schedule to the prediction (METHOD.md §4).
    ema_decay: tau. learning_rate, weight_decay, warmup_steps (linear warmup, then constant):
        AdamW on the trainable weights. batch_size: conditions per step over all processes.
    lora_rank: LoRA rank on `lora_targets` (alpha = rank: scale 1, which is what a LoRA file
        without alphas loads as); None = full fine-tuning of the transformer, with float32 master
        weights when mixed_precision is bf16/fp16 (use rl/accelerate/fsdp.yaml for the 12B model).
    rollout: RolloutSettings (dict). gradient_clip: max gradient norm (None = no clipping).
    gradient_checkpointing: in the transformer, the VAE decoder and the judge.
    mixed_precision: "auto" = bf16 on a CUDA device that has it, else none; "no", "bf16", "fp16".
    composite_source: judge images with the unmasked area taken from the source.
    Conditions are generated at their own size, padded on the right/bottom to multiples of 16
    (pad_canvas) and cropped back, as the generation backend does.
    judge_dtype: the judge's weights ("auto" = bf16 on CUDA, float32 on CPU).
    log_every / save_every: steps between metric lines / checkpoints; keep_checkpoints: how many
    are kept; stop_at_step: checkpoint and return there (the next call resumes).
    eval_inputs: a conditions directory of held-out inputs: at the end the judge compares the
    policy with the base on them (rl/evaluate.py), eval_samples_per_input samples each.
    """

    conditions_dir: str
    output_dir: str
    base_generator: dict
    judge: str
    algorithm: str = "dynamic"
    task_probabilities: dict | None = None
    reward_cap: float = 0.9
    t_range: tuple = (0.6, 0.75)
    ema_decay: float = 0.99
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    max_steps: int = 8000
    lora_rank: int | None = 32
    lora_targets: tuple = DEFAULT_LORA_TARGETS
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    gradient_clip: float | None = 1.0
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"
    composite_source: bool = True
    judge_dtype: str = "auto"
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    keep_checkpoints: int | None = 2
    stop_at_step: int | None = None
    eval_inputs: str | None = None
    eval_samples_per_input: int = 1

    def __post_init__(self):
        errors = []
        for name in ("conditions_dir", "output_dir", "judge"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                errors.append(f"{name}: a path, got {value!r}")
            else:
                setattr(self, name, os.fspath(value))
        if self.eval_inputs is not None:
            if not isinstance(self.eval_inputs, (str, os.PathLike)) or not str(self.eval_inputs).strip():
                errors.append(f"eval_inputs: a conditions directory or null, got {self.eval_inputs!r}")
            else:
                self.eval_inputs = os.fspath(self.eval_inputs)
        if not isinstance(self.base_generator, dict) or not self.base_generator.get("base"):
            errors.append("base_generator: a FLUX Fill generator config {base, transformer, loras, dtype, ...}")
        if self.algorithm not in ALGORITHMS:
            errors.append(f"algorithm: 'fixed' (Algorithm 1) or 'dynamic' (Algorithm 2), got {self.algorithm!r}")
        if self.task_probabilities is not None and not isinstance(self.task_probabilities, dict):
            errors.append("task_probabilities: an object {task slug: probability} or null")
        if not _is_number(self.reward_cap) or not 0 < self.reward_cap <= 1:
            errors.append(f"reward_cap: lambda in (0, 1], got {self.reward_cap!r}")
        try:
            t1, t2 = self.t_range
            if not (_is_number(t1) and _is_number(t2) and 0 <= t1 <= t2 <= 1):
                raise ValueError
            self.t_range = (float(t1), float(t2))
        except (TypeError, ValueError):
            errors.append("t_range: [t1, t2] with 0 <= t1 <= t2 <= 1 (fractions of the schedule), "
                          f"got {self.t_range!r}")
        if not _is_number(self.ema_decay) or not 0 <= self.ema_decay < 1:
            errors.append(f"ema_decay: tau in [0, 1), got {self.ema_decay!r}")
        if not _is_number(self.learning_rate) or not 0 < self.learning_rate < 1:
            errors.append(f"learning_rate: in (0, 1), got {self.learning_rate!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            errors.append(f"weight_decay: a non-negative number, got {self.weight_decay!r}")
        for name in ("batch_size", "max_steps", "log_every", "save_every", "eval_samples_per_input"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                errors.append(f"{name}: a positive integer, got {value!r}")
        for name in ("lora_rank", "keep_checkpoints", "stop_at_step"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                errors.append(f"{name}: a positive integer or null, got {value!r}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            errors.append(f"warmup_steps: a non-negative integer, got {self.warmup_steps!r}")
        if not _is_int(self.seed) or self.seed < 0:
            errors.append(f"seed: a non-negative integer, got {self.seed!r}")
        if isinstance(self.lora_targets, str) or not all(isinstance(t, str) and t for t in self.lora_targets or ()):
            errors.append(f"lora_targets: a list of module names, got {self.lora_targets!r}")
        else:
            self.lora_targets = tuple(self.lora_targets)
            if not self.lora_targets:
                errors.append("lora_targets: must name at least one module")
        try:
            self.rollout = RolloutSettings.from_dict(self.rollout)
        except (ConfigError, TypeError) as exc:
            errors.append(str(exc))
        if self.gradient_clip is not None and (not _is_number(self.gradient_clip) or self.gradient_clip <= 0):
            errors.append(f"gradient_clip: a positive number or null, got {self.gradient_clip!r}")
        for name in ("gradient_checkpointing", "composite_source"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name}: true or false, got {getattr(self, name)!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            errors.append(f"mixed_precision: one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        if self.judge_dtype not in ("auto", "float32", "bfloat16", "float16"):
            errors.append(f"judge_dtype: auto, float32, bfloat16 or float16, got {self.judge_dtype!r}")
        if errors:
            raise ConfigError("invalid RL config: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, values: dict) -> "OneRewardConfig":
        """From a JSON object; unknown or missing options are errors (ConfigError)."""
        if not isinstance(values, dict):
            raise ConfigError(f"an RL config is a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown RL option(s): {', '.join(unknown)}; known options: {', '.join(sorted(known))}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if values.get(name) in (None, "", {})]
        if missing:
            raise ConfigError(f"missing RL option(s): {', '.join(missing)}")
        return cls(**values)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["t_range"] = list(self.t_range)
        data["lora_targets"] = list(self.lora_targets)
        return data

    def check_inputs(self) -> ConditionPool:
        """Check what the config points at without loading weights; returns the condition pool."""
        from generation.core.backends.base import BackendConfigError
        from generation.core.backends.flux_fill import FluxFillConfig

        try:
            generator = FluxFillConfig.from_dict(self.base_generator)
        except BackendConfigError as exc:
            raise ConfigError(f"base_generator: {exc}") from None
        if generator.cpu_offload:
            raise ConfigError("base_generator: cpu_offload cannot be used for training "
                              "(the policy stays on its device)")
        judge = Path(self.judge)
        if not (judge / "config.json").is_file() and not (judge / "judge.json").is_file():
            raise ConfigError(f"judge: {self.judge} is not a saved judge directory (no judge.json or config.json)")
        try:
            pool = ConditionPool(self.conditions_dir)
            pool.probabilities(self.task_probabilities)
            if self.eval_inputs:
                ConditionPool(self.eval_inputs)
        except ConditionsError as exc:
            raise ConfigError(f"conditions: {exc}") from None
        return pool


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def device_setting(device) -> str:
    """A torch device as FluxFillConfig's device setting ("cpu", "cuda", "cuda:N")."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    return f"{device.type}:{device.index}" if device.index is not None else device.type


def resolve_mixed_precision(value: str) -> str:
    import torch

    if value == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return value


# --- sampling with FLUX Fill, step by step (FluxFillBackend's loop, cut where RL needs it) --------------


@dataclass
class Canvas:
    """One condition prepared for FLUX Fill, padded (never resized) to multiples of 16 pixels.

    source: (1, 3, Hp, Wp) float32 in [0, 1]; mask: (1, 1, Hp, Wp) binarised, 1 = generate (the
    pipeline's mask processor). image_latents / masked_latents: the VAE's latent distributions of
    the canvas and of the canvas with the hole blanked. latent_ids: (S, 3) positions of the packed
    latent tokens. width, height: the input's size, to crop back to.
    """

    width: int
    height: int
    padded_width: int
    padded_height: int
    source: "torch.Tensor"
    mask: "torch.Tensor"
    image_latents: object
    masked_latents: object
    latent_ids: "torch.Tensor"


@dataclass
class Text:
    """The transformer's text inputs for one sample, in FluxFillBackend.predict_velocity's layout:
    prompt_embeds (1 + K, L, D) and pooled (1 + K, Dp) with the negative row when true CFG is on
    (K = 1, cfg_rows = [0]); guidance (1,) float32; true_cfg (K,)."""

    prompt_embeds: "torch.Tensor"
    pooled: "torch.Tensor"
    text_ids: "torch.Tensor"
    guidance: "torch.Tensor"
    cfg_rows: list
    true_cfg: "torch.Tensor"


def prepare_canvas(backend, image, mask) -> Canvas:
    """image: RGB PIL canvas; mask: mode "L" PIL mask of the same size (255 = generate)."""
    import torch
    from generation.core.backends.flux_fill import pad_canvas

    pipe = backend.pipeline
    device, dtype = backend.device, pipe.vae.dtype
    width, height = image.size
    multiple = pipe.vae_scale_factor * 2
    image, mask = pad_canvas(image.convert("RGB"), mask.convert("L"), multiple)
    padded_w, padded_h = image.size
    with torch.no_grad():
        init_image = pipe.image_processor.preprocess(image, height=padded_h, width=padded_w).to(dtype=torch.float32)
        mask_image = pipe.mask_processor.preprocess(mask, height=padded_h, width=padded_w)
        masked_image = (init_image * (1 - mask_image)).to(device=device, dtype=dtype)
        image_dist = pipe.vae.encode(init_image.to(device=device, dtype=dtype)).latent_dist
        masked_dist = pipe.vae.encode(masked_image).latent_dist
    source = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    latent_ids = pipe._prepare_latent_image_ids(1, padded_h // multiple, padded_w // multiple, device, dtype)
    return Canvas(width=width, height=height, padded_width=padded_w, padded_height=padded_h,
                  source=source.to(device), mask=mask_image.to(device=device, dtype=torch.float32),
                  image_latents=image_dist, masked_latents=masked_dist, latent_ids=latent_ids)


def make_scheduler(backend, canvas: Canvas, steps: int):
    """A fresh FlowMatchEulerDiscreteScheduler with the pipeline's schedule for this canvas size:
    sigmas linspace(1, 1/steps) shifted by mu(sequence length); `.timesteps` (steps,) and
    `.sigmas` (steps + 1,) with sigmas[-1] = 0, timestep = 1000 * sigma."""
    from diffusers.pipelines.flux.pipeline_flux_fill import calculate_shift, retrieve_timesteps

    pipe = backend.pipeline
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    cell = pipe.vae_scale_factor * 2
    sequence = (canvas.padded_height // cell) * (canvas.padded_width // cell)
    mu = calculate_shift(
        sequence,
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    retrieve_timesteps(scheduler, steps, backend.device, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    scheduler.set_begin_index(0)
    return scheduler


def initial_latents(backend, canvas: Canvas, seed: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(packed noise (1, S, 4C), Fill conditioning (1, S, 4C + 4s^2)) of one sample.

    The draws are FluxFillBackend's for a candidate of this seed at strength 1: from one CPU
    generator, the canvas latent sample (unused at strength 1, drawn to keep the order), the
    noise, then the masked-canvas latent sample. At strength 1 the pipeline's scale_noise at
    sigma 1 returns the noise itself.
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    pipe = backend.pipeline
    device, dtype = backend.device, pipe.vae.dtype
    shift, scale = pipe.vae.config.shift_factor, pipe.vae.config.scaling_factor
    channels = pipe.vae.config.latent_channels
    multiple = pipe.vae_scale_factor * 2
    latent_h, latent_w = 2 * (canvas.padded_height // multiple), 2 * (canvas.padded_width // multiple)
    generator = torch.Generator("cpu").manual_seed(int(seed))
    with torch.no_grad():
        canvas.image_latents.sample(generator)
        noise = randn_tensor((1, channels, latent_h, latent_w), generator=generator, device=device, dtype=dtype)
        masked = ((canvas.masked_latents.sample(generator) - shift) * scale).to(device=device, dtype=dtype)
        conditioning = backend.fill_conditioning(masked, canvas.mask, 1)
    return pipe._pack_latents(noise, 1, channels, latent_h, latent_w), conditioning


def velocity(backend, latents, conditioning, scheduler, index: int, text: Text, canvas: Canvas) -> "torch.Tensor":
    """v(x, timestep index) of one sample (true CFG per `text`), one transformer call."""
    timestep = scheduler.timesteps[index]
    return backend.predict_velocity(
        latents, conditioning, timestep.expand(1).to(latents.dtype) / 1000, text.guidance,
        text.prompt_embeds, text.pooled, text.text_ids, canvas.latent_ids, text.cfg_rows, text.true_cfg,
    )


def denoise(backend, scheduler, latents, conditioning, text: Text, canvas: Canvas, stop: int) -> "torch.Tensor":
    """Euler steps 0 .. stop-1 from `latents` (no grad): the latents x at timestep index `stop`."""
    import torch

    with torch.no_grad():
        for index in range(stop):
            v = velocity(backend, latents, conditioning, scheduler, index, text, canvas)
            latents = scheduler.step(v, scheduler.timesteps[index], latents, return_dict=False)[0]
    return latents


def predict_clean(latents: "torch.Tensor", v: "torch.Tensor", sigma) -> "torch.Tensor":
    """x0_hat = x_t - s_t * v (float32), latents and v (B, S, 4C): the clean latents that one Euler
    step from sigma s_t to 0 gives."""
    import torch

    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device)
    return latents.float() - sigma * v.float()


def decode(backend, canvas: Canvas, latents: "torch.Tensor", composite: bool = True) -> "torch.Tensor":
    """Packed latents (1, S, 4C) -> image float32 (3, H, W) in [0, 1] at the input's size,
    differentiable. composite: the unmasked area taken from the source (blend by the binarised
    mask); otherwise the whole decode, as FluxFillBackend.generate_arrays returns it."""
    pipe = backend.pipeline
    scale, shift = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
    latents = pipe._unpack_latents(latents, canvas.padded_height, canvas.padded_width, pipe.vae_scale_factor)
    latents = (latents / scale) + shift
    decoded = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
    image = pipe.image_processor.denormalize(decoded).float()
    if composite:
        image = canvas.mask * image + (1 - canvas.mask) * canvas.source
    return image[0, :, :canvas.height, :canvas.width]


# --- the EMA ------------------------------------------------------------------------------------------------


class ExponentialMovingAverage:
    """shadow <- decay * shadow + (1 - decay) * weights, per named tensor, after every step.

    named: [(name, parameter)] of the trained weights. shadow: {name: tensor} to update in place
    (a full-fine-tuning EMA is a module copy, whose parameters are passed here); by default float32
    copies of the weights (the LoRA case: a few MB).
    """

    def __init__(self, named: list, decay: float, shadow: dict | None = None):
        import torch

        self.decay = float(decay)
        self.names = [name for name, _ in named]
        if shadow is None:
            shadow = {name: p.detach().to(torch.float32).clone() for name, p in named}
        missing = [name for name in self.names if name not in shadow]
        if missing:
            raise ValueError(f"the EMA has no tensor for {missing[0]!r}")
        self.shadow = shadow

    def update(self, named: list) -> None:
        import torch

        with torch.no_grad():
            for name, parameter in named:
                average = self.shadow[name]
                average.mul_(self.decay).add_(parameter.detach().to(average.dtype), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def applied_to(self, named: list):
        """The weights hold the EMA inside the block and get their own values back after it."""
        import torch

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
        import torch

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
        import torch

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
        import torch
        from accelerate import Accelerator, PartialState
        from accelerate.utils import DistributedType, set_seed

        self.config = config
        self.pool = pool if pool is not None else config.check_inputs()
        self.probabilities = self.pool.probabilities(config.task_probabilities)
        self.output = Path(config.output_dir)

        # Processes started by `accelerate launch --multi_gpu` on a host without CUDA: gloo on CPU.
        cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        state = PartialState(cpu=cpu)
        if config.batch_size % state.num_processes:
            raise ConfigError(f"batch_size: {config.batch_size} conditions cannot be split evenly over "
                              f"{state.num_processes} processes")
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=resolve_mixed_precision(config.mixed_precision))
        self.sharded = self.accelerator.distributed_type == DistributedType.FSDP
        if self.sharded and config.lora_rank is not None:
            raise ConfigError("FSDP is for full fine-tuning (lora_rank null); a LoRA policy trains with DDP")
        self.main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.rollout = config.rollout

        # 1. Models. The policy is the pipeline's transformer; everything else is frozen.
        self.backend = backend if backend is not None else self._load_backend()
        self.pipeline = self.backend.pipeline
        pipe = self.pipeline
        for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.transformer):
            module.requires_grad_(False)
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
            raise ConfigError("the policy has no trainable weight (check lora_targets against the transformer)")
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        warmup = config.warmup_steps
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)) if warmup else 1.0)
        if self.sharded:
            # FSDP (full fine-tuning): accelerate shards the policy, its optimizer state and the
            # copies in place; the pipeline keeps calling the same module object.
            self.transformer, self.optimizer = self.accelerator.prepare(self.transformer, self.optimizer)
            self.pipeline.transformer = self.transformer
            self.ema_module = self.accelerator.prepare(self.ema_module)
            if self.reference_module is not None:
                self.reference_module = self.accelerator.prepare(self.reference_module)
        else:
            self.optimizer = self.accelerator.prepare(self.optimizer)
        self.accelerator.register_for_checkpointing(self.lr_schedule)
        self.trainable = [(name, p) for name, p in self.transformer.named_parameters() if p.requires_grad]

        # 3. The EMA and the reference.
        self._reference_backend = None  # full fine-tuning: a backend calling the reference module
        if config.lora_rank is not None:
            self.ema = ExponentialMovingAverage(self.trainable, config.ema_decay)
        else:
            from generation.core.backends.flux_fill import FluxFillBackend

            self.ema = ExponentialMovingAverage(self.trainable, config.ema_decay,
                                                shadow=dict(self.ema_module.named_parameters()))
            reference = self.reference_module if config.algorithm == "fixed" else self.ema_module
            self._reference_backend = FluxFillBackend(types.SimpleNamespace(transformer=reference), self.backend.config)
        if not self.sharded:
            # Sharded, the EMA and the policy are prepared models: save_state has them already.
            self.accelerator.register_for_checkpointing(_TrainableWeights(self.trainable))
            self.accelerator.register_for_checkpointing(self.ema)
        self._text_cache: OrderedDict = OrderedDict()
        self.step_count = 0

    # -- building ------------------------------------------------------------------------------------

    def _load_backend(self):
        from generation.core.backends.flux_fill import FluxFillBackend, FluxFillConfig

        settings = FluxFillConfig.from_dict({**self.config.base_generator, "device": device_setting(self.device)})
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
        from rewardmodel.core.judge import Judge

        judge = Judge.from_pretrained(self.config.judge, dtype=self.config.judge_dtype, device=self.device,
                                      gradient_checkpointing=self.config.gradient_checkpointing)
        judge.eval()
        if self.config.gradient_checkpointing:
            _activate_judge_checkpointing(judge)
        return judge

    def _check_queries(self) -> None:
        """Every (input, dimension) of the pool can be put to the judge (template version, prompts)."""
        for condition in self.pool.inputs:
            for dimension in self.pool.dimensions(condition):
                try:
                    self.judge.query(self.pool.taxonomy, condition.task, dimension, condition.prompt)
                except (KeyError, ValueError) as exc:
                    raise ConfigError(f"input {condition.id}, dimension {dimension}: {exc}") from None

    def _make_policy(self) -> None:
        import torch

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
        else:
            if self.accelerator.mixed_precision != "no":
                transformer.to(torch.float32)  # float32 master weights, bf16/fp16 compute under autocast
            transformer.requires_grad_(True)
        if config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
            self.pipeline.vae.enable_gradient_checkpointing()
        transformer.train()

    def _frozen_copy(self, module, dtype):
        copied = copy.deepcopy(module)
        if next(copied.parameters()).dtype != dtype:
            copied.to(dtype)
        copied.requires_grad_(False)
        copied.eval()
        copied.disable_gradient_checkpointing()
        return copied

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
        import torch
        from accelerate.utils import gather_object

        config, accelerator = self.config, self.accelerator
        step = self.step_count + 1
        samples = self.plan(step)
        mine = samples[accelerator.process_index::accelerator.num_processes]
        records = []
        for sample in mine:
            loss, record = self.sample_loss(sample)
            # The step's loss is the mean over the global batch: without FSDP the gradients are
            # summed over the processes below; FSDP averages them, hence the factor.
            scale = (accelerator.num_processes if self.sharded else 1) / config.batch_size
            accelerator.backward(loss * scale)
            records.append(record)
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

    def sample_loss(self, sample: Sample) -> tuple["torch.Tensor", dict]:
        """The loss of one condition (with its graph to the policy's weights) and its record."""
        import torch

        condition = sample.condition
        image, mask = condition.load()
        canvas = prepare_canvas(self.backend, image, mask)
        text = self.text(self.pool.prompt(condition))

        with torch.no_grad():
            reference_image = self.reference_rollout(canvas, text, sample.reference_seed)
            scheduler = make_scheduler(self.backend, canvas, self.rollout.steps)
            latents, conditioning = initial_latents(self.backend, canvas, sample.policy_seed)
            with self.accelerator.autocast():
                latents = denoise(self.backend, scheduler, latents, conditioning, text, canvas, sample.stop)
        with self.accelerator.autocast():
            v = velocity(self.backend, latents, conditioning, scheduler, sample.stop, text, canvas)
        clean = predict_clean(latents, v, scheduler.sigmas[sample.stop])
        with self.accelerator.autocast():
            policy_image = decode(self.backend, canvas, clean, composite=self.config.composite_source)
            rewards = self.rewards(policy_image, reference_image, condition)
        hinge = torch.relu(self.config.reward_cap - rewards)
        loss = hinge.mean()
        record = {"index": sample.index, "task": condition.task, "input": condition.id, "stop": sample.stop,
                  "dimensions": self.pool.dimensions(condition), "rewards": rewards.detach().float().cpu().tolist(),
                  "loss": float(loss.detach())}
        return loss, record

    def reference_rollout(self, canvas: Canvas, text: Text, seed: int) -> "torch.Tensor":
        """The reference's full sampling from the noise of `seed`, decoded: (3, H, W) in [0, 1]."""
        import torch

        with torch.no_grad(), self.reference() as backend, self.accelerator.autocast():
            scheduler = make_scheduler(self.backend, canvas, self.rollout.steps)
            latents, conditioning = initial_latents(self.backend, canvas, seed)
            latents = denoise(backend, scheduler, latents, conditioning, text, canvas, self.rollout.steps)
            return decode(self.backend, canvas, latents, composite=self.config.composite_source)

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

    def rewards(self, first: "torch.Tensor", second: "torch.Tensor", condition: Condition) -> "torch.Tensor":
        """P(Yes | first, second, q_e) for each dimension e of the condition: float32 (D,), with the
        graph to `first` (and `second` when it has one)."""
        dimensions = self.pool.dimensions(condition)
        queries = [self.judge.query(self.pool.taxonomy, condition.task, d, condition.prompt) for d in dimensions]
        log_yes, _ = self.judge.answer_logprobs([first] * len(queries), [second] * len(queries), queries)
        return log_yes.float().exp()

    def text(self, prompt: str) -> Text:
        """The transformer's text inputs for `prompt` and the rollout's negative prompt; each text
        is encoded once (an LRU cache of 1024 on the host)."""
        import torch

        rollout = self.rollout
        positive = self._encoded(prompt)
        cfg = rollout.true_cfg != 1.0
        rows = [positive] + ([self._encoded(rollout.negative_prompt)] if cfg else [])
        embeds = torch.cat([r.embeds for r in rows]).to(self.device)
        pooled = torch.cat([r.pooled for r in rows]).to(self.device)
        text_ids = torch.zeros(embeds.shape[1], 3).to(device=self.device, dtype=self.pipeline.text_encoder.dtype)
        scales = [float(rollout.true_cfg)] if cfg else []
        return Text(prompt_embeds=embeds, pooled=pooled, text_ids=text_ids,
                    guidance=torch.tensor([float(rollout.guidance)], device=self.device, dtype=torch.float32),
                    cfg_rows=[0] if cfg else [],
                    true_cfg=torch.tensor(scales, device=self.device, dtype=torch.float32))

    def _encoded(self, prompt: str):
        import torch

        if prompt in self._text_cache:
            self._text_cache.move_to_end(prompt)
            return self._text_cache[prompt]
        with torch.no_grad():
            encoded = self.backend.encode_prompt(prompt)
        encoded.embeds, encoded.pooled = encoded.embeds.cpu(), encoded.pooled.cpu()
        self._text_cache[prompt] = encoded
        if len(self._text_cache) > 1024:
            self._text_cache.popitem(last=False)
        return encoded

    def _sum_gradients(self) -> None:
        import torch

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
        directory = self.output / "checkpoints" / f"step-{self.step_count}"
        self.accelerator.save_state(str(directory))
        if self.main:
            write_json_atomic(directory / STATE_FILE,
                              {"step": self.step_count, "config": self.config.as_dict(), **extra})
            pointer = self.output / "checkpoints" / "latest"
            partial = pointer.with_name(".latest.partial")
            partial.write_text(directory.name)
            os.replace(partial, pointer)
            _prune_checkpoints(self.output / "checkpoints", self.config.keep_checkpoints, keep=directory.name)
        self.accelerator.wait_for_everyone()
        return directory

    def load_checkpoint(self, directory: Path) -> dict:
        state = json.loads((directory / STATE_FILE).read_text())
        before = state.get("config", {})
        now = self.config.as_dict()
        changed = [name for name in TRAJECTORY_FIELDS if before.get(name) != now.get(name)]
        if changed:
            raise ConfigError(f"output_dir {self.config.output_dir} holds a checkpoint of a run with other "
                              f"{', '.join(changed)}; resume it with the same options, or use a new output_dir")
        self.accelerator.load_state(str(directory))
        self.step_count = state["step"]
        return state

    # -- the deliverable ----------------------------------------------------------------------------------

    def save_policy(self) -> dict:
        """Write the EMA policy to output_dir/policy and return the FluxFillConfig dict that
        generates with it: with LoRA, policy/pytorch_lora_weights.safetensors (diffusers' FLUX
        LoRA format) added to the base's LoRAs; with full fine-tuning, policy/transformer (the
        generator's "transformer"). Called on every process (FSDP gathers the weights)."""
        import torch
        from generation.core.backends.flux_fill import FluxFillConfig

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
                weights = self.accelerator.get_state_dict(self.ema_module)
                if self.main:
                    from diffusers import FluxTransformer2DModel

                    fresh = FluxTransformer2DModel.from_config(self.accelerator.unwrap_model(self.ema_module).config)
                    fresh.load_state_dict(weights)
                    fresh.to(dtype).save_pretrained(directory / "transformer")
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
        resume = latest_checkpoint(output)
        if resume is not None:
            state = self.load_checkpoint(resume)
            elapsed, last = state.get("elapsed", 0.0), state.get("last", {})
            pending = _Interval.from_dict(state.get("pending", {}))
            log.info("resuming from %s (step %d of %d)", resume, self.step_count, config.max_steps)

        tensorboard = None
        if self.main:
            _truncate_metrics(output / "metrics.jsonl", self.step_count)
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
                    with open(output / "metrics.jsonl", "a") as handle:
                        handle.write(json.dumps(values) + "\n")
                    for key, value in values.items():
                        if key != "step" and isinstance(value, (int, float)):
                            tensorboard.add_scalar(key if "/" in key else f"train/{key}", value, step)
                    eta = seconds_per_step * (config.max_steps - step)
                    update = _progress(values, config.max_steps, eta, "training")
                    write_json_atomic(output / "progress.json", update)
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
            write_json_atomic(output / "progress.json", _progress(last, config.max_steps, 0.0, "evaluating"))
            result["evaluation"] = self._evaluate(generator_settings)
        write_json_atomic(output / "result.json", result)
        write_json_atomic(output / "progress.json", _progress(last, config.max_steps, 0.0, "done"))
        return result

    def _evaluate(self, generator_settings: dict) -> dict:
        import gc

        import torch

        from .evaluate import evaluate_policy

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
                               rollout=config.rollout, composite_source=config.composite_source,
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
    import torch

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


def write_json_atomic(path: Path, data) -> None:
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(partial, path)


def latest_checkpoint(output_dir) -> Path | None:
    """output_dir/checkpoints/<latest>, when it holds a complete checkpoint."""
    pointer = Path(output_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = Path(output_dir) / "checkpoints" / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines an interrupted call wrote after its last checkpoint: they are trained again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut by a crash
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in kept))
    os.replace(partial, path)


def _prune_checkpoints(directory: Path, keep_count: int | None, keep: str) -> None:
    if keep_count is None:
        return
    steps = sorted((int(path.name.split("-", 1)[1]), path) for path in directory.glob("step-*")
                   if path.name.split("-", 1)[1].isdigit())
    old = [path for _, path in steps if path.name != keep][: max(0, len(steps) - keep_count)]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
