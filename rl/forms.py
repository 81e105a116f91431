"""The one rule set for starting an RL run and a human study of a checkpoint (admin, API, command line)."""
from django import forms

from generation.demo import DEMO_RL_INITIAL, is_demo_generator
from generation.models import Generator
from inputs.models import Tag
from onereward.bounds import SeedBounds
from onereward.runs import start
from rewardmodel.models import RewardModelVersion

from .models import RLRun

RUN_FIELDS = ["name", "base_generator", "reward_model", "algorithm", "task_probabilities", "train_tags", "eval_tags",
              "reward_cap", "t_start", "t_end", "ema_decay", "learning_rate", "batch_size", "max_steps", "lora_rank",
              "gradient_checkpointing", "seed", "save_every", "processes", "accelerate_config", "extra"]


def start_run(*, user=None, **fields) -> RLRun:
    """Validate, save (with its tags) and queue a run; raises ValidationError naming what is wrong."""
    return start(RLRun, user=user, **fields)


class RLRunForm(SeedBounds, forms.ModelForm):
    """The model's rules, the trainer's config among them, run in its clean() (ModelForm's full_clean)."""

    class Meta:
        model = RLRun
        fields = RUN_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_generator"].queryset = Generator.objects.filter(backend="flux_fill", active=True)
        self.fields["reward_model"].queryset = RewardModelVersion.objects.all()
        self.fields["train_tags"].queryset = Tag.objects.all()
        self.fields["eval_tags"].queryset = Tag.objects.all()
        if not self.is_bound:
            # A new run starts from the newest judge and, by default, the newest FLUX Fill generator
            # (after seed_demo, the demo one): the loop's next step, ready to start.
            self.initial.setdefault("reward_model", RewardModelVersion.objects.order_by("-created_at")
                                    .values_list("pk", flat=True).first())
            self.initial.setdefault("base_generator", self.fields["base_generator"].queryset.order_by("-created_at")
                                    .values_list("pk", flat=True).first())
            chosen = Generator.objects.filter(pk=self.initial.get("base_generator")).first()
            if chosen is not None and is_demo_generator(chosen):
                for name, value in DEMO_RL_INITIAL.items():
                    self.initial.setdefault(name, value)


class HumanStudyForm(forms.Form):
    tags = forms.ModelMultipleChoiceField(queryset=Tag.objects.all(), help_text="Held-out inputs with these tags.")
    judgments_per_item = forms.IntegerField(min_value=1, initial=3)
