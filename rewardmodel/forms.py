"""The one rule set for starting a reward model run and for sending sets back to annotation
(admin, API and command line): the run's rules live on the model, with the trainer's config."""
from django import forms

from onereward.bounds import SeedBounds
from onereward.runs import start
from preferences.models import PreferenceDataset

from .ablation import check_ablation
from .core.query import TEMPLATE_VERSION, TEMPLATES
from .demo import DEMO_RUN_INITIAL, default_base_model, is_demo_model
from .models import JudgeAblation, ReannotationRequest, RewardModelRun, RewardModelVersion

RUN_FIELDS = ["name", "dataset", "base_model", "adapter_rank", "learning_rate", "batch_size", "per_device_batch_size",
              "epochs", "max_steps", "warmup_steps", "gradient_checkpointing", "mixed_precision", "seed", "save_every",
              "processes", "accelerate_config", "zero_shot_eval", "eval_every", "extra"]


def start_run(*, user=None, **fields) -> RewardModelRun:
    """Validate, save and queue a run; raises ValidationError naming what is wrong."""
    return start(RewardModelRun, user=user, **fields)


class RewardModelRunForm(SeedBounds, forms.ModelForm):
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


class JudgeAblationForm(forms.ModelForm):
    """An ablation from the admin: the variants are every combination of the wordings, prompt and
    image choices ticked; the rules are rewardmodel.ablation.check_ablation's, as for the API and
    the command line."""

    zero_shot = forms.BooleanField(required=False, label="Zero-shot base",
                                   help_text="Also run the versions' base model untrained (or the base model named "
                                             "below).")
    templates = forms.TypedMultipleChoiceField(
        coerce=int, choices=[(version, f"v{version}") for version in sorted(TEMPLATES)], initial=[TEMPLATE_VERSION],
        widget=forms.CheckboxSelectMultiple, label="Query wordings",
        help_text=f"Template versions (rewardmodel/core/query.py); v{TEMPLATE_VERSION} is the one judges train on.")
    prompt = forms.MultipleChoiceField(
        choices=[("with", "with the prompt, for the dimensions that use it (the method)"),
                 ("without", "without the prompt")], initial=["with"], widget=forms.CheckboxSelectMultiple,
        label="Prompt in the query")
    images = forms.MultipleChoiceField(
        choices=[("two", "the two candidates (the method)"),
                 ("source", "the source image with its mask tinted red, then the two candidates")],
        initial=["two"], widget=forms.CheckboxSelectMultiple, label="Images shown")

    field_order = ["name", "versions", "dataset", "zero_shot", "base_model", "templates", "prompt", "images",
                   "batch_size"]

    class Meta:
        model = JudgeAblation
        fields = ["name", "versions", "dataset", "base_model", "batch_size"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["versions"].queryset = RewardModelVersion.objects.select_related("run__dataset").order_by("name")
        self.fields["versions"].help_text = "Trained judges, all of one dataset version."
        self.fields["dataset"].required = False
        self.fields["dataset"].queryset = PreferenceDataset.objects.filter(status="done").order_by("name", "-version")
        self.fields["dataset"].help_text = "Empty = the versions' own; needed only for a base model alone."

    def clean(self):
        cleaned = super().clean()
        if any(name in self.errors for name in ("templates", "prompt", "images")):
            return cleaned
        variants = [f"v{version}" + ("+no-prompt" if prompt == "without" else "") + ("+source" if images == "source"
                                                                                       else "")
                    for version in cleaned.get("templates") or [] for prompt in cleaned.get("prompt") or []
                    for images in cleaned.get("images") or []]
        if not variants:
            self.add_error("templates", "tick at least one wording, one prompt choice and one image choice")
            return cleaned
        try:
            checked = check_ablation(versions=cleaned.get("versions") or [], dataset=cleaned.get("dataset"),
                                     base_model=cleaned.get("base_model") or "", zero_shot=cleaned.get("zero_shot"),
                                     variants=variants, batch_size=cleaned.get("batch_size"))
        except forms.ValidationError as exc:
            for name, messages in exc.message_dict.items():
                self.add_error("templates" if name == "variants" else name, messages)
            return cleaned
        cleaned["dataset"], cleaned["base_model"] = checked["dataset"], checked["base_model"]
        self.instance.variants = checked["variants"]
        return cleaned
