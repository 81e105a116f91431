"""Annotation: tasks handed out to annotators, their slots and judgments, and quality control."""
from django.conf import settings
from django.db import models


class QualityControlSettings(models.Model):
    """Platform-wide quality-control knobs, one row, edited in the admin."""

    gold_rate = models.FloatField(default=0.05, help_text="Share of handed-out tasks that are gold tasks.")
    repeat_share = models.FloatField(
        default=0.05, help_text="Share of handed-out tasks that repeat one the annotator finished."
    )
    repeat_after_minutes = models.PositiveIntegerField(
        default=60, help_text="A finished task comes back as a repeat only this long after it was judged."
    )
    lease_minutes = models.PositiveIntegerField(
        default=20, help_text="An unanswered task returns to the pool after this."
    )
    fast_pick_ms = models.PositiveIntegerField(
        default=1500, help_text="A judgment faster than this per dimension counts as too fast."
    )
    gold_accuracy_threshold = models.FloatField(
        default=0.6, help_text="Below this gold accuracy an annotator is paused."
    )
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

    candidate_set = models.OneToOneField(
        "generation.CandidateSet", on_delete=models.CASCADE, related_name="annotation_task"
    )
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
        permissions = [("annotate", "Can judge candidate sets in the annotation pages")]

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
    dimension = models.ForeignKey("inputs.Dimension", on_delete=models.PROTECT, related_name="+")
    best = models.ForeignKey("generation.Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    worst = models.ForeignKey(
        "generation.Candidate", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
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


class SimulatedAnnotator(models.Model):
    """An annotator account whose judgments an oracle makes (annotation/core/oracles.py), through
    the same hand-out, validation and quality control as a person's. Datasets leave their
    judgments out unless asked (PreferenceDataset.include_simulated); QC lists them apart."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="simulated_annotator")
    oracle = models.CharField(max_length=200, help_text="A built-in oracle or a plug-in (package.module:Class).")
    noise = models.FloatField(default=0.0, help_text="Share of answers drawn at random instead of the oracle's.")
    seed = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.user} (simulated: {self.oracle}, noise {self.noise:g})"
