"""The one rule set for starting a reward model run and for sending sets back to annotation
(admin, API and command line): the run's rules live on the model, with the trainer's config."""
from django import forms

from onereward.runs import start
from preferences.models import PreferenceDataset

from .demo import DEMO_RUN_INITIAL, default_base_model, is_demo_model
from .models import ReannotationRequest, RewardModelRun

RUN_FIELDS = ["name", "dataset", "base_model", "adapter_rank", "learning_rate", "batch_size", "per_device_batch_size",
              "epochs", "max_steps", "warmup_steps", "gradient_checkpointing", "mixed_precision", "seed", "save_every",
              "processes", "accelerate_config", "zero_shot_eval", "eval_every", "extra"]


def start_run(*, user=None, **fields) -> RewardModelRun:
    """Validate, save and queue a run; raises ValidationError naming what is wrong."""
    return start(RewardModelRun, user=user, **fields)


class RewardModelRunForm(forms.ModelForm):
    """The model's rules, the trainer's config among them, run in its clean() (ModelForm's full_clean)."""

    class Meta:
        model = RewardModelRun
        fields = RUN_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = PreferenceDataset.objects.filter(status="done").order_by("name", "-version")
        if not self.is_bound and is_demo_model(self.initial.get("base_model") or default_base_model()):
            for name, value in DEMO_RUN_INITIAL.items():
                self.initial.setdefault(name, value)
            self.fields["base_model"].help_text += " Now: the demo judge (small, random weights)."


class SendBackForm(forms.Form):
    reason = forms.ChoiceField(choices=ReannotationRequest.Reason.choices)
    count = forms.IntegerField(min_value=1, initial=50, help_text="Candidate sets to send back.")
    extra_judgments = forms.IntegerField(min_value=1, initial=2, help_text="More judgments wanted for each.")
