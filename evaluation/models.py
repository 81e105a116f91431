"""Human evaluation studies, as the paper ran them: two or more generators on the same held-out
inputs, judged blind. Per input, annotators vote each candidate usable or not and pick the best
and the worst per dimension; the report gives usability rates and Good/Same/Bad between arms.

A study's arms are generation batches over the same inputs (batches launched for evaluation make
no preference-annotation tasks, so held-out inputs stay out of the training data). Each input that
every arm finished becomes a StudyItem showing one candidate per arm.
"""
from django.conf import settings
from django.db import models

from annotation.models import SlotState


class Study(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    judgments_per_item = models.PositiveSmallIntegerField(
        default=3, help_text="Annotators wanted per input, each a different person.")
    active = models.BooleanField(default=True, help_text="Only active studies are handed out to annotators.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotation_study"
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self):
        return self.name


class StudyArm(models.Model):
    """One compared system: a generation batch of one generator (or policy checkpoint)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    batch = models.ForeignKey("generation.GenerationBatch", on_delete=models.PROTECT, related_name="study_arms")
    label = models.CharField(max_length=32, help_text='How the report names the arm ("A", "base", "RL step 8k").')
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "annotation_studyarm"
        ordering = ["study", "order", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["study", "batch"], name="one_arm_per_batch"),
            models.UniqueConstraint(fields=["study", "label"], name="unique_arm_label"),
        ]

    def __str__(self):
        return f"{self.study} / {self.label}"


class StudyItem(models.Model):
    """One held-out input with one candidate from every arm."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    input = models.ForeignKey("inputs.Input", on_delete=models.PROTECT, related_name="study_items")
    judgments_done = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "annotation_studyitem"
        ordering = ["study", "pk"]
        constraints = [models.UniqueConstraint(fields=["study", "input"], name="one_item_per_study_input")]

    def __str__(self):
        return f"{self.study} / input #{self.input_id}"


class StudyCandidate(models.Model):
    """The candidate an arm contributes to an item."""

    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="study_candidates")
    arm = models.ForeignKey(StudyArm, on_delete=models.CASCADE, related_name="study_candidates")
    candidate = models.ForeignKey("generation.Candidate", on_delete=models.PROTECT, related_name="+")

    class Meta:
        db_table = "annotation_studycandidate"
        ordering = ["item", "arm"]
        constraints = [models.UniqueConstraint(fields=["item", "arm"], name="one_candidate_per_item_arm")]


# A study slot goes through the states of an annotation slot: one queue (annotation.queue) hands
# out both.
StudySlotState = SlotState


class StudySlot(models.Model):
    """One judgment an item needs: free, leased to an annotator until a time, or done.

    An item has `judgments_per_item` slots from the start. Handing one out is a row lock that skips
    locked rows (evaluation.studies.next_item), so concurrent annotators never take the same slot,
    and an item never gets more judgments than it has slots; a lease that runs out puts the slot
    back in the pool. The unique (item, annotator) key keeps one person to one slot per item.
    """

    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="slots")
    state = models.CharField(max_length=8, choices=StudySlotState.choices, default=StudySlotState.OPEN)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="study_slots")
    leased_until = models.DateTimeField(null=True, blank=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    # StudyCandidate ids in the order shown, left to right (a permutation per annotator and item).
    shown_order = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "annotation_studyslot"
        ordering = ["item", "pk"]
        indexes = [
            # The pool: slots not done yet, in queue order; partial, so it follows the open work.
            models.Index(
                fields=["item", "id"], name="study_slot_pool", condition=models.Q(state__in=["open", "leased"])
            ),
            models.Index(fields=["annotator", "item"], name="study_slot_annotator_item"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], condition=models.Q(annotator__isnull=False),
                                    name="one_study_slot_per_annotator_item"),
        ]

    def __str__(self):
        return f"{self.item} / slot #{self.pk}"


class StudyJudgment(models.Model):
    """One annotator's answer on one item: usability per candidate, best/worst per dimension."""

    slot = models.OneToOneField(StudySlot, on_delete=models.CASCADE, related_name="judgment")
    item = models.ForeignKey(StudyItem, on_delete=models.CASCADE, related_name="judgments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="study_judgments")
    shown_order = models.JSONField(help_text="StudyCandidate ids in the order the annotator saw them, left to right.")
    submission_id = models.UUIDField(unique=True, help_text="Sent by the page; a retried submit stores nothing new.")
    dwell_ms = models.PositiveIntegerField(default=0)
    submitted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "annotation_studyjudgment"
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="one_study_judgment_per_annotator")]

    def __str__(self):
        return f"Study judgment #{self.pk} by {self.annotator_id} on {self.item}"


class UsabilityVote(models.Model):
    judgment = models.ForeignKey(StudyJudgment, on_delete=models.CASCADE, related_name="usability_votes")
    study_candidate = models.ForeignKey(StudyCandidate, on_delete=models.CASCADE, related_name="usability_votes")
    usable = models.BooleanField()

    class Meta:
        db_table = "annotation_usabilityvote"
        constraints = [models.UniqueConstraint(fields=["judgment", "study_candidate"], name="one_vote_per_candidate")]


class StudyPick(models.Model):
    """Best and worst of the item's candidates on one dimension, or discarded (no clear difference)."""

    judgment = models.ForeignKey(StudyJudgment, on_delete=models.CASCADE, related_name="picks")
    dimension = models.ForeignKey("inputs.Dimension", on_delete=models.PROTECT, related_name="+")
    best = models.ForeignKey(StudyCandidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    worst = models.ForeignKey(StudyCandidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    discarded = models.BooleanField(default=False)

    class Meta:
        db_table = "annotation_studypick"
        constraints = [
            models.UniqueConstraint(fields=["judgment", "dimension"], name="one_study_pick_per_dimension"),
            models.CheckConstraint(
                condition=(models.Q(discarded=True, best__isnull=True, worst__isnull=True)
                           | (models.Q(discarded=False, best__isnull=False, worst__isnull=False)
                              & ~models.Q(best=models.F("worst")))),
                name="study_pick_is_best_worst_or_discarded",
            ),
        ]
