"""Preference datasets: immutable, versioned snapshots of winner/loser pairs built from judgments."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from onereward.jobs import BackgroundJob

from .core.files import FORMATS
from .core.pairing import PairingError, check_fractions


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

    task_name = "preferences.build_preference_dataset"
    # What a person chooses for a new version (the admin form and the API take the same).
    OPTION_FIELDS = ["name", "description", "batches", "tasks", "dimensions", "annotators", "submitted_from",
                     "submitted_until", "good_standing_only", "min_gold_accuracy", "include_gold", "include_repeats",
                     "include_simulated", "pairing", "aggregation", "tie_rule", "min_votes", "train_fraction",
                     "validation_fraction", "test_fraction", "split_seed", "embed_images", "formats",
                     "implicit_feedback", "implicit_weight", "implicit_sources"]

    name = models.SlugField(max_length=100, help_text="Versions of one dataset share a name.")
    version = models.PositiveIntegerField(editable=False)
    description = models.TextField(blank=True)
    # What goes in.
    batches = models.ManyToManyField("generation.GenerationBatch", blank=True, related_name="preference_datasets",
                                     help_text="Empty = every batch.")
    tasks = models.ManyToManyField("inputs.Task", blank=True, related_name="+", help_text="Empty = every task.")
    dimensions = models.ManyToManyField(
        "inputs.Dimension", blank=True, related_name="+", help_text="Empty = every dimension."
    )
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+",
                                        help_text="Empty = every annotator (in good standing, if asked).")
    submitted_from = models.DateTimeField(null=True, blank=True, help_text="Judgments submitted at or after this.")
    submitted_until = models.DateTimeField(null=True, blank=True, help_text="Judgments submitted before this.")
    good_standing_only = models.BooleanField(
        default=True, help_text="Leave out paused annotators and those whose gold accuracy is below the threshold.")
    min_gold_accuracy = models.FloatField(
        null=True, blank=True, help_text="With good standing only: the gold accuracy needed; empty = the QC threshold."
    )
    include_gold = models.BooleanField(default=False, help_text="Also judgments on gold tasks.")
    include_repeats = models.BooleanField(default=False, help_text="Also repeat judgments (self-consistency checks).")
    include_simulated = models.BooleanField(
        default=False, help_text="Also judgments of simulated annotators (oracles; see simulate_annotators).")
    implicit_feedback = models.BooleanField(
        default=False, help_text="Also weak pairs from production feedback events (accepted > re-edited > "
                                 "discarded for the same input), on every dimension the input's task is judged on.")
    implicit_weight = models.FloatField(
        default=0.5, help_text="The weight of a weak pair (a human pair weighs 1); trainers weight the loss by it.")
    implicit_sources = models.JSONField(default=list, blank=True,
                                        help_text="Feedback sources to include (a list of names); empty = every one.")
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
    embed_images = models.BooleanField(
        default=False, help_text="Put image bytes in the files instead of storage URIs."
    )
    formats = models.JSONField(default=list, blank=True,
                               help_text='Files to write besides Parquet: any of "jsonl", "trl".')
    counts = models.JSONField(default=dict, blank=True, help_text="{task: {dimension: {split: pairs}}}.")
    pair_count = models.PositiveIntegerField(default=0)
    judgment_count = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "annotation_preferencedataset"
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_dataset_version")]

    def __str__(self):
        return f"{self.name} v{self.version}"

    def clean(self):
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
        if self.implicit_weight is not None and not 0 < self.implicit_weight <= 1:
            errors["implicit_weight"] = "a weak pair's weight lies in (0, 1]"
        if not isinstance(self.implicit_sources, list) or not all(
                isinstance(source, str) and source.strip() for source in self.implicit_sources):
            errors["implicit_sources"] = "a list of feedback source names"
        if errors:
            raise ValidationError(errors)

    @property
    def storage_prefix(self) -> str:
        return f"datasets/{self.name}/v{self.version}"


class FeedbackEvent(models.Model):
    """What a user in production did with an edit: a candidate of ours or an outside image of an
    input (preferences.core.feedback). Weak pairs come from them when a dataset includes them."""

    class Event(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        PUBLISHED = "published", "Published"
        RE_EDITED = "re_edited", "Re-edited"
        DISCARDED = "discarded", "Discarded"

    source = models.CharField(max_length=100, help_text="Where the event comes from (a product, an app).")
    external_id = models.CharField(max_length=200, help_text="The event's id in its source.")
    event = models.CharField(max_length=16, choices=Event.choices)
    input = models.ForeignKey("inputs.Input", on_delete=models.CASCADE, related_name="feedback_events")
    candidate = models.ForeignKey("generation.Candidate", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="feedback_events")
    image = models.CharField(max_length=300, blank=True, help_text="An outside image's storage name.")
    image_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the outside image.")
    occurred_at = models.DateTimeField(null=True, blank=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="unique_feedback_event"),
            models.CheckConstraint(condition=models.Q(candidate__isnull=False, image="")
                                   | models.Q(candidate__isnull=True) & ~models.Q(image=""),
                                   name="feedback_event_one_image"),
        ]

    def __str__(self):
        return f"{self.source}:{self.external_id} {self.event}"

    @property
    def image_key(self) -> str:
        """The same image for every event about it: a candidate, or an outside image's content."""
        return f"candidate:{self.candidate_id}" if self.candidate_id else f"outside:{self.image_hash}"


# A large feedback file imported in the background (preferences/feedback_imports.py), registered here.
from .feedback_imports import FeedbackImport  # noqa: E402, F401
