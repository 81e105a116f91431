"""The one rule set for starting a reward model run and for sending sets back to annotation
(admin, API and command line)."""
from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction

from preferences.models import PreferenceDataset

from .models import ReannotationRequest, RewardModelRun

RUN_FIELDS = ["name", "dataset", "base_model", "adapter_rank", "learning_rate", "batch_size", "per_device_batch_size",
              "epochs", "max_steps", "warmup_steps", "gradient_checkpointing", "mixed_precision", "seed", "save_every",
              "processes", "accelerate_config", "zero_shot_eval", "eval_every", "extra"]


def start_run(*, user=None, **fields) -> RewardModelRun:
    """Validate, save and queue a run; raises ValidationError naming what is wrong."""
    run = RewardModelRun(created_by=user, **fields)
    run.full_clean(exclude=["created_by"])
    with transaction.atomic():
        run.save()
        run.enqueue()
    return run


class RewardModelRunForm(forms.ModelForm):
    class Meta:
        model = RewardModelRun
        fields = RUN_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = PreferenceDataset.objects.filter(status="done").order_by("name", "-version")

    def save(self, user=None, commit=True):
        try:
            return start_run(user=user, **self.cleaned_data)
        except ValidationError as exc:
            self._update_errors(exc)
            return None


class SendBackForm(forms.Form):
    reason = forms.ChoiceField(choices=ReannotationRequest.Reason.choices)
    count = forms.IntegerField(min_value=1, initial=50, help_text="Candidate sets to send back.")
    extra_judgments = forms.IntegerField(min_value=1, initial=2, help_text="More judgments wanted for each.")
