"""RL runs and the policy checkpoints they register.

A run optimises a FLUX Fill generator against a reward model version with OneReward (METHOD.md
§4-§5, rl/core/onereward.py) on a GPU worker, in a directory of its own under ONEREWARD_TRAINING_DIR.
A finished run registers a PolicyCheckpoint, which is also a Generator: the next generation batch
can use it, and a human study can compare it with its base. Links go back: checkpoint -> run ->
reward model version -> dataset version -> judgments.
"""
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import models

from onereward.jobs import BackgroundJob
from onereward.runs import TrainingRun, config_default, thin

from .core.config import OneRewardConfig


def default(name: str):
    return config_default(OneRewardConfig, name)


class Algorithm(models.TextChoices):
    FIXED = "fixed", "Algorithm 1: fixed reference (the base), EMA of the policy kept"
    DYNAMIC = "dynamic", "Algorithm 2: the reference is the EMA of the policy"


class RLRun(TrainingRun):
    task_name = "rl.core.train"
    trainer_module = "rl.core.train"
    config_class = OneRewardConfig
    accelerate_dir = Path(__file__).resolve().parent / "core" / "accelerate"
    runs_folder = "rl"
    # t_range is the pair (t_start, t_end): its errors show on the second; the judge is a version's path.
    config_field_names = {"t_range": "t_end", "judge": "reward_model"}

    base_generator = models.ForeignKey("generation.Generator", on_delete=models.PROTECT, related_name="rl_runs",
                                       help_text="A FLUX Fill generator: the policy starts from it.")
    reward_model = models.ForeignKey("rewardmodel.RewardModelVersion", on_delete=models.PROTECT,
                                     related_name="rl_runs")
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices, default=default("algorithm"))
    task_probabilities = models.JSONField(
        default=dict, blank=True, help_text='{"image_fill": 0.5, ...}; empty = the tasks\' RL probabilities.')
    train_tags = models.ManyToManyField("inputs.Tag", blank=True, related_name="+",
                                        help_text="The condition pool: inputs with these tags (empty = every input).")
    eval_tags = models.ManyToManyField("inputs.Tag", blank=True, related_name="+",
                                       help_text="Held-out inputs for the judge's evaluation of the checkpoint.")
    reward_cap = models.FloatField(default=default("reward_cap"),
                                   help_text="lambda: no gradient once P(Yes) reaches it.")
    t_start = models.FloatField(default=default("t_range")[0],
                                help_text="t1: the earliest share of the schedule the policy stops at.")
    t_end = models.FloatField(default=default("t_range")[1], help_text="t2: the latest share of the schedule.")
    ema_decay = models.FloatField(default=default("ema_decay"), help_text="tau")
    learning_rate = models.FloatField(default=default("learning_rate"))
    batch_size = models.PositiveIntegerField(default=default("batch_size"))
    max_steps = models.PositiveIntegerField(default=default("max_steps"))
    lora_rank = models.PositiveSmallIntegerField(null=True, blank=True, default=default("lora_rank"),
                                                 help_text="Empty = full fine-tuning.")
    gradient_checkpointing = models.BooleanField(default=default("gradient_checkpointing"))
    seed = models.BigIntegerField(default=default("seed"))
    save_every = models.PositiveIntegerField(default=default("save_every"))
    processes = models.PositiveSmallIntegerField(default=1)
    accelerate_config = models.CharField(max_length=32, blank=True, choices=[("", "default (DDP)"), ("ddp", "ddp"),
                                                                              ("fsdp", "fsdp")])
    extra = models.JSONField(default=dict, blank=True, help_text="More OneRewardConfig fields (JSON object).")
    # Live progress beyond the shared figures, copied from the trainer's progress file.
    reward_mean = models.FloatField(null=True, blank=True)
    reward_history = models.JSONField(default=list, blank=True,
                                      help_text='[[step, {"task/dimension": reward, ...}], ...] for the curves.')
    training_history = models.JSONField(default=list, blank=True,
                                        help_text="[[step, loss, hinge share, gradient norm], ...] for the curves.")

    class Meta(TrainingRun.Meta):
        verbose_name = "RL run"

    def __str__(self):
        return self.name or f"RL run #{self.pk}"

    def platform_errors(self) -> dict:
        errors = {}
        if self.base_generator_id and self.base_generator.backend != "flux_fill":
            errors["base_generator"] = "RL optimises a FLUX Fill generator (backend flux_fill)"
        return errors

    def row_config(self) -> dict:
        """The trainer's configuration (rl.core.config.OneRewardConfig fields)."""
        output = self.output_dir
        config = {
            "conditions_dir": str(output / "conditions"),
            "output_dir": str(output),
            "base_generator": self.base_generator.settings,
            "judge": self.reward_model.model_path,
            "algorithm": self.algorithm,
            "reward_cap": self.reward_cap,
            "t_range": [self.t_start, self.t_end],
            "ema_decay": self.ema_decay,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "lora_rank": self.lora_rank,
            "gradient_checkpointing": self.gradient_checkpointing,
            "seed": self.seed,
            "save_every": self.save_every,
        }
        if self.task_probabilities:
            config["task_probabilities"] = self.task_probabilities
        # An unsaved run (being validated) has no tags yet; the path is only written for a saved one.
        if self.pk and self.eval_tags.exists():
            config["eval_inputs"] = str(output / "eval-conditions")
        return config

    def progress_fields(self, progress: dict) -> dict:
        fields = super().progress_fields(progress)
        history = list(self.reward_history)
        step = progress.get("step")
        if step is not None and progress.get("rewards") and (not history or history[-1][0] != step):
            history = thin([*history, [step, progress["rewards"]]])
        return {**fields, "reward_mean": progress.get("reward_mean"), "reward_history": history}


class PolicyCheckpoint(models.Model):
    """A trained policy, registered as a generator for the next batch."""

    run = models.OneToOneField(RLRun, on_delete=models.PROTECT, related_name="checkpoint")
    generator = models.OneToOneField("generation.Generator", on_delete=models.PROTECT,
                                     related_name="policy_checkpoint")
    path = models.CharField(max_length=500, help_text="The saved policy (adapter or transformer) on the GPU hosts.")
    steps = models.PositiveIntegerField(default=0)
    final_reward = models.FloatField(null=True, blank=True)
    evaluation = models.JSONField(default=dict, blank=True,
                                  help_text="The judge's win rate against the base per task x dimension.")
    # A human study against the base: its two evaluation batches, then the study once both are done.
    study_batches = models.ManyToManyField("generation.GenerationBatch", blank=True, related_name="+")
    study = models.ForeignKey("evaluation.Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    study_judgments_per_item = models.PositiveSmallIntegerField(default=3)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.generator.name

    @property
    def is_full_fine_tune(self) -> bool:
        """The policy is its own transformer (no LoRA in its generator's settings)."""
        return not (self.generator.settings or {}).get("loras")

    def export_problem(self, format: str) -> str | None:
        """Why this checkpoint cannot be exported as `format` (None when it can)."""
        if format not in ExportFormat.values:
            return f"unknown export format {format!r}; expected one of {', '.join(ExportFormat.values)}"
        if format == ExportFormat.LORA and self.is_full_fine_tune:
            return (f"{self} is a full fine-tune (its own transformer, no LoRA); export it as the merged transformer "
                    f"instead")
        return None


class ExportFormat(models.TextChoices):
    LORA = "lora", "LoRA file (.safetensors, diffusers and ComfyUI)"
    MERGED = "merged", "Merged transformer (.safetensors)"


class PolicyExport(BackgroundJob):
    """A checkpoint's policy written as a designer's file (rl/core/export.py), kept in storage for
    download; one per checkpoint and format, made again on request."""

    task_name = "rl.export_policy"

    checkpoint = models.ForeignKey(PolicyCheckpoint, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    file = models.FileField(max_length=300, blank=True, help_text="The exported file in storage.")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes.")
    details = models.JSONField(default=dict, blank=True,
                               help_text="What the export wrote: modules, rank, dtype, what a LoRA applies to.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["checkpoint", "format"], name="rl_one_export_per_format")]

    def __str__(self):
        return f"{self.checkpoint} ({self.get_format_display()})"

    def clean(self):
        problem = self.checkpoint.export_problem(self.format) if self.checkpoint_id else None
        if problem:
            raise ValidationError({"format": ValidationError(problem, code="format")})


# Collection rounds and their schedules (rl/rounds.py), registered with the app's models here.
from .rounds import CollectionRound, CollectionSchedule, CollectionSet  # noqa: E402, F401
