"""The judge trainer's configuration (METHOD.md §3), without torch: the platform's forms validate
with it, and `python -m rewardmodel.core.train` builds its options from the fields' help.

Standard library + mlcore only.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from mlcore.config import MIXED_PRECISION, ConfigError, Problems, check_types, from_dict

from .layout import read_manifest, split_shards

__all__ = ["ConfigError", "TrainingConfig", "MIXED_PRECISION", "MODEL_DTYPES", "TRAJECTORY_FIELDS"]

MODEL_DTYPES = ("float32", "bfloat16")
# Fields that change the trajectory: a resumed run must have the same values as the checkpoint.
# The others (logging, saving, evaluation cadence, process layout, precision) may change between
# the interrupted call and the one that resumes it, e.g. on another machine.
TRAJECTORY_FIELDS = ("base_model", "adapter_rank", "adapter_alpha", "adapter_dropout", "learning_rate", "batch_size",
                     "epochs", "max_steps", "warmup_steps", "weight_decay", "max_grad_norm", "weighted_loss", "seed",
                     "model_dtype", "max_pixels")
AT_LEAST_ONE = ("batch_size", "epochs", "log_every", "save_every", "eval_batch_size", "per_device_batch_size",
                "max_steps", "eval_every", "adapter_rank", "keep_checkpoints", "stop_at_step", "max_pixels")
NOT_NEGATIVE = ("warmup_steps", "weight_decay", "num_workers", "adapter_dropout")


@dataclass
class TrainingConfig:
    """What `rewardmodel.core.training.train` needs; the paper's batch (16) and learning rate (1e-6)
    by default. metadata["flags"]: the command line's short names, kept beside --field-name."""

    dataset_dir: str = field(metadata={"help": "exported preference dataset folder (manifest.json + data/)",
                                       "flags": ["--dataset"]})
    output_dir: str = field(metadata={"help": "output folder: checkpoints, metrics, model, evaluation",
                                      "flags": ["--output"]})
    base_model: str = field(metadata={"help": "Qwen2-VL family model: directory or hub id"})
    adapter_rank: int | None = field(default=None, metadata={
        "help": "LoRA rank (null: full fine-tune)", "flags": ["--lora-rank"]})
    adapter_alpha: float | None = field(default=None, metadata={
        "help": "LoRA alpha (null: 2 x rank)", "flags": ["--lora-alpha"]})
    adapter_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout, in [0, 1)"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate, in (0, 1)", "flags": ["--lr"]})
    batch_size: int = field(default=16, metadata={
        "help": "global batch in pairs = per-device batch x processes x accumulation steps"})
    per_device_batch_size: int | None = field(default=None, metadata={
        "help": "pairs per device per micro-batch (null: batch_size / processes, no accumulation)"})
    epochs: int = field(default=1, metadata={"help": "passes over the train split (ignored when max_steps is set)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps (overrides epochs)"})
    warmup_steps: int = field(default=0, metadata={"help": "steps of linear warmup before the linear decay to 0"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay of the matrices"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping norm (null: no clipping)"})
    weighted_loss: bool = field(default=False, metadata={"help": "weight each pair's loss by its `weight` column"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "auto (bf16 on a CUDA device that has it), no, bf16 or fp16"})
    model_dtype: str = field(default="float32", metadata={
        "help": "weights' dtype: float32, or bfloat16 (halves weight and optimizer memory)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in the backward"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and the adapter's initialisation"})
    log_every: int = field(default=10, metadata={"help": "steps between metric lines"})
    eval_every: int | None = field(default=None, metadata={"help": "steps between validation evaluations"})
    eval_batch_size: int = field(default=16, metadata={"help": "pairs per evaluation forward"})
    save_every: int = field(default=200, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int | None = field(default=2, metadata={
        "help": "checkpoints kept, older ones deleted (null: all)"})
    stop_at_step: int | None = field(default=None, metadata={
        "help": "checkpoint and stop at this step, without the final model (the next call resumes)"})
    zero_shot_eval: bool = field(default=True, metadata={"help": "also evaluate the base model on the test split"})
    max_pixels: int | None = field(default=None, metadata={
        "help": "the judge's resize bound in pixels per image (null: the processor's default)"})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Every rule of the config; raises ConfigError naming the fields at fault."""
        problems = Problems()
        check_types(self, problems)
        problems.raise_any()  # the value rules below assume the types
        for name in ("dataset_dir", "output_dir", "base_model"):
            setattr(self, name, os.fspath(getattr(self, name)))  # paths are kept as text (JSON, comparisons)
            if not getattr(self, name).strip():
                problems.add(name, "must not be empty")
        for name in AT_LEAST_ONE:
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.add(name, f"must be at least 1, got {value}")
        for name in NOT_NEGATIVE:
            if getattr(self, name) < 0:
                problems.add(name, f"must not be negative, got {getattr(self, name)}")
        if not (0 < self.learning_rate < 1) or not math.isfinite(self.learning_rate):
            problems.add("learning_rate", f"must lie in (0, 1), got {self.learning_rate}")
        if self.adapter_dropout >= 1:
            problems.add("adapter_dropout", f"must be below 1, got {self.adapter_dropout}")
        if self.adapter_alpha is not None and self.adapter_alpha <= 0:
            problems.add("adapter_alpha", f"must be positive, got {self.adapter_alpha}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.add("max_grad_norm", f"must be positive (or null for no clipping), got {self.max_grad_norm}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.add("mixed_precision", f"one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        if self.model_dtype not in MODEL_DTYPES:
            problems.add("model_dtype", f"one of {', '.join(MODEL_DTYPES)}, got {self.model_dtype!r}")
        elif self.model_dtype == "bfloat16" and self.adapter_rank is None:
            # AdamW's step is about lr per weight; a bf16 weight keeps 8 bits of mantissa, so at the
            # paper's 1e-6 almost every update rounds away (a 100-step probe moved 1.9 % of the bf16
            # weights, every float32 one). An adapter's weights stay float32 over a bf16 base.
            problems.add("model_dtype", "bfloat16 weights cannot be fully fine-tuned: AdamW's updates (about the "
                                        "learning rate) round away in bf16; train float32 weights (mixed_precision "
                                        "bf16 still computes in bf16) or an adapter (adapter_rank), whose weights "
                                        "stay float32")
        per_device = self.per_device_batch_size
        if per_device is not None and per_device >= 1 and self.batch_size >= 1 and self.batch_size % per_device:
            problems.add("per_device_batch_size", f"{per_device} does not divide the batch of {self.batch_size} pairs")
        problems.raise_any()

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """From a JSON object; unknown or missing options are errors (ConfigError)."""
        return from_dict(cls, values, "training")

    def as_dict(self) -> dict:
        return asdict(self)

    def check_inputs(self) -> dict:
        """The dataset's manifest, after checking that the dataset can be trained on."""
        try:
            manifest = read_manifest(self.dataset_dir)
        except (OSError, ValueError) as exc:
            raise ConfigError("dataset_dir", str(exc)) from None
        if not split_shards(self.dataset_dir, "train"):
            raise ConfigError("dataset_dir", f"{self.dataset_dir} has no train split (data/train-*.parquet)")
        return manifest
