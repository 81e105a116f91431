"""The options of a new preference dataset version (admin)."""
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from onereward.roles import ANNOTATOR

from .export import create_dataset
from .models import PreferenceDataset


class PreferenceDatasetForm(forms.ModelForm):
    """The options of a new dataset version; saving queues its build (admin)."""

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

    def save(self, user=None, commit=True):
        """Create the next version and queue its build; errors land on the form."""
        data = dict(self.cleaned_data)
        relations = {key: data.pop(key) for key in ("batches", "tasks", "dimensions", "annotators")}
        try:
            return create_dataset(user=user, **relations, **data)
        except ValidationError as exc:
            self._update_errors(exc)
            return None
