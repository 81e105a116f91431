"""Collection rounds: one pass of data collection for the next reward model, one click or on a
schedule.

A round picks inputs (by tags, task and a count: the least annotated first), generates N
candidates per input with the current policy (the latest PolicyCheckpoint's generator, or a chosen
generator; optionally also with the checkpoint's base, on the same inputs with the same seeds and
settings, so the data covers both), and opens annotation tasks for its candidate sets in the order
of a strategy (rl/core/strategies.py): at random, or by what a chosen reward model version says
about each set (the judge's P(Yes) near 0.5, its two orders disagreeing, or, for sets annotators
judged already, its disagreement with them). Annotators are handed tasks in the order they were
opened (annotation.assignment: the pool is read in task id order), so opening in strategy order is
what gives the first sets priority; with `top_k` only the first K sets get tasks.

Stages: generating (the round's batches run on the GPU workers; their finished sets are held, not
opened, through annotation.events.holds_tasks) -> scoring (judge-based strategies: a GPU job loads
the judge and scores every pair of every set in both orders, rl/core/set_scores.py) -> opened (the
tasks are open; the round is done). The human-disagreement strategy generates nothing: it scores
the chosen inputs' judged sets and gives the first K `annotation_overlap` more judgments each.

A CollectionSchedule keeps a round's options and starts one whenever it is due (every N hours, or
daily at a time; rl/core/schedules.py) from the beat's tick (`rl.collection_tick`, every minute on
the default queue): the due time is claimed under a row lock, so two beats never start it twice.
Models, rules and jobs live here; admin, API, tasks and the command use these functions.
"""
import io
import logging
import traceback
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection, models, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from PIL import Image

from annotation.assignment import create_annotation_task
from annotation.extra_judgments import ask_more_judgments
from annotation.models import AnnotationTask, DimensionPick
from generation.models import CandidateSet, GenerationBatch, Generator, SetStatus
from inputs.models import Input
from onereward.bounds import seed_errors
from onereward.jobs import BackgroundJob, JobStatus

from .core import schedules, strategies
from .core.strategies import HumanPick, PairScore

log = logging.getLogger(__name__)


class Strategy(models.TextChoices):
    RANDOM = strategies.RANDOM, "Random order"
    UNCERTAINTY = strategies.UNCERTAINTY, "Uncertainty first: the judge's P(Yes) nearest 0.5"
    ORDER_DISAGREEMENT = strategies.ORDER_DISAGREEMENT, "Order disagreement first: the judge's two orders disagree"
    HUMAN_DISAGREEMENT = strategies.HUMAN_DISAGREEMENT, ("Human disagreement first: sets already judged where the "
                                                         "judge disagrees most with the annotators")


class Stage(models.TextChoices):
    GENERATING = "generating", "Generating candidates"
    SCORING = "scoring", "Scoring the sets with the judge"
    OPENED = "opened", "Tasks opened"


# The options a round runs with, which a schedule keeps for every round it starts.
OPTION_FIELDS = ["strategy", "reward_model", "generator", "include_base", "tags", "task", "input_count",
                 "candidates_per_input", "ranges", "annotation_overlap", "top_k", "seed"]
SCHEDULE_FIELDS = ["name", "enabled", "every_hours", "daily_at", *OPTION_FIELDS]
# Editing these gives a schedule a new due time, counted from the edit.
TIMING_FIELDS = ("enabled", "every_hours", "daily_at")


class RoundOptions(models.Model):
    strategy = models.CharField(max_length=24, choices=Strategy.choices, default=Strategy.RANDOM)
    reward_model = models.ForeignKey(
        "rewardmodel.RewardModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The judge that scores the sets (the judge-based strategies; empty for random).")
    generator = models.ForeignKey(
        Generator, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty = the latest policy checkpoint's generator when the round starts.")
    include_base = models.BooleanField(
        default=False, help_text="Also generate with the policy checkpoint's base generator: the same inputs, seeds "
                                 "and settings, sets of its own (annotators compare within a set).")
    tags = models.ManyToManyField("inputs.Tag", blank=True, related_name="+",
                                  help_text="Inputs with any of these tags (empty = every input).")
    task = models.ForeignKey("inputs.Task", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                             help_text="Inputs of this task only (empty = every task).")
    input_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many inputs, the least annotated first (empty = all that "
                                         "match).")
    candidates_per_input = models.PositiveSmallIntegerField(default=4)
    ranges = models.JSONField(default=dict, blank=True,
                              help_text="Randomisation ranges of the candidates (as a generation batch's); empty = "
                                        "the defaults.")
    annotation_overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Judgments wanted per opened task (human disagreement: more judgments per set sent "
                             "back).")
    top_k = models.PositiveIntegerField(
        null=True, blank=True, help_text="Open tasks for the first K sets in the strategy's order (empty = every set, "
                                         "in that order).")
    seed = models.BigIntegerField(default=0, help_text="Seeds the choice of inputs, the candidates and random's "
                                                       "order.")

    class Meta:
        abstract = True

    @property
    def uses_judge(self) -> bool:
        return self.strategy in strategies.JUDGE_STRATEGIES

    @property
    def ranks_judged_sets(self) -> bool:
        return self.strategy in strategies.JUDGED_SETS_STRATEGIES

    def option_errors(self) -> dict[str, list[str]]:
        """The rules that need no other record than the options' own: {field: [message]}."""
        errors: dict[str, list[str]] = {}

        def refuse(name, message):
            errors.setdefault(name, []).append(message)

        if self.uses_judge and not self.reward_model_id:
            refuse("reward_model", f"the {self.strategy.replace('_', ' ')} strategy ranks the sets by a judge: choose "
                                   "a reward model version")
        if not self.uses_judge and self.reward_model_id:
            refuse("reward_model", "the random strategy uses no judge: leave the reward model empty")
        for name in ("input_count", "top_k"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                refuse(name, "at least 1 (or empty for no limit)")
        for message in seed_errors(self.seed):
            refuse("seed", message)
        if not self.ranks_judged_sets:
            if self.include_base and self.generator_id and not hasattr(self.generator, "policy_checkpoint"):
                refuse("include_base", f"{self.generator} is not a policy checkpoint's generator: it has no base")
            try:
                GenerationBatch(candidates_per_input=self.candidates_per_input, ranges=self.ranges or {},
                                annotation_overlap=self.annotation_overlap, for_annotation=True).clean()
            except ValidationError as exc:
                for name, messages in exc.message_dict.items():
                    errors.setdefault(name, []).extend(messages)
        elif self.annotation_overlap is not None and self.annotation_overlap < 1:
            refuse("annotation_overlap", "at least one more judgment per set sent back")
        return errors

    def options(self) -> dict:
        """The options as start_round takes them (tags as a list)."""
        values = {name: getattr(self, name) for name in OPTION_FIELDS if name != "tags"}
        values["tags"] = list(self.tags.all()) if self.pk else []
        return values


class CollectionSchedule(RoundOptions):
    """A round's options and when to start one: every N hours or daily at a time. Edited in the
    admin; the beat's tick starts the rounds that are due (rl.rounds.tick)."""

    name = models.CharField(max_length=200, unique=True)
    enabled = models.BooleanField(default=True)
    every_hours = models.PositiveIntegerField(null=True, blank=True,
                                              help_text="Start a round every this many hours (the first at once).")
    daily_at = models.TimeField(null=True, blank=True,
                                help_text="Or start one every day at this time (the platform's time zone).")
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                       help_text="When the next round starts; set from the timing when saved.")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="Why the last due round did not start, if it did not.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def timing(self) -> str:
        if self.every_hours:
            return f"every {self.every_hours} h"
        return f"daily at {self.daily_at:%H:%M}" if self.daily_at else "–"

    def clean(self):
        errors = self.option_errors()
        try:
            schedules.check_timing(self.every_hours, self.daily_at)
        except schedules.ScheduleError as exc:
            errors.setdefault("every_hours", []).append(str(exc))
        if errors:
            raise ValidationError(errors)

    def due_after(self, now, previous=None):
        return schedules.next_due(now, every_hours=self.every_hours, daily_at=self.daily_at, previous=previous,
                                  tz=timezone.get_current_timezone())

    def save(self, *args, **kwargs):
        # A disabled schedule is never due; an enabled one without a due time (new, re-enabled, or
        # its timing edited: forms clear it) gets the first due time from now.
        if not self.enabled:
            self.next_due_at = None
        elif self.next_due_at is None and (self.every_hours or self.daily_at):
            self.next_due_at = self.due_after(timezone.now())
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_due_at"}
        super().save(*args, **kwargs)


class CollectionRound(RoundOptions, BackgroundJob):
    """One pass: generate, score (judge-based strategies), open tasks in the strategy's order."""

    task_name = "rl.score_collection_round"

    name = models.CharField(max_length=200, blank=True)
    schedule = models.ForeignKey(CollectionSchedule, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="rounds")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.GENERATING)
    checkpoint = models.ForeignKey("rl.PolicyCheckpoint", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="The policy the round generated with, when it was one.")
    batches = models.ManyToManyField(GenerationBatch, blank=True, related_name="collection_rounds")
    results = models.JSONField(default=dict, blank=True, help_text="What the round opened: counts and figures.")
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name or f"Collection round #{self.pk}"

    def cancel(self) -> bool:
        """Cancel the round and its unfinished batches; held sets stay unopened."""
        cancelled = super().cancel()
        if cancelled:
            for batch in self.batches.all():
                batch.cancel()
        return cancelled


class CollectionSet(models.Model):
    """A candidate set of a round: the judge's scores of its pairs, its figure, its place in the
    strategy's order and the task opened for it (or given more judgments)."""

    round = models.ForeignKey(CollectionRound, on_delete=models.CASCADE, related_name="sets")
    candidate_set = models.ForeignKey(CandidateSet, on_delete=models.CASCADE, related_name="+")
    pair_scores = models.JSONField(null=True, blank=True, help_text=(
        "[[dimension, i, j, P(Yes | i first), P(Yes | j first)], ...] renormalised; empty until scored."))
    figure = models.FloatField(null=True, blank=True, help_text="The strategy's figure (higher = sooner).")
    rank = models.PositiveIntegerField(null=True, blank=True, help_text="Place in the strategy's order, 1 = first.")
    task = models.ForeignKey(AnnotationTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="The task opened (or given more judgments) for it; empty beyond the top K.")

    class Meta:
        ordering = ["round", "rank", "pk"]
        constraints = [models.UniqueConstraint(fields=["round", "candidate_set"], name="rl_one_row_per_round_set")]

    def __str__(self):
        return f"{self.round} / set #{self.candidate_set_id}"


# --- the rules ------------------------------------------------------------------------------------


@dataclass
class RoundPlan:
    """What a valid round will do: the generators, and the inputs to generate for or the judged
    sets to rank."""

    generators: list = field(default_factory=list)
    checkpoint: object = None
    inputs: list = field(default_factory=list)
    judged_sets: list = field(default_factory=list)


def latest_checkpoint():
    from .models import PolicyCheckpoint

    return (PolicyCheckpoint.objects.filter(generator__active=True)
            .select_related("generator", "run__base_generator").order_by("-created_at", "-pk").first())


def matching_inputs(options: RoundOptions, tags):
    inputs = Input.objects.all()
    if options.task_id:
        inputs = inputs.filter(task_id=options.task_id)
    if tags:
        inputs = inputs.filter(tags__in=tags)
    return inputs.distinct()


def annotated_counts(inputs) -> dict[int, int]:
    """{input id: annotation tasks of its candidate sets so far (gold tasks left out)}."""
    counts = dict(inputs.values_list("pk").annotate(tasks=Count(
        "candidate_sets__annotation_task", filter=Q(candidate_sets__annotation_task__is_gold=False), distinct=True)))
    return counts


def judged_sets_of(inputs) -> list[int]:
    """Candidate sets of these inputs (a queryset) that annotators judged (a non-discarded pick, not gold)."""
    return sorted(set(DimensionPick.objects.filter(
        discarded=False, judgment__task__is_gold=False,
        judgment__task__candidate_set__input__in=inputs.values("pk")).values_list(
        "judgment__task__candidate_set_id", flat=True)))


def plan_round(options: RoundOptions, tags=()) -> RoundPlan:
    """Every rule of a round on these options (an unsaved CollectionRound or a schedule): the plan,
    or a ValidationError naming each field at fault (the admin, the API, the command and the
    scheduler share it)."""
    errors = options.option_errors()
    plan = RoundPlan()
    inputs = matching_inputs(options, tags)
    if options.ranks_judged_sets:
        counts = annotated_counts(inputs)
        judged = set(judged_sets_of(inputs))
        eligible = set(CandidateSet.objects.filter(pk__in=judged).values_list("input_id", flat=True))
        chosen = strategies.pick_inputs({pk: n for pk, n in counts.items() if pk in eligible}, options.input_count,
                                        options.seed)
        plan.judged_sets = sorted(CandidateSet.objects.filter(pk__in=judged, input_id__in=chosen)
                                  .values_list("pk", flat=True))
        if not plan.judged_sets:
            errors.setdefault("tags", []).append("no candidate set of the chosen inputs has been judged yet: the "
                                                 "human-disagreement strategy ranks judged sets")
    else:
        generator = options.generator if options.generator_id else None
        if generator is None:
            plan.checkpoint = latest_checkpoint()
            if plan.checkpoint is None:
                errors.setdefault("generator", []).append("there is no policy checkpoint yet: choose a generator")
            else:
                generator = plan.checkpoint.generator
        else:
            plan.checkpoint = getattr(generator, "policy_checkpoint", None)
        if generator is not None:
            if not generator.active:
                errors.setdefault("generator", []).append(f"generator {generator} is not active")
            plan.generators = [generator]
            if options.include_base and plan.checkpoint is not None:
                plan.generators.append(plan.checkpoint.run.base_generator)
        chosen = strategies.pick_inputs(annotated_counts(inputs), options.input_count, options.seed)
        plan.inputs = list(Input.objects.filter(pk__in=chosen).select_related("task").order_by("pk"))
        if not plan.inputs:
            errors.setdefault("tags", []).append("no input matches the tags and task")
    if errors:
        raise ValidationError(errors)
    return plan


def launch_round(round_: CollectionRound, tags, plan: RoundPlan) -> CollectionRound:
    """Save a planned round with its tags and start it, in one transaction: its batches are queued
    (their sets held until the round opens them), or, ranking judged sets, its scoring job."""
    with transaction.atomic():
        round_.checkpoint = plan.checkpoint
        round_.status, round_.started_at = JobStatus.RUNNING, timezone.now()
        round_.stage = Stage.SCORING if round_.ranks_judged_sets else Stage.GENERATING
        round_.save()
        round_.tags.set(tags)
        if round_.ranks_judged_sets:
            CollectionSet.objects.bulk_create([CollectionSet(round=round_, candidate_set_id=pk)
                                               for pk in plan.judged_sets])
            round_.set_progress(0, len(plan.judged_sets))
            round_.enqueue()
        else:
            batches = [GenerationBatch.launch(
                generator=generator, inputs=plan.inputs, candidates_per_input=round_.candidates_per_input,
                ranges=round_.ranges, seed=round_.seed, name=f"{round_}: {generator}", user=round_.created_by,
                annotation_overlap=round_.annotation_overlap, for_annotation=True) for generator in plan.generators]
            round_.batches.set(batches)
    return round_


def error_text(exc: ValidationError) -> str:
    """A ValidationError as one line, each message after the field it is about."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
    return "; ".join(exc.messages)


def new_round(*, user=None, schedule=None, name: str = "", **options) -> tuple[CollectionRound, list]:
    """An unsaved round with these options (OPTION_FIELDS) and its tags."""
    tags = list(options.pop("tags", None) or [])
    unknown = set(options) - set(OPTION_FIELDS)
    if unknown:
        raise TypeError(f"unknown round options: {', '.join(sorted(unknown))}")
    return CollectionRound(name=name, schedule=schedule, created_by=user, **options), tags


def start_round(*, user=None, schedule=None, name: str = "", **options) -> CollectionRound:
    """Validate and start a round (one click: admin, API, command line, a schedule); raises
    ValidationError naming what is wrong."""
    round_, tags = new_round(user=user, schedule=schedule, name=name, **options)
    return launch_round(round_, tags, plan_round(round_, tags))


def start_from_schedule(schedule: CollectionSchedule, *, user=None) -> CollectionRound:
    """A round with the schedule's options now; each round of a schedule gets a seed of its own."""
    options = schedule.options()
    options["seed"] = schedule.seed + schedule.rounds.count()
    return start_round(user=user, schedule=schedule, name=f"{schedule} #{schedule.rounds.count() + 1}", **options)


# --- moving a round on ------------------------------------------------------------------------------


def advance(round_id: int) -> None:
    """Once every batch of a generating round has finished: its generated sets join the round, and
    random opens their tasks at once, the judge-based strategies queue the scoring job. Safe to
    call any number of times (the batch signal, the tick).

    A batch resumed after the round moved on (its failed sets retried, a cancelled batch queued
    again) finishes again with sets the round has not seen: they are held like the first ones, and
    join the round here: random ranks them after the sets it has and opens them (within the top K),
    the judge-based strategies score them and rank every set again. Each set's task is opened once
    (create_annotation_task is idempotent)."""
    with transaction.atomic():
        round_ = CollectionRound.objects.select_for_update().filter(pk=round_id).first()
        if (round_ is None or round_.status == JobStatus.CANCELLED or round_.ranks_judged_sets
                or round_.stage == Stage.SCORING):
            return
        batches = list(round_.batches.all())
        if not batches or any(not batch.is_finished for batch in batches):
            return
        generated = list(CandidateSet.objects.filter(batch__in=batches, status=SetStatus.DONE)
                         .values_list("pk", flat=True))
        known = set(round_.sets.values_list("candidate_set_id", flat=True))
        new = [pk for pk in generated if pk not in known]
        if not new:
            if not generated and not round_.is_finished:
                errors = "; ".join(f"{batch}: {batch.error_cause or batch.get_status_display().lower()}"
                                   for batch in batches)
                round_.mark_failed(f"no candidate set was generated ({errors})")
            return
        CollectionSet.objects.bulk_create([CollectionSet(round=round_, candidate_set_id=pk) for pk in new],
                                          ignore_conflicts=True)
        if round_.uses_judge:
            scored = round_.sets.exclude(pair_scores=None).count()
            CollectionRound.objects.filter(pk=round_.pk).update(
                stage=Stage.SCORING, status=JobStatus.RUNNING, finished_at=None, error="", progress_done=scored,
                progress_total=len(known) + len(new))
            round_.enqueue()
        else:
            ranked_before = list(round_.sets.exclude(rank=None).order_by("rank").values_list("candidate_set_id",
                                                                                             flat=True))
            open_tasks(round_, ranked_before + strategies.order_sets(round_.strategy, new, seed=round_.seed))


def open_tasks(round_: CollectionRound, ordered: list[int]) -> None:
    """Open tasks for the first K candidate sets of `ordered` (ids), in that order, record every
    set's rank, and finish the round. Inside the caller's transaction, the round's row locked. A
    set that has its task already (a round given the sets of a resumed batch) keeps it."""
    rows = {row.candidate_set_id: row for row in round_.sets.select_related("candidate_set__batch")}
    chosen = ordered if round_.top_k is None else ordered[:round_.top_k]
    for position, set_id in enumerate(ordered, start=1):
        rows[set_id].rank = position
    if round_.ranks_judged_sets:
        tasks = {task.candidate_set_id: task for task in AnnotationTask.objects.filter(candidate_set_id__in=chosen)}
        ask_more_judgments([tasks[set_id] for set_id in chosen], round_.annotation_overlap)
        for set_id in chosen:
            rows[set_id].task = tasks[set_id]
    else:
        for set_id in chosen:
            if rows[set_id].task_id is None:
                rows[set_id].task = create_annotation_task(rows[set_id].candidate_set)
    CollectionSet.objects.bulk_update(rows.values(), ["rank", "task"])

    def mean(values):
        values = [value for value in values if value is not None]
        return sum(values) / len(values) if values else None

    opened = {key for key, row in rows.items() if row.task_id is not None}
    results = {"sets": len(rows), "ranked": len(ordered), "opened": len(opened),
               "mean_figure_opened": mean(rows[key].figure for key in opened),
               "mean_figure_rest": mean(row.figure for key, row in rows.items() if key not in opened)}
    CollectionRound.objects.filter(pk=round_.pk).update(stage=Stage.OPENED)
    round_.finish(results=results)


# --- the scoring job (GPU worker) ---------------------------------------------------------------------


class RoundCancelled(Exception):
    pass


def claim(round_: CollectionRound, worker: str) -> bool:
    """Take a round waiting for its scores (or whose worker died while scoring: the job comes again)."""
    taken = CollectionRound.objects.filter(pk=round_.pk, stage=Stage.SCORING, status__in=[
        JobStatus.QUEUED, JobStatus.RUNNING]).update(status=JobStatus.RUNNING, worker=worker)
    round_.refresh_from_db()
    return bool(taken)


def score_round(round_: CollectionRound, worker: str = "") -> None:
    """Score every set of the round with its judge (sets scored before a retry are kept), rank them
    by the strategy and open the first K; the row tells what happened."""
    if not claim(round_, worker):
        return
    try:
        score_sets(round_)
        ordered = rank_sets(round_)
    except RoundCancelled:
        return
    except Exception as exc:  # noqa: BLE001 - recorded on the row, cause first
        log.exception("collection round %s failed", round_.pk)
        CollectionRound.objects.filter(pk=round_.pk).exclude(status=JobStatus.CANCELLED).update(
            status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
            finished_at=timezone.now())
        return
    with transaction.atomic():
        locked = CollectionRound.objects.select_for_update().get(pk=round_.pk)
        if locked.stage == Stage.SCORING and not locked.is_finished:
            open_tasks(locked, ordered)


def candidate_tensors(candidate_set: CandidateSet) -> list:
    from rewardmodel.core.rerank import to_tensor

    images = []
    for candidate in candidate_set.candidates.order_by("index"):
        with default_storage.open(candidate.image.name, "rb") as handle:
            images.append(to_tensor(Image.open(io.BytesIO(handle.read()))))
    return images


def score_sets(round_: CollectionRound) -> None:
    from preferences.export import taxonomy
    from rewardmodel.core.judge import Judge

    from .core.set_scores import SetToScore, score_set

    pending = list(round_.sets.filter(pair_scores__isnull=True).select_related("candidate_set__input__task"))
    total = round_.sets.count()
    done = total - len(pending)
    round_.set_progress(done, total)
    if not pending:
        return
    judge = Judge.from_pretrained(round_.reward_model.model_path)
    manifest = taxonomy()
    for row in pending:
        item = row.candidate_set.input
        queries = {dimension.slug: judge.query(manifest, item.task.slug, dimension.slug, item.effective_prompt)
                   for dimension in item.judged_dimensions()}
        scores = score_set(judge, SetToScore(row.candidate_set_id, candidate_tensors(row.candidate_set), queries))
        CollectionSet.objects.filter(pk=row.pk).update(pair_scores=[score.as_list() for score in scores])
        done += 1
        round_.set_progress(done)
        if CollectionRound.objects.filter(pk=round_.pk, status=JobStatus.CANCELLED).exists():
            raise RoundCancelled
    del judge
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def human_picks(set_ids) -> dict[int, list[HumanPick]]:
    """{candidate set id: the annotators' non-discarded picks} (gold tasks left out)."""
    picks: dict[int, list[HumanPick]] = {}
    for set_id, dimension, best, worst in DimensionPick.objects.filter(
            discarded=False, judgment__task__is_gold=False, judgment__task__candidate_set_id__in=set_ids).values_list(
            "judgment__task__candidate_set_id", "dimension__slug", "best__index", "worst__index").order_by("pk"):
        picks.setdefault(set_id, []).append(HumanPick(dimension, best, worst))
    return picks


def rank_sets(round_: CollectionRound) -> list[int]:
    """Each set's figure under the round's strategy (stored), and the set ids in its order."""
    rows = list(round_.sets.select_related("candidate_set__batch"))
    picks = human_picks([row.candidate_set_id for row in rows]) if round_.ranks_judged_sets else {}
    for row in rows:
        pairs = [PairScore.from_list(values) for values in row.pair_scores or []]
        row.figure = strategies.figure(round_.strategy, pairs, picks.get(row.candidate_set_id, ()),
                                       row.candidate_set.batch.candidates_per_input) if pairs else None
    CollectionSet.objects.bulk_update(rows, ["figure"])
    return strategies.order_sets(round_.strategy, [row.candidate_set_id for row in rows],
                                 figures={row.candidate_set_id: row.figure for row in rows})


# --- the scheduler's tick -------------------------------------------------------------------------------


def start_due(schedule_id: int, now) -> CollectionRound | None:
    """Start the schedule's round if it is still due: its row is locked (skipped when another tick
    holds it) and its next due time moved on in the same transaction, so a due time starts one
    round whoever ticks. A round that cannot start leaves its reason on the schedule."""
    with transaction.atomic():
        rows = CollectionSchedule.objects.filter(pk=schedule_id, enabled=True, next_due_at__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        schedule = rows.first()
        if schedule is None:
            return None
        started, error = None, ""
        try:
            with transaction.atomic():
                started = start_from_schedule(schedule)
        except ValidationError as exc:
            error = error_text(exc)
        except Exception as exc:  # noqa: BLE001 - the schedule moves on and says why
            log.exception("collection schedule %s: the due round did not start", schedule)
            error = f"{type(exc).__name__}: {exc}"
        if error:
            log.warning("collection schedule %s: the due round did not start: %s", schedule, error)
        schedule.next_due_at = schedule.due_after(now, previous=schedule.next_due_at)
        schedule.last_started_at = now
        schedule.last_error = error
        schedule.save(update_fields=["next_due_at", "last_started_at", "last_error"])
    return started


def tick(now=None) -> list[CollectionRound]:
    """What beat runs every minute: start the schedules' due rounds, and move on rounds whose
    batches all finished without telling (a batch cancelled, a worker lost at the very end)."""
    now = now or timezone.now()
    due = CollectionSchedule.objects.filter(enabled=True, next_due_at__lte=now).values_list("pk", flat=True)
    started = [found for found in (start_due(pk, now) for pk in list(due)) if found is not None]
    generating = Q(stage=Stage.GENERATING, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    # A round that moved on before one of its batches was resumed and finished again.
    resumed = Q(status__in=[JobStatus.DONE, JobStatus.FAILED], batches__finished_at__gt=F("finished_at"))
    for pk in list(CollectionRound.objects.filter(generating | resumed).exclude(stage=Stage.SCORING)
                   .values_list("pk", flat=True).distinct()):
        advance(pk)
    return started


# --- signals (connected in RLConfig.ready) -------------------------------------------------------------


def holds_round_tasks(sender, batch, **kwargs) -> bool:
    """A round's batch: its finished sets wait for the round to open them in its order, also those
    of a batch resumed after the round opened its tasks (advance takes them when it finishes)."""
    return CollectionRound.objects.filter(batches=batch).exists()


def advance_rounds_of(sender, batch, **kwargs) -> None:
    """A batch finished: move its rounds on (an error is the round's, never the generation worker's),
    also a round that had moved on before the batch was resumed."""
    for pk in CollectionRound.objects.filter(batches=batch).exclude(status=JobStatus.CANCELLED).values_list(
            "pk", flat=True):
        try:
            advance(pk)
        except Exception as exc:  # noqa: BLE001 - recorded on the round
            log.exception("collection round %s could not move on", pk)
            CollectionRound.objects.filter(pk=pk).exclude(status=JobStatus.CANCELLED).update(
                status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
                finished_at=timezone.now())


# --- what the pages show ----------------------------------------------------------------------------------


def annotation_progress(round_: CollectionRound) -> dict:
    """Judgments made over the tasks the round opened (or gave more judgments)."""
    tasks = AnnotationTask.objects.filter(pk__in=round_.sets.exclude(task=None).values("task"))
    figures = tasks.aggregate(tasks=Count("pk"), done=models.Sum("judgments_done"),
                              wanted=models.Sum("required_judgments"))
    return {"tasks": figures["tasks"], "done": figures["done"] or 0, "wanted": figures["wanted"] or 0}


def stage_progress(round_: CollectionRound) -> tuple[int, int]:
    """(done, total) of the stage the round is in: candidate sets generated by its batches, sets
    scored by its judge; a round that opened its tasks is done."""
    if round_.stage == Stage.GENERATING:
        batches = list(round_.batches.all())
        return sum(batch.progress_done for batch in batches), sum(batch.progress_total for batch in batches)
    if round_.stage == Stage.SCORING:
        return round_.progress_done, round_.progress_total
    sets = round_.sets.count()
    return sets, sets


def stage_fraction(round_: CollectionRound) -> float:
    """The share of the current stage's work done, in [0, 1]."""
    done, total = stage_progress(round_)
    return done / total if total else 0.0


def stage_line(round_: CollectionRound) -> str:
    """One line saying where the round is."""
    if round_.status == JobStatus.FAILED:
        return f"failed: {round_.error_cause}"
    if round_.status == JobStatus.CANCELLED:
        return "cancelled"
    if round_.stage == Stage.GENERATING:
        done, total = stage_progress(round_)
        return f"generating: {done}/{total} candidate sets"
    if round_.stage == Stage.SCORING:
        return f"scoring: {round_.progress_done}/{round_.progress_total} sets scored by {round_.reward_model}"
    progress = annotation_progress(round_)
    return (f"opened {progress['tasks']} task(s): {progress['done']}/{progress['wanted']} judgments made")
