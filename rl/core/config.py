"""The OneReward trainer's configuration (METHOD.md §4-§6), without torch: the platform's forms
validate with it, and `python -m rl.core.train` builds its options from the fields' help.

Defaults follow the paper where it publishes a value (batch 8, learning rate 1e-5, about 8k steps);
the others are our [choice]s, documented in each field's help.

Standard library + mlcore + the torch-free parts of generation/core and rl/core only.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from generation.core.backends.base import BackendConfigError
from generation.core.backends.flux_fill import FluxFillConfig
from mlcore.config import MIXED_PRECISION, ConfigError, Problems, check_types, from_dict, is_int, is_number

from .conditions import ConditionPool, ConditionsError

__all__ = ["ConfigError", "OneRewardConfig", "RolloutSettings", "ALGORITHMS", "DEFAULT_LORA_TARGETS",
           "TRAJECTORY_FIELDS"]

ALGORITHMS = ("fixed", "dynamic")
JUDGE_DTYPES = ("auto", "float32", "bfloat16", "float16")
# transformers' attention implementations the judge may load with: "sdpa" is torch's
# scaled_dot_product_attention (fused kernels on a GPU), "eager" the matmul-softmax reference.
JUDGE_ATTENTION = ("sdpa", "eager")
# The linear layers of FLUX's blocks, as diffusers' FLUX LoRA trainers target them: attention of
# both streams (double blocks) and of the single blocks, the feed-forwards of both streams, the
# single blocks' MLP in and out projections (and, by name, the final output projection).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                        "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
                        "proj_mlp", "proj_out")
# Options that change the trajectory: a resumed run must have the same values as its checkpoint.
TRAJECTORY_FIELDS = ("conditions_dir", "base_generator", "judge", "algorithm", "task_probabilities", "reward_cap",
                     "t_range", "ema_decay", "learning_rate", "weight_decay", "warmup_steps", "batch_size",
                     "max_steps", "lora_rank", "lora_targets", "rollout", "gradient_clip", "composite_source", "seed",
                     "reference_pool")


@dataclass
class RolloutSettings:
    """How rollouts sample (both the reference's full sampling and the policy's partial one).

    Defaults are the OneReward release's inference settings (METHOD.md §6): 50 steps, embedded
    guidance 1.0, true CFG 4.0 with the negative prompt "nsfw". A plain FLUX.1 Fill dev base is
    usually run with guidance 30 and true_cfg 1 (no negative branch): set them to match the base.
    Errors name the field as "rollout.<name>".
    """

    steps: int = field(default=50, metadata={"help": "sampling steps of a full rollout"})
    guidance: float = field(default=1.0, metadata={"help": "embedded guidance given to the transformer"})
    true_cfg: float = field(default=4.0, metadata={"help": "true CFG scale (1: no negative branch)"})
    negative_prompt: str = field(default="nsfw", metadata={"help": "prompt of the negative branch"})

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        problems = Problems()
        if not is_int(self.steps) or self.steps < 1:
            problems.add("rollout.steps", f"a positive integer, got {self.steps!r}")
        if not is_number(self.guidance) or self.guidance < 0:
            problems.add("rollout.guidance", f"a non-negative number, got {self.guidance!r}")
        if not is_number(self.true_cfg) or self.true_cfg < 1:
            # diffusers' pipelines run no negative branch at or below 1; below 1 would read as a
            # damped or inverted guidance that no pipeline applies.
            problems.add("rollout.true_cfg", f"1 (off) or more, got {self.true_cfg!r}")
        if not isinstance(self.negative_prompt, str):
            problems.add("rollout.negative_prompt", "must be text")
        problems.raise_any()

    @classmethod
    def from_dict(cls, values) -> "RolloutSettings":
        if isinstance(values, RolloutSettings):
            return values
        if not isinstance(values, dict):
            raise ConfigError("rollout", "must be an object with steps, guidance, true_cfg, negative_prompt, "
                                         f"got {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("rollout", f"unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass
class OneRewardConfig:
    """What `rl.core.onereward.OneRewardTrainer` needs (see the module docstring for the defaults).
    metadata["flags"]: the command line's short names, kept beside --field-name; metadata["const"]:
    switches that set the field to a fixed value."""

    conditions_dir: str = field(metadata={
        "help": "conditions directory (manifest.json + inputs, rl/core/conditions.py)", "flags": ["--conditions"]})
    output_dir: str = field(metadata={"help": "output folder: checkpoints, metrics, policy, result.json",
                                      "flags": ["--output"]})
    base_generator: dict = field(metadata={
        "help": "FluxFillConfig object (base, transformer, loras, dtype, ...) the policy starts from; its LoRAs are "
                "fused into the weights, its device is replaced by each process's"})
    judge: str = field(metadata={"help": "saved judge directory (rewardmodel.core.judge.Judge.save_pretrained)"})
    algorithm: str = field(default="dynamic", metadata={
        "help": "fixed (Algorithm 1: frozen reference) or dynamic (Algorithm 2: the EMA is the reference)"})
    task_probabilities: dict | None = field(default=None, metadata={
        "help": "{task slug: weight}; null: the taxonomy's rl_probability over the tasks the pool has"})
    reward_cap: float = field(default=0.9, metadata={
        "help": "lambda in (0, 1]: a (sample, dimension) whose P(Yes) reaches it gives no gradient"})
    t_range: tuple = field(default=(0.6, 0.75), metadata={
        "help": "[t1, t2], fractions of the schedule run before the one-call prediction: stop index "
                "floor(u * steps), u ~ U[t1, t2]; the default leaves the last 25-40 % to the prediction"})
    ema_decay: float = field(default=0.99, metadata={"help": "tau in [0, 1): ema <- tau * ema + (1 - tau) * policy"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate, in (0, 1)", "flags": ["--lr"]})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "steps of linear warmup (then constant)"})
    batch_size: int = field(default=8, metadata={"help": "conditions per step over all processes"})
    max_steps: int = field(default=8000, metadata={"help": "optimisation steps"})
    lora_rank: int | None = field(default=32, metadata={
        "help": "LoRA rank on lora_targets, alpha = rank (null: full fine-tuning, float32 master weights)",
        "const": {"--full-fine-tune": None}})
    lora_targets: tuple = field(default=DEFAULT_LORA_TARGETS, metadata={"help": "module names the LoRA wraps"})
    rollout: RolloutSettings = field(default_factory=RolloutSettings, metadata={
        "help": "object: steps, guidance, true_cfg, negative_prompt of the rollouts"})
    gradient_clip: float | None = field(default=1.0, metadata={"help": "max gradient norm (null: no clipping)"})
    gradient_checkpointing: bool = field(default=True, metadata={
        "help": "recompute activations in the transformer, the VAE decoder and the judge"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on a CUDA device that has it), no, bf16 or fp16"})
    composite_source: bool | None = field(default=None, metadata={
        "help": "judge images with the unmasked area taken from the source (null: as the base generator "
                "delivers its candidates, its own composite_source setting)"})
    judge_dtype: str = field(default="auto", metadata={
        "help": "the judge's weights: auto (bf16 on CUDA, float32 on CPU), float32, bfloat16 or float16"})
    reference_pool: int = field(default=0, metadata={
        "help": "Algorithm 1: K reference images kept per condition (their final latents, in the run "
                "directory) and drawn from at each step instead of a fresh full rollout; 0: a fresh rollout "
                "per sample"})
    micro_batch: int = field(default=1, metadata={
        "help": "samples of a process's share of the step run together (batched rollouts, one transformer call "
                "with gradient, one judge call); more samples than that accumulate gradients over several "
                "micro-batches. Samples batch together when their canvases have the same size. 1: one at a "
                "time, the least memory"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the policy transformer (the first steps pay the compilation)"})
    judge_attention: str = field(default="sdpa", metadata={
        "help": "the judge's attention: sdpa (torch's scaled_dot_product_attention) or eager"})
    seed: int = field(default=0, metadata={"help": "seed of conditions, noises and stop steps"})
    log_every: int = field(default=10, metadata={"help": "steps between metric lines"})
    save_every: int = field(default=200, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int | None = field(default=2, metadata={"help": "checkpoints kept (null: all)"})
    stop_at_step: int | None = field(default=None, metadata={
        "help": "checkpoint and stop at this step (the next call resumes)"})
    eval_inputs: str | None = field(default=None, metadata={
        "help": "conditions directory of held-out inputs: at the end the judge compares the policy with the base"})
    eval_samples_per_input: int = field(default=1, metadata={"help": "samples per held-out input"})

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Every rule of the config; raises ConfigError naming the fields at fault. Normalises
        paths to text, t_range and lora_targets to tuples and rollout to RolloutSettings."""
        problems = Problems()
        check_types(self, problems)
        problems.raise_any()  # the value rules below assume the types
        for name in ("conditions_dir", "output_dir", "judge", "eval_inputs"):
            value = getattr(self, name)
            if value is None:
                continue
            if not str(value).strip():
                problems.add(name, f"a path, got {value!r}")
            else:
                setattr(self, name, os.fspath(value))
        if not self.base_generator.get("base"):
            problems.add("base_generator", "a FLUX Fill generator config {base, transformer, loras, dtype, ...}")
        if self.algorithm not in ALGORITHMS:
            problems.add("algorithm", f"'fixed' (Algorithm 1) or 'dynamic' (Algorithm 2), got {self.algorithm!r}")
        weights = self.task_probabilities
        if weights is not None and not all(is_number(w) and w >= 0 for w in weights.values()):
            problems.add("task_probabilities", f'non-negative numbers, e.g. {{"image_fill": 0.5}}, got {weights!r}')
        elif weights and sum(weights.values()) <= 0:
            problems.add("task_probabilities", "at least one task needs a probability above 0")
        if not is_number(self.reward_cap) or not 0 < self.reward_cap <= 1:
            problems.add("reward_cap", f"lambda in (0, 1], got {self.reward_cap!r}")
        t_range = tuple(self.t_range)
        if len(t_range) == 2 and all(is_number(t) for t in t_range) and 0 <= t_range[0] <= t_range[1] <= 1:
            self.t_range = (float(t_range[0]), float(t_range[1]))
        else:
            problems.add("t_range", "[t1, t2] with 0 <= t1 <= t2 <= 1 (fractions of the schedule), "
                                    f"got {self.t_range!r}")
        if not is_number(self.ema_decay) or not 0 <= self.ema_decay < 1:
            problems.add("ema_decay", f"tau in [0, 1), got {self.ema_decay!r}")
        if not is_number(self.learning_rate) or not 0 < self.learning_rate < 1:
            problems.add("learning_rate", f"in (0, 1), got {self.learning_rate!r}")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            problems.add("weight_decay", f"a non-negative number, got {self.weight_decay!r}")
        for name in ("batch_size", "max_steps", "log_every", "save_every", "eval_samples_per_input", "micro_batch"):
            if getattr(self, name) < 1:
                problems.add(name, f"a positive integer, got {getattr(self, name)!r}")
        for name in ("lora_rank", "keep_checkpoints", "stop_at_step"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.add(name, f"a positive integer or null, got {value!r}")
        if self.reference_pool and self.algorithm != "fixed":
            problems.add("reference_pool", "a pool of reference images is for Algorithm 1 (fixed), whose reference "
                                           "never changes; Algorithm 2's reference is the EMA, new at every step")
        for name in ("warmup_steps", "seed", "reference_pool"):
            if getattr(self, name) < 0:
                problems.add(name, f"a non-negative integer, got {getattr(self, name)!r}")
        if isinstance(self.lora_targets, str) or not all(isinstance(t, str) and t for t in self.lora_targets):
            problems.add("lora_targets", f"a list of module names, got {self.lora_targets!r}")
        elif not self.lora_targets:
            problems.add("lora_targets", "must name at least one module")
        else:
            self.lora_targets = tuple(self.lora_targets)
        try:
            self.rollout = RolloutSettings.from_dict(self.rollout)
        except ConfigError as exc:
            problems.found.extend(exc.errors)
        except TypeError as exc:
            problems.add("rollout", str(exc))
        if self.gradient_clip is not None and (not is_number(self.gradient_clip) or self.gradient_clip <= 0):
            problems.add("gradient_clip", f"a positive number or null, got {self.gradient_clip!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.add("mixed_precision", f"one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        if self.judge_dtype not in JUDGE_DTYPES:
            problems.add("judge_dtype", f"{', '.join(JUDGE_DTYPES)}, got {self.judge_dtype!r}")
        if self.judge_attention not in JUDGE_ATTENTION:
            problems.add("judge_attention", f"{' or '.join(JUDGE_ATTENTION)}, got {self.judge_attention!r}")
        problems.raise_any()

    @classmethod
    def from_dict(cls, values: dict) -> "OneRewardConfig":
        """From a JSON object; unknown or missing options are errors (ConfigError)."""
        return from_dict(cls, values, "RL")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["t_range"] = list(self.t_range)
        data["lora_targets"] = list(self.lora_targets)
        return data

    def check_inputs(self) -> ConditionPool:
        """Check what the config points at without loading weights; returns the condition pool."""
        try:
            generator = FluxFillConfig.from_dict(self.base_generator)
        except BackendConfigError as exc:
            raise ConfigError("base_generator", str(exc)) from None
        if generator.cpu_offload:
            raise ConfigError("base_generator", "cpu_offload cannot be used for training (the policy stays on its "
                                                "device)")
        judge = Path(self.judge)
        if not (judge / "config.json").is_file() and not (judge / "judge.json").is_file():
            raise ConfigError("judge", f"{self.judge} is not a saved judge directory (no judge.json or config.json)")
        try:
            pool = ConditionPool(self.conditions_dir)
            pool.probabilities(self.task_probabilities)
        except ConditionsError as exc:
            field_name = "task_probabilities" if str(exc).startswith("task_probabilities") else "conditions_dir"
            raise ConfigError(field_name, f"conditions: {exc}") from None
        if self.eval_inputs:
            try:
                ConditionPool(self.eval_inputs)
            except ConditionsError as exc:
                raise ConfigError("eval_inputs", f"conditions: {exc}") from None
        return pool
