"""Forms shared by the admin and the pages: one input, or a zip imported in the background."""
from django import forms

from .core.images import CanvasSpec, InputProblem
from .importing import ImportRejected, import_inputs, parse_tags, spec_from_upload
from .models import InputImport, Task
from .validators import validate_prompt_length


class CanvasFields(forms.Form):
    """Extend only: how to build the canvas when no mask is given."""

    canvas_padding = forms.CharField(
        required=False, label="Extend: padding", help_text="left,top,right,bottom in pixels, e.g. 0,0,256,0"
    )
    canvas_size = forms.CharField(required=False, label="Extend: canvas size", help_text="WIDTHxHEIGHT, e.g. 1024x768")
    canvas_ratio = forms.CharField(required=False, label="Extend: aspect ratio", help_text="e.g. 16:9")

    def canvas(self) -> dict | None:
        given = {key: self.cleaned_data.get(f"canvas_{key}") for key in ("padding", "size", "ratio")}
        given = {k: v for k, v in given.items() if v}
        return given or None


def _tasks():
    return Task.objects.filter(active=True)


class InputUploadForm(CanvasFields):
    task = forms.ModelChoiceField(queryset=_tasks(), to_field_name="slug")
    source = forms.FileField(help_text="The image (for extend: the image to place on a larger canvas).")
    mask = forms.FileField(required=False, help_text="White = area to generate. Not needed for extend with a canvas.")
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             validators=[validate_prompt_length])
    tags = forms.CharField(required=False, help_text="Comma-separated.")
    metadata = forms.JSONField(required=False, initial=dict, help_text="A JSON object kept with the input.")

    field_order = [
        "task",
        "source",
        "mask",
        "prompt",
        "canvas_padding",
        "canvas_size",
        "canvas_ratio",
        "tags",
        "metadata",
    ]

    def save(self, user):
        """Import the input; on bad input, add the problems to the form and return None."""
        try:
            spec = spec_from_upload(
                task=self.cleaned_data["task"].slug,
                source=self.cleaned_data["source"],
                mask=self.cleaned_data.get("mask"),
                prompt=self.cleaned_data.get("prompt", ""),
                canvas=self.canvas(),
                tags=parse_tags(self.cleaned_data.get("tags", "")),
                metadata=self.cleaned_data.get("metadata") or {},
            )
            return import_inputs([spec], user=user)[0]
        except InputProblem as problem:
            self.add_error(None, str(problem))
        except ImportRejected as rejected:
            for problem in rejected.problems:
                self.add_error(None, f"{problem.entry}: {problem.problem}")
        return None


class InputArchiveForm(CanvasFields):
    archive = forms.FileField(
        help_text="A .zip of image/mask pairs (NAME.png + NAME_mask.png) or with a manifest.jsonl."
    )
    task = forms.ModelChoiceField(
        queryset=_tasks(), to_field_name="slug", required=False, help_text="For entries that do not name a task."
    )
    prompt = forms.CharField(required=False, help_text="For entries without a prompt of their own.",
                             validators=[validate_prompt_length])
    tags = forms.CharField(required=False, help_text="Comma-separated; added to every input.")

    field_order = ["archive", "task", "prompt", "tags", "canvas_padding", "canvas_size", "canvas_ratio"]

    def clean_archive(self):
        archive = self.cleaned_data["archive"]
        if not archive.name.lower().endswith(".zip"):
            raise forms.ValidationError(f"{archive.name}: give a .zip archive")
        return archive

    def clean(self):
        cleaned = super().clean()
        canvas = self.canvas() if not self.errors else None
        if canvas:
            try:
                CanvasSpec.parse(canvas, "canvas")
            except InputProblem as problem:
                self.add_error(None, problem.problem)
        return cleaned

    def save(self, user) -> InputImport:
        """Store the archive and queue its import; the job row tells how it went."""
        return InputImport.queue(
            self.cleaned_data["archive"],
            task=self.cleaned_data.get("task"),
            prompt=self.cleaned_data.get("prompt", ""),
            tags=parse_tags(self.cleaned_data.get("tags", "")),
            canvas=self.canvas(),
            user=user,
        )
