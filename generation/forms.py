"""The batch launch form of the admin; its rules are GenerationBatch.launch's and Ranges.parse's."""
import secrets

from django import forms
from django.core.exceptions import ValidationError

from inputs.models import Tag, Task
from onereward.bounds import SeedBounds

from .core.sampling import DEFAULT_NEGATIVE_PROMPTS, Ranges
from .models import MIN_CANDIDATES, GenerationBatch, Generator
from .selection import select_inputs

NONE_LABEL = "(none)"


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise ValidationError("input ids are whole numbers separated by commas or spaces") from None


class BatchLaunchForm(SeedBounds, forms.Form):
    name = forms.CharField(required=False, max_length=200)
    generator = forms.ModelChoiceField(queryset=Generator.objects.filter(active=True))
    task = forms.ModelChoiceField(queryset=Task.objects.all(), to_field_name="slug", required=False,
                                  help_text="Inputs of this task…")
    tag = forms.ModelChoiceField(queryset=Tag.objects.all(), to_field_name="name", required=False,
                                 help_text="…and/or with this tag…")
    input_ids = forms.CharField(required=False, label="Input ids", help_text="…and/or these ids (e.g. 3, 7, 12).")
    evaluation = forms.BooleanField(
        required=False, label="For a human evaluation study",
        help_text="Held-out inputs: finished sets make no annotation tasks, and 1 candidate per input is allowed "
                  "(a study shows each arm's first candidate).")
    candidates_per_input = forms.IntegerField(
        initial=4,
        label="Candidates per input (N)",
        help_text=f"At least {MIN_CANDIDATES} for annotation (the paper uses 4); 1 is enough for evaluation.",
    )
    annotation_overlap = forms.IntegerField(
        initial=1,
        min_value=1,
        required=False,
        label="Judgments per input (k)",
        help_text="Each candidate set is judged by this many different annotators.",
    )
    steps_min = forms.IntegerField(initial=Ranges().steps[0])
    steps_max = forms.IntegerField(initial=Ranges().steps[1])
    guidance_min = forms.FloatField(initial=Ranges().guidance[0], label="Guidance min (embedded)")
    guidance_max = forms.FloatField(initial=Ranges().guidance[1], label="Guidance max (embedded)")
    true_cfg_min = forms.FloatField(initial=Ranges().true_cfg[0], label="True CFG min (1 = off)")
    true_cfg_max = forms.FloatField(initial=Ranges().true_cfg[1], label="True CFG max")
    strength_min = forms.FloatField(initial=Ranges().strength[0], label="Initial noise strength min")
    strength_max = forms.FloatField(initial=Ranges().strength[1], label="Initial noise strength max")
    negative_prompts = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False,
        initial="\n".join(p or NONE_LABEL for p in DEFAULT_NEGATIVE_PROMPTS),
        help_text=f"One per line; {NONE_LABEL} means no negative prompt.",
    )
    vary = forms.ChoiceField(choices=[("candidate", "per candidate"), ("input", "per input (seeds differ)")],
                             initial="candidate", label="Draw settings")
    seed = forms.IntegerField(min_value=0, help_text="Every candidate's settings and seed derive from it.")

    field_order = ["name", "generator", "task", "tag", "input_ids", "evaluation", "candidates_per_input"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["seed"].initial = secrets.randbelow(2**31)

    def ranges(self) -> dict:
        data = self.cleaned_data
        lines = [line.strip() for line in (data.get("negative_prompts") or "").splitlines() if line.strip()]
        return {
            "steps": [data.get("steps_min"), data.get("steps_max")],
            "guidance": [data.get("guidance_min"), data.get("guidance_max")],
            "true_cfg": [data.get("true_cfg_min"), data.get("true_cfg_max")],
            "strength": [data.get("strength_min"), data.get("strength_max")],
            "negative_prompts": ["" if line == NONE_LABEL else line for line in lines] or [""],
            "vary": data.get("vary"),
        }

    def save(self, user) -> GenerationBatch | None:
        """Launch the batch, or put every problem on the form and return None."""
        data = self.cleaned_data
        try:
            inputs = select_inputs(task=data["task"].slug if data.get("task") else None,
                                   tag=data["tag"].name if data.get("tag") else None,
                                   ids=_ids(data.get("input_ids") or ""))
            return GenerationBatch.launch(generator=data["generator"], inputs=inputs,
                                          candidates_per_input=data["candidates_per_input"], ranges=self.ranges(),
                                          seed=data["seed"], name=data.get("name", ""), user=user,
                                          annotation_overlap=data.get("annotation_overlap") or 1,
                                          for_annotation=not data.get("evaluation"))
        except ValidationError as error:
            for field, messages in getattr(error, "message_dict", {None: error.messages}).items():
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
            return None
