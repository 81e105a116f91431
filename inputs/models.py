"""Inputs to edit, and the taxonomy of tasks and evaluation dimensions they are judged on.

The taxonomy is data (seeded by a migration, editable in the admin): the reward model and the RL
loop read a task's dimensions from here, so a new task or dimension needs no code change.
"""
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from onereward.jobs import BackgroundJob

from .core import taxonomy
from .storage import delete_files, save_file


class PromptMode(models.TextChoices):
    REQUIRED = taxonomy.REQUIRED, "The user gives a prompt"
    OPTIONAL = taxonomy.OPTIONAL, "A prompt may be given; otherwise the task's default prompt is used"
    FIXED = taxonomy.FIXED, "Always the task's default prompt"


class InputKind(models.TextChoices):
    MASKED = "masked", "Image and mask (white = area to generate)"
    CANVAS = "canvas", "Source placed on a larger canvas; the mask is the new border"


class Dimension(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    definition = models.TextField(help_text="Shown to annotators and put into the reward query.")
    order = models.PositiveSmallIntegerField(default=0)
    query_includes_prompt = models.BooleanField(
        default=False, help_text="The reward query for this dimension quotes the input's prompt (text alignment).")

    class Meta:
        db_table = "annotation_dimension"
        ordering = ["order", "slug"]

    def __str__(self):
        return self.name


class Task(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    input_kind = models.CharField(max_length=16, choices=InputKind.choices, default=InputKind.MASKED)
    prompt_mode = models.CharField(max_length=16, choices=PromptMode.choices, default=PromptMode.REQUIRED)
    default_prompt = models.CharField(
        max_length=500, blank=True, help_text="Used when the prompt is fixed, or optional and not given."
    )
    rl_probability = models.FloatField(
        default=0.0, help_text="Probability of sampling this task in an RL step (the paper: 0.5/0.25/0.25)."
    )
    order = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)
    dimensions = models.ManyToManyField(Dimension, through="TaskDimension", related_name="tasks")

    class Meta:
        db_table = "annotation_task"
        ordering = ["order", "slug"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.prompt_mode == PromptMode.FIXED and not self.default_prompt.strip():
            raise ValidationError({"default_prompt": "A task with a fixed prompt needs its default prompt."})
        if not 0.0 <= self.rl_probability <= 1.0:
            raise ValidationError({"rl_probability": "A probability lies between 0 and 1."})

    def effective_prompt(self, prompt: str) -> str:
        """The prompt the generator and the reward query see for a user prompt (maybe empty)."""
        return taxonomy.effective_prompt(self.prompt_mode, self.default_prompt, prompt)

    def judged_dimensions(self, prompt_given: bool) -> list[Dimension]:
        """The dimensions an input of this task is judged on, in order."""
        links = list(self.task_dimensions.select_related("dimension").order_by("order", "dimension__order"))
        return taxonomy.judged_dimensions([link.dimension for link in links],
                                          {link.dimension for link in links if link.only_with_prompt}, prompt_given)


class TaskDimension(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="task_dimensions")
    dimension = models.ForeignKey(Dimension, on_delete=models.PROTECT, related_name="task_links")
    order = models.PositiveSmallIntegerField(default=0)
    only_with_prompt = models.BooleanField(
        default=False, help_text="Judged only when the input has a user prompt (text alignment on extend)."
    )

    class Meta:
        db_table = "annotation_taskdimension"
        ordering = ["task", "order"]
        constraints = [models.UniqueConstraint(fields=["task", "dimension"], name="unique_task_dimension")]

    def __str__(self):
        return f"{self.task} / {self.dimension}"


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "annotation_tag"
        ordering = ["name"]

    def __str__(self):
        return self.name


class Input(models.Model):
    """One condition: a source image, a binary mask (white = generate) and a prompt, for a task."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="inputs")
    prompt = models.TextField(blank=True, help_text="The user prompt; empty where the task's default applies.")
    source = models.FileField(max_length=255, help_text="RGB PNG, the canvas the generator edits.")
    mask = models.FileField(max_length=255, help_text="Greyscale PNG, 255 = generate, 0 = keep.")
    thumbnail = models.FileField(max_length=255, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mask_coverage = models.FloatField(help_text="Share of the canvas under the mask, in (0, 1).")
    content_hash = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of task, prompt, source pixels and mask pixels."
    )
    original_name = models.CharField(max_length=255, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="inputs")
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotation_input"
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"#{self.pk} {self.task.slug}: {self.original_name or self.prompt[:40]}"

    @property
    def effective_prompt(self) -> str:
        return self.task.effective_prompt(self.prompt)

    @property
    def prompt_given(self) -> bool:
        return taxonomy.prompt_given(self.prompt)

    def judged_dimensions(self) -> list[Dimension]:
        return self.task.judged_dimensions(self.prompt_given)


class InputImport(BackgroundJob):
    """A zip of inputs imported in the background: all of it, or none of it and every problem."""

    task_name = "inputs.import_inputs_archive"

    archive = models.FileField(
        max_length=255, blank=True, help_text="The uploaded zip, removed once imported or refused."
    )
    original_name = models.CharField(max_length=255)
    defaults = models.JSONField(
        default=dict, blank=True, help_text="For entries that do not say otherwise: {task, prompt, tags, canvas}."
    )
    created_inputs = models.ManyToManyField(Input, blank=True, related_name="imports")
    problems = models.JSONField(default=list, blank=True, help_text="Every bad entry: {entry, problem}.")

    class Meta:
        db_table = "annotation_inputimport"
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.original_name} ({self.get_status_display()})"

    @classmethod
    def queue(cls, archive, *, task=None, prompt="", tags=(), canvas=None, user=None) -> "InputImport":
        """Store an uploaded zip and hand its import to a worker (admin form and API alike)."""
        stored = save_file(f"imports/{uuid.uuid4().hex}/archive.zip", archive)
        try:
            job = cls.objects.create(
                archive=stored,
                original_name=archive.name[:255],
                defaults={
                    "task": task.slug if task else None,
                    "prompt": prompt or "",
                    "tags": list(tags),
                    "canvas": canvas,
                },
                created_by=user,
            )
        except BaseException:
            delete_files([stored])  # no row, so no file (nor folder) either
            raise
        job.enqueue()
        return job
