"""Generators, generation batches, candidate sets and candidates.

A batch asks a generator for N candidates for each chosen input; each input's candidates form a
CandidateSet (the unit of work, of failure and of annotation); each Candidate records the exact
settings and seed that made it. Unique keys (batch, input) and (set, index) make retries safe.
"""
import uuid

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Q

from inputs.models import Input
from onereward.jobs import BackgroundJob, JobStatus

from .core.backends.base import BACKENDS, BackendConfigError, CandidateSettings, check_backend_config
from .core.sampling import RangeError, Ranges
from .events import batch_finished

MIN_CANDIDATES = 2


def backend_choices() -> list[tuple[str, str]]:
    # A callable: apps register backends of their own when they are ready, after this module loads.
    return [(name, name) for name in BACKENDS]


class Generator(models.Model):
    """A backend with its settings (weights, LoRAs, dtype...). Policy checkpoints register here too."""

    name = models.CharField(max_length=100, unique=True)
    backend = models.CharField(max_length=32, choices=backend_choices)
    settings = models.JSONField(default=dict, blank=True, help_text="The backend's configuration (JSON object).")
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        try:
            self.settings = check_backend_config(self.backend, self.settings)
        except BackendConfigError as exc:
            raise ValidationError({"settings": str(exc)}) from None


class GenerationBatch(BackgroundJob):
    """N candidates for each chosen input, from one generator, with randomised settings."""

    task_name = "generation.run_batch"

    name = models.CharField(max_length=200, blank=True)
    generator = models.ForeignKey(Generator, on_delete=models.PROTECT, related_name="batches")
    candidates_per_input = models.PositiveSmallIntegerField(default=4)
    ranges = models.JSONField(
        default=dict,
        blank=True,
        help_text="Randomisation ranges (see generation.core.sampling.Ranges); empty = the defaults.",
    )
    seed = models.BigIntegerField(
        default=0, help_text="Base seed: every candidate's settings and seed derive from it."
    )
    inputs = models.ManyToManyField(Input, through="CandidateSet", related_name="generation_batches")
    progress_failed = models.PositiveIntegerField(default=0)
    annotation_overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Judgments wanted per candidate set, each from a different annotator (k)."
    )
    for_annotation = models.BooleanField(
        default=True,
        help_text="Finished candidate sets become annotation tasks (preference data). Off for a batch made for "
                  "a human evaluation study: its inputs stay held out of the training data, and one candidate "
                  "per input is enough.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "generation batches"

    def __str__(self):
        return self.name or f"Batch #{self.pk}"

    def clean(self):
        # Annotators compare a batch's own candidates; a study compares one candidate per arm.
        least = MIN_CANDIDATES if self.for_annotation else 1
        if self.candidates_per_input is not None and self.candidates_per_input < least:
            if self.for_annotation:
                message = (
                    f"at least {MIN_CANDIDATES} candidates are needed to compare (an evaluation batch may have 1)"
                )
            else:
                message = "at least 1 candidate per input"
            raise ValidationError({"candidates_per_input": message})
        if self.annotation_overlap is not None and self.annotation_overlap < 1:
            raise ValidationError({"annotation_overlap": "at least one judgment per candidate set"})
        try:
            self.ranges = Ranges.parse(self.ranges).as_dict()
        except RangeError as exc:
            raise ValidationError({"ranges": str(exc)}) from None

    @classmethod
    def launch(cls, *, generator: Generator, inputs, candidates_per_input: int = 4, ranges: dict | None = None,
               seed: int = 0, name: str = "", user=None, annotation_overlap: int = 1,
               for_annotation: bool = True) -> "GenerationBatch":
        """Validate, create the batch and one CandidateSet per input in one transaction, and queue
        it. Raises ValidationError naming what is wrong (admin, API and command line alike).
        `for_annotation=False` launches an evaluation batch: no annotation tasks, N may be 1."""
        inputs = list(inputs)
        batch = cls.checked(generator=generator, inputs=inputs, candidates_per_input=candidates_per_input,
                            ranges=ranges, seed=seed, name=name, user=user, annotation_overlap=annotation_overlap,
                            for_annotation=for_annotation)
        with transaction.atomic():
            batch.save()
            CandidateSet.objects.bulk_create([CandidateSet(batch=batch, input=item) for item in inputs])
            batch.enqueue()
        return batch

    @classmethod
    def checked(cls, *, generator: Generator, inputs, candidates_per_input: int = 4, ranges: dict | None = None,
                seed: int = 0, name: str = "", user=None, annotation_overlap: int = 1,
                for_annotation: bool = True) -> "GenerationBatch":
        """The batch `launch` would create, validated and not saved: every rule, for forms and
        serializers to report before anything is stored."""
        if not inputs:
            raise ValidationError({"inputs": "no input matches the selection"})
        if not generator.active:
            raise ValidationError({"generator": f"generator {generator.name!r} is not active"})
        batch = cls(generator=generator, candidates_per_input=candidates_per_input, ranges=ranges or {},
                    seed=seed, name=name, created_by=user, progress_total=len(inputs),
                    annotation_overlap=annotation_overlap, for_annotation=for_annotation)
        batch.full_clean(exclude=["created_by"])
        return batch

    def resume(self) -> bool:
        """Queue a cancelled, failed or stalled batch again; finished sets are kept."""
        if self.status == JobStatus.DONE and not self.progress_failed:
            return False
        self.candidate_sets.exclude(status=SetStatus.DONE).update(status=SetStatus.PENDING, worker="")
        type(self).objects.filter(pk=self.pk).update(status=JobStatus.QUEUED, finished_at=None, error="")
        self.refresh_from_db()
        self.enqueue()
        return True

    @property
    def parsed_ranges(self) -> Ranges:
        return Ranges.parse(self.ranges)

    def settings_for(self, item: Input, index: int) -> CandidateSettings:
        return self.parsed_ranges.draw(self.seed, item.content_hash, index)

    def refresh_progress(self) -> None:
        """Recount done/failed sets; finish the batch when no set is left to run."""
        counts = self.candidate_sets.aggregate(
            total=Count("pk"),
            done=Count("pk", filter=Q(status=SetStatus.DONE)),
            failed=Count("pk", filter=Q(status=SetStatus.FAILED)),
        )
        fields = {
            "progress_total": counts["total"],
            "progress_done": counts["done"],
            "progress_failed": counts["failed"],
        }
        type(self).objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)
        if counts["done"] + counts["failed"] == counts["total"]:
            error = (
                f"{counts['failed']} of {counts['total']} inputs failed; see their errors" if counts["failed"] else ""
            )
            # Only a running batch finishes: a cancelled one stays cancelled.
            if self.finish(only_from=JobStatus.RUNNING, error=error):
                batch_finished.send(sender=type(self), batch=self)


class SetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class CandidateSetQuerySet(models.QuerySet):
    def ready_for_annotation(self):
        """Sets whose candidates are all made: what the annotation pages hand out."""
        return (self.filter(status=SetStatus.DONE, batch__for_annotation=True)
                .exclude(batch__status=JobStatus.CANCELLED))


class CandidateSet(models.Model):
    """The candidates of one input in one batch: what an annotator compares."""

    objects = CandidateSetQuerySet.as_manager()

    batch = models.ForeignKey(GenerationBatch, on_delete=models.CASCADE, related_name="candidate_sets")
    input = models.ForeignKey(Input, on_delete=models.PROTECT, related_name="candidate_sets")
    status = models.CharField(max_length=16, choices=SetStatus.choices, default=SetStatus.PENDING, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that claimed it last.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "input"]
        constraints = [models.UniqueConstraint(fields=["batch", "input"], name="unique_batch_input")]

    def __str__(self):
        return f"{self.batch} / input #{self.input_id}"

    @property
    def is_complete(self) -> bool:
        return self.candidates.count() >= self.batch.candidates_per_input


class Candidate(models.Model):
    """One generated image and the exact settings that made it."""

    candidate_set = models.ForeignKey(CandidateSet, on_delete=models.CASCADE, related_name="candidates")
    index = models.PositiveSmallIntegerField()
    # What URLs and annotators see: says nothing about the generator, the settings or the index.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    image = models.FileField(max_length=255)
    thumbnail = models.FileField(max_length=255)
    settings = models.JSONField(
        help_text="CandidateSettings: seed, steps, guidance, true_cfg, negative prompt, strength; and under "
                  "\"record\" what the backend reported about how it made the image (a reranking generator's "
                  "candidates and scores)."
    )
    seconds = models.FloatField(help_text="Generation time of this candidate's share of its batched call.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["candidate_set", "index"]
        constraints = [models.UniqueConstraint(fields=["candidate_set", "index"], name="unique_set_index")]

    def __str__(self):
        return f"{self.candidate_set} / {self.index}"

    @property
    def candidate_settings(self) -> CandidateSettings:
        return CandidateSettings.from_dict(self.settings)
