"""Inputs to edit, and the taxonomy of tasks and evaluation dimensions they are judged on.

The taxonomy is data (seeded by a migration, editable in the admin): the reward model and the RL
loop read a task's dimensions from here, so a new task or dimension needs no code change.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from onereward.jobs import BackgroundJob


class PromptMode(models.TextChoices):
    REQUIRED = "required", "The user gives a prompt"
    OPTIONAL = "optional", "A prompt may be given; otherwise the task's default prompt is used"
    FIXED = "fixed", "Always the task's default prompt"


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
        ordering = ["order", "slug"]

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.prompt_mode == PromptMode.FIXED and not self.default_prompt.strip():
            raise ValidationError({"default_prompt": "A task with a fixed prompt needs its default prompt."})
        if not 0.0 <= self.rl_probability <= 1.0:
            raise ValidationError({"rl_probability": "A probability lies between 0 and 1."})

    def effective_prompt(self, prompt: str) -> str:
        """The prompt the generator and the reward query see for a user prompt (maybe empty)."""
        if self.prompt_mode == PromptMode.FIXED:
            return self.default_prompt
        return prompt.strip() or self.default_prompt

    def judged_dimensions(self, prompt_given: bool) -> list[Dimension]:
        """The dimensions an input of this task is judged on, in order."""
        links = self.task_dimensions.select_related("dimension").order_by("order", "dimension__order")
        return [link.dimension for link in links if prompt_given or not link.only_with_prompt]


class TaskDimension(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="task_dimensions")
    dimension = models.ForeignKey(Dimension, on_delete=models.PROTECT, related_name="task_links")
    order = models.PositiveSmallIntegerField(default=0)
    only_with_prompt = models.BooleanField(
        default=False, help_text="Judged only when the input has a user prompt (text alignment on extend)."
    )

    class Meta:
        ordering = ["task", "order"]
        constraints = [models.UniqueConstraint(fields=["task", "dimension"], name="unique_task_dimension")]

    def __str__(self):
        return f"{self.task} / {self.dimension}"


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    class Meta:
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
        ordering = ["-created_at", "-id"]
        permissions = [("annotate", "Can judge candidate sets in the annotation pages")]

    def __str__(self):
        return f"#{self.pk} {self.task.slug}: {self.original_name or self.prompt[:40]}"

    @property
    def effective_prompt(self) -> str:
        return self.task.effective_prompt(self.prompt)

    @property
    def prompt_given(self) -> bool:
        return bool(self.prompt.strip())

    def judged_dimensions(self) -> list[Dimension]:
        return self.task.judged_dimensions(self.prompt_given)


class InputImport(BackgroundJob):
    """A zip of inputs imported in the background: all of it, or none of it and every problem."""

    task_name = "annotation.import_inputs_archive"

    archive = models.FileField(max_length=255, blank=True, help_text="The uploaded zip, removed once imported or refused.")
    original_name = models.CharField(max_length=255)
    defaults = models.JSONField(
        default=dict, blank=True, help_text="For entries that do not say otherwise: {task, prompt, tags, canvas}."
    )
    created_inputs = models.ManyToManyField(Input, blank=True, related_name="imports")
    problems = models.JSONField(default=list, blank=True, help_text="Every bad entry: {entry, problem}.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.original_name} ({self.get_status_display()})"

    @classmethod
    def queue(cls, archive, *, task=None, prompt="", tags=(), canvas=None, user=None) -> "InputImport":
        """Store an uploaded zip and hand its import to a worker (admin form and API alike)."""
        import uuid

        from django.core.files.storage import default_storage

        stored = default_storage.save(f"imports/{uuid.uuid4().hex}/archive.zip", archive)
        job = cls.objects.create(
            archive=stored,
            original_name=archive.name[:255],
            defaults={"task": task.slug if task else None, "prompt": prompt or "", "tags": list(tags), "canvas": canvas},
            created_by=user,
        )
        job.enqueue()
        return job


# --- annotation: tasks, slots, judgments --------------------------------------------------------


class QualityControlSettings(models.Model):
    """Platform-wide quality-control knobs, one row, edited in the admin."""

    gold_rate = models.FloatField(default=0.05, help_text="Share of handed-out tasks that are gold tasks.")
    repeat_share = models.FloatField(default=0.05, help_text="Share of handed-out tasks that repeat one the annotator finished.")
    repeat_after_minutes = models.PositiveIntegerField(
        default=60, help_text="A finished task comes back as a repeat only this long after it was judged."
    )
    lease_minutes = models.PositiveIntegerField(default=20, help_text="An unanswered task returns to the pool after this.")
    fast_pick_ms = models.PositiveIntegerField(default=1500, help_text="A judgment faster than this per dimension counts as too fast.")
    gold_accuracy_threshold = models.FloatField(default=0.6, help_text="Below this gold accuracy an annotator is paused.")
    gold_min_judgments = models.PositiveIntegerField(
        default=5, help_text="Gold answers (one per dimension) needed before pausing applies."
    )

    class Meta:
        verbose_name = verbose_name_plural = "quality-control settings"

    def __str__(self):
        return "Quality-control settings"

    def clean(self):
        from django.core.exceptions import ValidationError

        for name in ("gold_rate", "repeat_share", "gold_accuracy_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValidationError({name: "a share lies between 0 and 1"})

    @classmethod
    def current(cls) -> "QualityControlSettings":
        return cls.objects.get_or_create(pk=1)[0]


class AnnotationTask(models.Model):
    """A finished candidate set to be judged by `required_judgments` different annotators."""

    candidate_set = models.OneToOneField("generation.CandidateSet", on_delete=models.CASCADE, related_name="annotation_task")
    required_judgments = models.PositiveSmallIntegerField(default=1)
    judgments_done = models.PositiveIntegerField(default=0)
    is_gold = models.BooleanField(default=False, help_text="Mixed into queues to measure annotators; never exported.")
    gold_answers = models.JSONField(
        default=dict, blank=True,
        help_text='Expected picks per dimension: {"consistency": {"best": 0, "worst": 3}} by candidate index, '
                  'or {"discarded": true}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        # The few gold tasks, excluded from the pool and scored by the quality control.
        indexes = [models.Index(fields=["id"], name="task_gold", condition=models.Q(is_gold=True))]

    def __str__(self):
        return f"Task #{self.pk} ({self.candidate_set})"


class SlotKind(models.TextChoices):
    REGULAR = "regular", "Regular"
    GOLD = "gold", "Gold"
    REPEAT = "repeat", "Repeat"


class SlotState(models.TextChoices):
    OPEN = "open", "Open"
    LEASED = "leased", "Leased"
    DONE = "done", "Done"


class Slot(models.Model):
    """One judgment a task needs: free, leased to an annotator until a time, or done.

    A task has `required_judgments` regular slots from the start; gold and repeat slots are made
    for one annotator when the queue mixes them in. Handing out a slot is a row lock that skips
    locked rows, so concurrent annotators never get the same one.
    """

    task = models.ForeignKey(AnnotationTask, on_delete=models.CASCADE, related_name="slots")
    kind = models.CharField(max_length=8, choices=SlotKind.choices, default=SlotKind.REGULAR)
    state = models.CharField(max_length=8, choices=SlotState.choices, default=SlotState.OPEN)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="annotation_slots")
    leased_until = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    # Candidate indices in the order shown, left to right (a permutation per annotator and task).
    shown_order = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["task", "pk"]
        indexes = [
            # The pool: regular slots not done yet, in queue order. Partial, so its size follows
            # the open work, not the millions of judged slots.
            models.Index(fields=["task", "id"], name="slot_pool",
                         condition=models.Q(kind="regular", state__in=["open", "leased"])),
            # "Tasks this annotator already has", read index-only by every hand-out.
            models.Index(fields=["annotator", "task"], name="slot_annotator_task"),
            # An annotator's current leases (a reload resumes them).
            models.Index(fields=["annotator"], name="slot_leased_by", condition=models.Q(state="leased")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator", "kind"], condition=models.Q(annotator__isnull=False),
                                    name="one_slot_per_annotator_task_kind"),
        ]

    def __str__(self):
        return f"{self.task} / {self.kind} slot #{self.pk}"


class Judgment(models.Model):
    """One annotator's answer for one slot: per dimension a best and a worst, or discarded."""

    slot = models.OneToOneField(Slot, on_delete=models.CASCADE, related_name="judgment")
    task = models.ForeignKey(AnnotationTask, on_delete=models.CASCADE, related_name="judgments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments")
    kind = models.CharField(max_length=8, choices=SlotKind.choices)
    shown_order = models.JSONField(help_text="Candidate indices in the order the annotator saw them, left to right.")
    submission_id = models.UUIDField(unique=True, help_text="Sent by the page; a retried submit stores nothing new.")
    dwell_ms = models.PositiveIntegerField(help_text="Time on the task as the browser measured it.")
    assigned_at = models.DateTimeField()
    submitted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["annotator", "submitted_at"], name="judgment_annotator_time"),
            # Quality figures are computed over a period.
            models.Index(fields=["submitted_at"], name="judgment_time"),
            # An annotator's gold answers, rescored after each gold judgment.
            models.Index(fields=["annotator"], name="judgment_gold_by", condition=models.Q(kind="gold")),
        ]

    def __str__(self):
        return f"Judgment #{self.pk} by {self.annotator_id} on task #{self.task_id}"


class DimensionPick(models.Model):
    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="picks")
    dimension = models.ForeignKey(Dimension, on_delete=models.PROTECT, related_name="+")
    best = models.ForeignKey("generation.Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    worst = models.ForeignKey("generation.Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    best_position = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Screen position, 0 = leftmost.")
    worst_position = models.PositiveSmallIntegerField(null=True, blank=True)
    discarded = models.BooleanField(default=False, help_text="No clear difference: the dimension makes no pair.")

    class Meta:
        # By id, not by the dimension's order: a join on every query over millions of picks.
        ordering = ["judgment", "dimension"]
        constraints = [
            models.UniqueConstraint(fields=["judgment", "dimension"], name="one_pick_per_dimension"),
            models.CheckConstraint(
                condition=(models.Q(discarded=True, best__isnull=True, worst__isnull=True)
                           | (models.Q(discarded=False, best__isnull=False, worst__isnull=False)
                              & ~models.Q(best=models.F("worst")))),
                name="pick_is_best_worst_or_discarded",
            ),
        ]


class AnnotatorStatus(models.Model):
    """Whether an annotator may take tasks; paused automatically on poor gold accuracy."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotator_status")
    paused = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "annotator statuses"

    def __str__(self):
        return f"{self.user} ({'paused' if self.paused else 'active'})"


class Skip(models.Model):
    """A task an annotator passed on: not offered to them again."""

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    task = models.ForeignKey(AnnotationTask, on_delete=models.CASCADE, related_name="skips")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["annotator", "task"], name="one_skip_per_annotator_task")]


# --- preference datasets --------------------------------------------------------------------------


class PairingPolicy(models.TextChoices):
    # One pair per (input, dimension): winner = best, loser = worst, as in the paper.
    BEST_WORST = "best_worst", "Best > worst (one pair)"
    # Also best > every middle candidate and every middle candidate > worst (2N-3 pairs).
    BEST_WORST_ALL = "best_worst_all", "Best > others > worst (2N-3 pairs)"


class VoteAggregation(models.TextChoices):
    # One row per pair; the side with more votes wins, ties follow the tie rule.
    MAJORITY = "majority", "Majority of annotators"
    # One row per pair, only when no annotator voted the other way.
    UNANIMOUS = "unanimous", "Unanimous annotators only"
    # One row per annotator's vote: nothing is aggregated.
    PER_ANNOTATOR = "per_annotator", "One row per annotator"


class TieRule(models.TextChoices):
    DROP = "drop", "Drop the pair"
    # Both orders, each with soft label 0.5: a trainer sees "no preference" instead of nothing.
    BOTH_ORDERS = "both_orders", "Keep both orders at 0.5"


class PreferenceDataset(BackgroundJob):
    """An immutable, versioned snapshot of winner/loser pairs built from judgments.

    The record keeps everything needed to rebuild it (the filters, the pairing policy, the split
    fractions and seed) and what it holds (counts per task x dimension, the files, a content hash
    over the rows: the same filters over the same judgments give the same hash).
    """

    task_name = "annotation.build_preference_dataset"

    name = models.SlugField(max_length=100, help_text="Versions of one dataset share a name.")
    version = models.PositiveIntegerField(editable=False)
    description = models.TextField(blank=True)
    # What goes in.
    batches = models.ManyToManyField("generation.GenerationBatch", blank=True, related_name="preference_datasets",
                                     help_text="Empty = every batch.")
    tasks = models.ManyToManyField(Task, blank=True, related_name="+", help_text="Empty = every task.")
    dimensions = models.ManyToManyField(Dimension, blank=True, related_name="+", help_text="Empty = every dimension.")
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+",
                                        help_text="Empty = every annotator (in good standing, if asked).")
    submitted_from = models.DateTimeField(null=True, blank=True, help_text="Judgments submitted at or after this.")
    submitted_until = models.DateTimeField(null=True, blank=True, help_text="Judgments submitted before this.")
    good_standing_only = models.BooleanField(
        default=True, help_text="Leave out paused annotators and those whose gold accuracy is below the threshold.")
    min_gold_accuracy = models.FloatField(
        null=True, blank=True, help_text="With good standing only: the gold accuracy needed; empty = the QC threshold.")
    include_gold = models.BooleanField(default=False, help_text="Also judgments on gold tasks.")
    include_repeats = models.BooleanField(default=False, help_text="Also repeat judgments (self-consistency checks).")
    # How pairs are made.
    pairing = models.CharField(max_length=16, choices=PairingPolicy.choices, default=PairingPolicy.BEST_WORST)
    aggregation = models.CharField(max_length=16, choices=VoteAggregation.choices, default=VoteAggregation.MAJORITY)
    tie_rule = models.CharField(max_length=16, choices=TieRule.choices, default=TieRule.DROP)
    min_votes = models.PositiveSmallIntegerField(default=1, help_text="Votes a pair needs for its winner to be kept.")
    # How inputs are split.
    train_fraction = models.FloatField(default=0.9)
    validation_fraction = models.FloatField(default=0.05)
    test_fraction = models.FloatField(default=0.05)
    split_seed = models.BigIntegerField(default=0)
    # What comes out.
    embed_images = models.BooleanField(default=False, help_text="Put image bytes in the files instead of storage URIs.")
    formats = models.JSONField(default=list, blank=True,
                               help_text='Files to write besides Parquet: any of "jsonl", "trl".')
    counts = models.JSONField(default=dict, blank=True, help_text="{task: {dimension: {split: pairs}}}.")
    pair_count = models.PositiveIntegerField(default=0)
    judgment_count = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_dataset_version")]

    def __str__(self):
        return f"{self.name} v{self.version}"

    def clean(self):
        from .pairing import PairingError, check_fractions
        from .preference_files import FORMATS

        errors = {}
        try:
            check_fractions(self.train_fraction, self.validation_fraction, self.test_fraction)
        except PairingError as exc:
            errors["train_fraction"] = str(exc)
        if not isinstance(self.formats, list) or set(self.formats) - set(FORMATS):
            errors["formats"] = f"formats must be a list of {', '.join(FORMATS)} (Parquet is always written)"
        if self.min_gold_accuracy is not None and not 0 <= self.min_gold_accuracy <= 1:
            errors["min_gold_accuracy"] = "a gold accuracy lies between 0 and 1"
        if self.min_votes is not None and self.min_votes < 1:
            errors["min_votes"] = "a pair needs at least one vote"
        if self.submitted_from and self.submitted_until and self.submitted_from >= self.submitted_until:
            errors["submitted_until"] = "the end of the date range must come after its start"
        if errors:
            raise ValidationError(errors)

    @property
    def storage_prefix(self) -> str:
        return f"datasets/{self.name}/v{self.version}"


# Human evaluation studies live in their own module; imported here so Django finds them.
from .study_models import (  # noqa: E402,F401
    Study, StudyArm, StudyCandidate, StudyItem, StudyJudgment, StudyPick, UsabilityVote,
)
