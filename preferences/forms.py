"""The options of a new preference dataset version (admin)."""
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from onereward.bounds import SeedBounds
from onereward.roles import ANNOTATOR

from .export import create_dataset
from .models import PreferenceDataset


class PreferenceDatasetForm(SeedBounds, forms.ModelForm):
    """The options of a new dataset version; saving queues its build (admin)."""

    seed_fields = ("split_seed",)

    formats = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple,
        choices=[("jsonl", "JSON lines (same rows)"), ("trl", "TRL layout (chosen / rejected / images)")],
        help_text="Parquet is always written.")

    class Meta:
        model = PreferenceDataset
        fields = PreferenceDataset.OPTION_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotators"].queryset = get_user_model().objects.filter(
            groups__name=ANNOTATOR.group_name).order_by("username")
        self.fields["name"].help_text = "A new version of this name is made (v1, v2, ...); a slug."
        self.fields["implicit_weight"].required = False
        self.fields["implicit_sources"] = forms.CharField(
            required=False, label="Feedback sources",
            help_text="With production feedback: the sources to include, comma-separated; empty = every one.")

    def clean_implicit_weight(self):
        value = self.cleaned_data.get("implicit_weight")
        return PreferenceDataset._meta.get_field("implicit_weight").default if value is None else value

    def clean_implicit_sources(self):
        return [name.strip() for name in (self.cleaned_data.get("implicit_sources") or "").split(",") if name.strip()]

    def save(self, user=None, commit=True):
        """Create the next version and queue its build; errors land on the form."""
        data = dict(self.cleaned_data)
        relations = {key: data.pop(key) for key in ("batches", "tasks", "dimensions", "annotators")}
        try:
            return create_dataset(user=user, **relations, **data)
        except ValidationError as exc:
            self._update_errors(exc)
            return None


class FeedbackImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL (one event per line) or CSV with the columns source, external_id, "
                                     "event, candidate, input, image, occurred_at (see the README).")
    source = forms.CharField(max_length=100, required=False,
                             help_text="The source of rows that name none (e.g. the product's name).")
