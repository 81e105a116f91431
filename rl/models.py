"""RL runs and the policy checkpoints they register.

A run optimises a FLUX Fill generator against a reward model version with OneReward (METHOD.md
§4-§5, rl/onereward.py) on a GPU worker, in a directory of its own under ONEREWARD_TRAINING_DIR.
A finished run registers a PolicyCheckpoint, which is also a Generator: the next generation batch
can use it, and a human study can compare it with its base. Links go back: checkpoint -> run ->
reward model version -> dataset version -> judgments.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from onereward.jobs import BackgroundJob


class Algorithm(models.TextChoices):
    FIXED = "fixed", "Algorithm 1: fixed reference (the base), EMA of the policy kept"
    DYNAMIC = "dynamic", "Algorithm 2: the reference is the EMA of the policy"


class RLRun(BackgroundJob):
    task_name = "rl.core.train"

    name = models.CharField(max_length=200, blank=True)
    base_generator = models.ForeignKey("generation.Generator", on_delete=models.PROTECT, related_name="rl_runs",
                                       help_text="A FLUX Fill generator: the policy starts from it.")
    reward_model = models.ForeignKey("rewardmodel.RewardModelVersion", on_delete=models.PROTECT,
                                     related_name="rl_runs")
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices, default=Algorithm.DYNAMIC)
    task_probabilities = models.JSONField(
        default=dict, blank=True, help_text='{"image_fill": 0.5, ...}; empty = the tasks\' RL probabilities.')
    train_tags = models.ManyToManyField("inputs.Tag", blank=True, related_name="+",
                                        help_text="The condition pool: inputs with these tags (empty = every input).")
    eval_tags = models.ManyToManyField("inputs.Tag", blank=True, related_name="+",
                                       help_text="Held-out inputs for the judge's evaluation of the checkpoint.")
    reward_cap = models.FloatField(default=0.9, help_text="lambda: no gradient once P(Yes) reaches it.")
    t_start = models.FloatField(default=0.6, help_text="t1: the earliest share of the schedule the policy stops at.")
    t_end = models.FloatField(default=0.75, help_text="t2: the latest share of the schedule.")
    ema_decay = models.FloatField(default=0.99, help_text="tau")
    learning_rate = models.FloatField(default=1e-5)
    batch_size = models.PositiveIntegerField(default=8)
    max_steps = models.PositiveIntegerField(default=8000)
    lora_rank = models.PositiveSmallIntegerField(null=True, blank=True, default=32,
                                                 help_text="Empty = full fine-tuning.")
    gradient_checkpointing = models.BooleanField(default=True)
    seed = models.BigIntegerField(default=0)
    save_every = models.PositiveIntegerField(default=200)
    processes = models.PositiveSmallIntegerField(default=1)
    accelerate_config = models.CharField(max_length=32, blank=True, choices=[("", "default (DDP)"), ("ddp", "ddp"),
                                                                              ("fsdp", "fsdp")])
    extra = models.JSONField(default=dict, blank=True, help_text="More OneRewardConfig fields (JSON object).")
    # Live progress, copied from the trainer's progress file.
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    reward_mean = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    reward_history = models.JSONField(default=list, blank=True,
                                      help_text='[[step, {"task/dimension": reward, ...}], ...] for the curves.')
    training_history = models.JSONField(default=list, blank=True,
                                        help_text="[[step, loss, hinge share, gradient norm], ...] for the curves.")
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "RL run"

    def __str__(self):
        return self.name or f"RL run #{self.pk}"

    def clean(self):
        errors = {}
        if self.base_generator_id and self.base_generator.backend != "flux_fill":
            errors["base_generator"] = "RL optimises a FLUX Fill generator (backend flux_fill)"
        if not 0 < (self.reward_cap or 0) <= 1:
            errors["reward_cap"] = "lambda lies in (0, 1]"
        if not 0 <= (self.t_start or 0) < (self.t_end or 0) <= 1:
            errors["t_end"] = "0 <= t1 < t2 <= 1 (shares of the sampling schedule)"
        if not 0 < (self.ema_decay or 0) < 1:
            errors["ema_decay"] = "tau lies in (0, 1)"
        if not 0 < (self.learning_rate or 0) < 1:
            errors["learning_rate"] = "a learning rate lies in (0, 1)"
        probabilities = self.task_probabilities or {}
        if not isinstance(probabilities, dict) or any(
                not isinstance(v, (int, float)) or v < 0 for v in probabilities.values()):
            errors["task_probabilities"] = 'a JSON object of non-negative numbers, e.g. {"image_fill": 0.5}'
        elif probabilities and sum(probabilities.values()) <= 0:
            errors["task_probabilities"] = "at least one task needs a probability above 0"
        if not isinstance(self.extra, dict):
            errors["extra"] = "a JSON object of OneRewardConfig fields"
        if errors:
            raise ValidationError(errors)

    @property
    def output_dir(self):
        return settings.ONEREWARD_TRAINING_DIR / "rl" / f"run-{self.pk}"


class PolicyCheckpoint(models.Model):
    """A trained policy, registered as a generator for the next batch."""

    run = models.OneToOneField(RLRun, on_delete=models.PROTECT, related_name="checkpoint")
    generator = models.OneToOneField("generation.Generator", on_delete=models.PROTECT, related_name="policy_checkpoint")
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
