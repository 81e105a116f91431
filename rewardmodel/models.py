"""Reward model runs and the reward model versions they register.

A run trains the judge (rewardmodel/core/judge.py, rewardmodel/core/training.py) on one preference dataset
version, on a GPU worker, in a directory of its own under ONEREWARD_TRAINING_DIR; a finished run
registers a RewardModelVersion with its evaluation table. Links go back to the data: version ->
run -> dataset version -> judgments.
"""
from pathlib import Path

from django.conf import settings
from django.db import models

from onereward.jobs import BackgroundJob
from onereward.runs import TrainingRun, config_default, thin

from .core.config import MIXED_PRECISION, TrainingConfig
from .demo import default_base_model

ACCELERATE_CONFIGS = ["", "ddp", "fsdp", "deepspeed_zero3"]


def default(name: str):
    return config_default(TrainingConfig, name)


class RewardModelRun(TrainingRun):
    """Training of the VLM judge on a dataset version, with the paper's defaults (batch 16, lr 1e-6)."""

    task_name = "rewardmodel.core.train"
    trainer_module = "rewardmodel.core.train"
    config_class = TrainingConfig
    accelerate_dir = Path(__file__).resolve().parent / "core" / "accelerate"
    runs_folder = "reward-models"

    dataset = models.ForeignKey("preferences.PreferenceDataset", on_delete=models.PROTECT,
                                related_name="reward_model_runs")
    base_model = models.CharField(max_length=500, default=default_base_model,
                                  help_text="A Qwen2-VL family model: a directory on the GPU hosts or a hub id "
                                            "(default: the demo judge once seed_demo has built it).")
    adapter_rank = models.PositiveSmallIntegerField(null=True, blank=True,
                                                    help_text="LoRA rank; empty = full fine-tune.")
    learning_rate = models.FloatField(default=default("learning_rate"))
    batch_size = models.PositiveIntegerField(default=default("batch_size"),
                                             help_text="Global batch: per device x processes x accumulation.")
    per_device_batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty = batch / processes (accumulation makes up the rest).")
    epochs = models.PositiveIntegerField(default=default("epochs"))
    max_steps = models.PositiveIntegerField(null=True, blank=True, help_text="Stop after this many steps.")
    warmup_steps = models.PositiveIntegerField(default=default("warmup_steps"))
    gradient_checkpointing = models.BooleanField(default=default("gradient_checkpointing"))
    mixed_precision = models.CharField(max_length=8, default=default("mixed_precision"),
                                       choices=[(v, v) for v in MIXED_PRECISION])
    seed = models.BigIntegerField(default=default("seed"))
    save_every = models.PositiveIntegerField(default=default("save_every"),
                                             help_text="Checkpoint every this many steps (resume point).")
    processes = models.PositiveSmallIntegerField(default=1, help_text="Processes for `accelerate launch` (GPUs).")
    accelerate_config = models.CharField(
        max_length=32, blank=True, choices=[(v, v or "default (DDP)") for v in ACCELERATE_CONFIGS],
        help_text="A config of rewardmodel/core/accelerate/ for several processes (FSDP or DeepSpeed for 7B).")
    zero_shot_eval = models.BooleanField(default=default("zero_shot_eval"),
                                         help_text="Also evaluate the base model before training.")
    eval_every = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="Validation loss and accuracy every this many steps.")
    extra = models.JSONField(default=dict, blank=True, help_text="More TrainingConfig fields (JSON object).")
    # Live progress beyond the shared figures, copied from the trainer's progress file.
    samples_per_second = models.FloatField(null=True, blank=True)
    loss_history = models.JSONField(default=list, blank=True, help_text="[[step, loss], ...] for the plot.")
    validation_history = models.JSONField(
        default=list, blank=True, help_text="[[step, forward %, reversed %, mean %], ...] on the validation split.")

    def __str__(self):
        return self.name or f"Reward model run #{self.pk}"

    def platform_errors(self) -> dict:
        errors = {}
        if self.dataset_id and self.dataset.status != "done":
            state = self.dataset.get_status_display().lower()
            errors["dataset"] = f"dataset {self.dataset} is not built yet ({state})"
        if self.dataset_id and self.dataset.status == "done" and not self.dataset.counts:
            errors["dataset"] = f"dataset {self.dataset} holds no pairs"
        # The config knows the batch but not the process layout, which is the launch's.
        if self.processes and self.processes > 1 and self.per_device_batch_size and self.batch_size and \
                self.batch_size % (self.per_device_batch_size * self.processes):
            errors["batch_size"] = "the batch must be a multiple of per-device batch x processes"
        return errors

    def row_config(self) -> dict:
        """The trainer's configuration (rewardmodel.core.config.TrainingConfig fields)."""
        return {
            "dataset_dir": str(self.output_dir / "dataset"),
            "output_dir": str(self.output_dir),
            "base_model": self.base_model,
            "adapter_rank": self.adapter_rank,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "per_device_batch_size": self.per_device_batch_size,
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "warmup_steps": self.warmup_steps,
            "gradient_checkpointing": self.gradient_checkpointing,
            "mixed_precision": self.mixed_precision,
            "seed": self.seed,
            "save_every": self.save_every,
            "zero_shot_eval": self.zero_shot_eval,
            "eval_every": self.eval_every,
        }

    def training_config(self) -> dict:
        config = super().training_config()
        # Weak pairs (production feedback) count for their weight unless the extra options say otherwise.
        if self.dataset_id and (self.dataset.manifest or {}).get("weak_pairs") and \
                "weighted_loss" not in (self.extra or {}):
            config["weighted_loss"] = True
        return config

    def progress_fields(self, progress: dict) -> dict:
        fields = super().progress_fields(progress)
        history = list(self.loss_history)
        step, loss = progress.get("step"), progress.get("loss")
        if step is not None and loss is not None and (not history or history[-1][0] != step):
            history = thin([*history, [step, loss]])
        return {**fields, "samples_per_second": progress.get("samples_per_second"), "loss_history": history}


class RewardModelVersion(models.Model):
    """A trained judge: where its weights are, how it was trained, how well it does."""

    run = models.OneToOneField(RewardModelRun, on_delete=models.PROTECT, related_name="version")
    name = models.CharField(max_length=200, unique=True)
    model_path = models.CharField(max_length=500, help_text="The saved judge (a directory on the GPU hosts).")
    base_model = models.CharField(max_length=500)
    template_version = models.PositiveIntegerField(
        help_text="Version of the reward query template it was trained with.")
    evaluation = models.JSONField(default=dict, blank=True,
                                  help_text="Accuracy per task x dimension on the test split.")
    zero_shot = models.JSONField(default=dict, blank=True, help_text="The base model's accuracy before training.")
    steps = models.PositiveIntegerField(default=0)
    final_loss = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    @property
    def scores_path(self):
        return self.run.output_dir / "test_scores.parquet"


class ReannotationRequest(models.Model):
    """Candidate sets sent back to annotation because of what a reward model said about them."""

    class Reason(models.TextChoices):
        DISAGREEMENT = "disagreement", "The judge disagrees most with the annotators"
        UNCERTAINTY = "uncertainty", "The judge is least certain"

    version = models.ForeignKey(RewardModelVersion, on_delete=models.CASCADE, related_name="reannotation_requests")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    extra_judgments = models.PositiveSmallIntegerField(default=1)
    tasks = models.ManyToManyField("annotation.AnnotationTask", related_name="reannotation_requests")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_reason_display()} ({self.version}, {self.tasks.count()} tasks)"


class JudgeAblation(BackgroundJob):
    """Trained judges (and, optionally, a base model zero-shot) scored on a dataset version's test
    split under query variants, beside the held-out human judgments (rewardmodel/core/ablation.py).
    Started by rewardmodel.ablation.start_ablation (admin, API, command), run on a GPU worker."""

    task_name = "rewardmodel.judge_ablation"

    name = models.CharField(max_length=200, blank=True)
    versions = models.ManyToManyField(RewardModelVersion, blank=True, related_name="ablations")
    dataset = models.ForeignKey("preferences.PreferenceDataset", on_delete=models.PROTECT, related_name="ablations",
                                help_text="Whose test split is scored: the versions' training dataset.")
    base_model = models.CharField(max_length=500, blank=True,
                                  help_text="A base model run zero-shot beside the versions (a directory on the GPU "
                                            "hosts or a hub id); empty = none.")
    variants = models.JSONField(default=list, help_text='Query variants, e.g. ["v1", "v2", "v1+no-prompt", '
                                                        '"v1+source"].')
    batch_size = models.PositiveIntegerField(default=16, help_text="Pairs per forward pass (both orders).")
    results = models.JSONField(default=dict, blank=True, help_text="The side-by-side report.")
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name or f"Judge ablation #{self.pk}"

    @property
    def output_dir(self) -> Path:
        """Where the per-column scores are kept (a retried job skips the columns already scored)."""
        return settings.ONEREWARD_TRAINING_DIR / "ablations" / f"ablation-{self.pk}"
