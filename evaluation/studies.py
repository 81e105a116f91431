"""Human evaluation studies: building one from generation batches, handing its items out, recording
judgments, and the report.

A study compares two or more arms (generation batches, usually launched for evaluation) on the
inputs every arm finished. Each input is a StudyItem showing one candidate per arm (the arm's
candidate index 0), blind and in an order shuffled per annotator. An annotator answers, per item:
- usability: for every candidate, usable or not;
- per judged dimension of the input: the best and the worst candidate, or "no clear difference".

Definitions used by the report (`study_report`):

- Usability rate of an arm on a task: usable votes / votes, over every judgment of every item of
  that task (each annotator's vote counts once; k annotators per item give k votes). The interval
  is Wilson's score interval at 95 %.
- Good/Same/Bad of arm A against arm B, from one judgment on one dimension:
    Good  A was picked best, or B was picked worst;
    Bad   B was picked best, or A was picked worst;
    Same  the dimension was discarded ("no clear difference"), or neither A nor B is the best or
          the worst (both in the middle, possible with three arms or more).
  Best and worst are different candidates, so Good and Bad never hold at once.
- Overall, from one judgment: Good when A is Good on more of the judged dimensions than it is Bad,
  Bad when on fewer, Same when on as many.
- Every judgment counts once per (A, B, task, dimension): G + S + B = the judgments of that task.
  Shares G/n, S/n, B/n come with Wilson 95 % intervals; net = (G - B) / (G + S + B), in [-1, 1].
  A vs B is the mirror of B vs A (Good and Bad swap); both orders are listed.
- "All tasks" pools the judgments of every task (per dimension: the tasks that judge it).

Pairs for the generator leaderboard (`study_outcomes`): on a dimension a judgment did not
discard, the best candidate beats every other candidate and every other candidate beats the
worst; two middle candidates give nothing. A row names the generators of the two candidates;
pairs of one generator with itself (two arms from the same generator) are left out.
"""
from collections import defaultdict
from dataclasses import dataclass
from itertools import permutations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from annotation import queue
from annotation.models import QualityControlSettings
from annotation.picks import JudgmentRejected, check_held, parse_envelope, parse_picks, stored_submission
from annotation.queue import AnnotatorPaused
from generation.models import Candidate, CandidateSet, GenerationBatch, SetStatus
from inputs.models import Dimension, Task
from mlcore.stats import wilson_interval
from onereward.jobs import JobStatus

from .models import (
    Study,
    StudyArm,
    StudyCandidate,
    StudyItem,
    StudyJudgment,
    StudyPick,
    StudySlot,
    StudySlotState,
    UsabilityVote,
)

# 95 % two-sided normal quantile.
LABEL_MAX = StudyArm._meta.get_field("label").max_length
ALL_TASKS = "all"
OVERALL = "overall"


# One refusal for annotation tasks and study items: the pick parser raises it for both.
StudyJudgmentRejected = JudgmentRejected

__all__ = [
    "AnnotatorPaused",
    "StudyJudgmentRejected",
    "StudyPlan",
    "check_study",
    "create_study",
    "next_item",
    "pool",
    "record_study_judgment",
    "study_outcomes",
    "study_report",
    "studies_with_work",
    "wilson_interval",
]


# --- building a study -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyPlan:
    """A study that passed every rule (check_study), ready to be saved (save_study)."""

    name: str
    judgments_per_item: int
    arms: list  # (GenerationBatch, label), in the arms' order
    inputs: list[int]  # the inputs finished in every arm's batch
    shown: list[dict[int, int]]  # per arm: input id -> the candidate shown (index 0 of a finished set)


def create_study(
    name: str, batches_with_labels, judgments_per_item: int = 3, user=None, description: str = "", active: bool = True
) -> Study:
    """Build a study from (batch, label) pairs, in one transaction: the arms, one item per input
    that is done in every arm's batch, with each arm's candidate 0, and `judgments_per_item` open
    slots per item. Raises ValidationError naming every problem found (nothing is stored)."""
    return save_study(check_study(name, batches_with_labels, judgments_per_item), user, description, active)


def check_study(name: str, batches_with_labels, judgments_per_item: int = 3) -> StudyPlan:
    """Every rule of a new study, checked without writing: the plan, or ValidationError naming
    every problem found. Forms and the API call it to validate, then save_study to create."""
    errors: dict[str, list[str]] = defaultdict(list)
    name = (name or "").strip()
    if not name:
        errors["name"].append("a study needs a name")
    elif Study.objects.filter(name=name).exists():
        errors["name"].append(f"a study named {name!r} exists already")
    if not isinstance(judgments_per_item, int) or isinstance(judgments_per_item, bool) or judgments_per_item < 1:
        errors["judgments_per_item"].append("at least one judgment per item")

    arms: list[tuple[GenerationBatch, str]] = []
    for batch, label in batches_with_labels:
        if not isinstance(batch, GenerationBatch):
            found = GenerationBatch.objects.filter(pk=batch).select_related("generator").first()
            if found is None:
                errors["arms"].append(f"no generation batch with id {batch}")
                continue
            batch = found
        arms.append((batch, (label or "").strip()))
    if len(arms) < 2:
        errors["arms"].append("a study compares at least two arms (generation batches)")
    batch_ids = [batch.pk for batch, _ in arms]
    if len(set(batch_ids)) != len(batch_ids):
        errors["arms"].append("each arm needs its own batch: the same batch is chosen twice")
    labels = [label for _, label in arms]
    if any(not label for label in labels):
        errors["arms"].append("every arm needs a label")
    if any(len(label) > LABEL_MAX for label in labels):
        errors["arms"].append(f"arm labels have at most {LABEL_MAX} characters")
    if len(set(labels)) != len(labels):
        errors["arms"].append("arm labels must differ")
    for batch, label in arms:
        if batch.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            errors["arms"].append(f"{batch} ({label}) is still {batch.status}; create the study once it has finished")

    if not errors:
        task_sets = {}
        for batch, label in arms:
            task_sets[label] = set(
                CandidateSet.objects.filter(batch=batch).values_list("input__task__slug", flat=True).distinct()
            )
        if len({frozenset(tasks) for tasks in task_sets.values()}) > 1:
            listed = "; ".join(f"{label}: {', '.join(sorted(tasks)) or 'none'}" for label, tasks in task_sets.items())
            errors["arms"].append(f"the arms cover different tasks ({listed}); compare batches over the same tasks")

    # Per arm: input id -> the candidate shown (index 0 of a finished set).
    shown: list[dict[int, int]] = []
    if not errors:
        for batch, _ in arms:
            shown.append(
                dict(
                    Candidate.objects.filter(
                        candidate_set__batch=batch, candidate_set__status=SetStatus.DONE, index=0
                    ).values_list("candidate_set__input_id", "pk")
                )
            )
        common = sorted(set.intersection(*(set(per_arm) for per_arm in shown)))
        if not common:
            errors["arms"].append("no input is finished in every arm's batch: there is nothing to compare")
    if errors:
        raise ValidationError(dict(errors))
    return StudyPlan(name, judgments_per_item, arms, common, shown)


def save_study(plan: StudyPlan, user=None, description: str = "", active: bool = True) -> Study:
    """Store a checked plan in one transaction. A study of the same name saved since the check is
    refused (ValidationError on "name"), with nothing stored."""
    name, judgments_per_item, arms, shown = plan.name, plan.judgments_per_item, plan.arms, plan.shown
    with transaction.atomic():
        study = Study(
            name=name, description=description, judgments_per_item=judgments_per_item, active=active, created_by=user
        )
        try:
            with transaction.atomic():
                study.save()
        except IntegrityError:
            raise ValidationError({"name": f"a study named {name!r} exists already"}) from None
        arm_rows = StudyArm.objects.bulk_create(
            [StudyArm(study=study, batch=batch, label=label, order=order) for order, (batch, label) in enumerate(arms)]
        )
        items = StudyItem.objects.bulk_create([StudyItem(study=study, input_id=input_id) for input_id in plan.inputs])
        StudyCandidate.objects.bulk_create(
            [
                StudyCandidate(item=item, arm=arm, candidate_id=per_arm[item.input_id])
                for item in items
                for arm, per_arm in zip(arm_rows, shown)
            ],
            batch_size=2000,
        )
        StudySlot.objects.bulk_create(
            [StudySlot(item=item) for item in items for _ in range(judgments_per_item)], batch_size=2000
        )
    return study


# --- handing items out ----------------------------------------------------------------------------


def shown_order(annotator_id: int, item_id: int, study_candidate_ids) -> list[int]:
    """The candidates' left-to-right order for this annotator and item: fixed (a reload shows the
    same), different per annotator, and unrelated to the arms' order."""
    return queue.shuffled(study_candidate_ids, queue.order_seed("study", annotator_id, item_id))


def pool(now, study=None):
    """Slots free to hand out: open, or leased with the lease run out, of active studies."""
    slots = queue.free(StudySlot.objects.filter(item__study__active=True), now)
    if study is not None:
        slots = slots.filter(item__study=study)
    return slots


def next_item(annotator, study=None, exclude: int | None = None) -> StudySlot | None:
    """The study slot this annotator should judge now, leased to them; None when nothing is left.

    A lease of theirs that nobody else has taken comes first (a reload resumes it, with the lease
    renewed); `exclude` names the slot on screen. Otherwise the first free slot of an item they
    hold no slot of, taken through the queue (annotation.queue): concurrent annotators never get
    the same slot and none waits on another. `study` limits the hand-out to one study (a Study or
    its id).
    """
    queue.ensure_not_paused(annotator)
    minutes = QualityControlSettings.current().lease_minutes
    return queue.hand_out(annotator, lambda: _take(annotator, study, exclude, minutes))


def _take(annotator, study, exclude, minutes) -> StudySlot | None:
    """next_item's work, inside its transaction."""
    now = timezone.now()
    with_item = StudySlot.objects.select_related("item__study", "item__input__task")
    mine = with_item.filter(annotator=annotator, state=StudySlotState.LEASED, item__study__active=True)
    if study is not None:
        mine = mine.filter(item__study=study)
    if exclude is not None:
        mine = mine.exclude(pk=exclude)
    current = queue.resume(mine, now, minutes)
    if current is not None:
        return current

    held = StudySlot.objects.filter(annotator=annotator).values("item")
    slot_id = queue.take(pool(now, study).exclude(item__in=held).order_by("item_id", "pk"))
    if slot_id is None:
        return None
    slot = with_item.get(pk=slot_id)
    ids = StudyCandidate.objects.filter(item_id=slot.item_id).values_list("pk", flat=True)
    return queue.lease(slot, annotator, now, minutes, shown_order(annotator.pk, slot.item_id, ids))


def studies_with_work(annotator, now=None) -> list[dict]:
    """Active studies this annotator can work on now: items they could take, and whether they hold a
    lease there. For the annotator's home page; study names stay out (they may name generators)."""
    now = now or timezone.now()
    held = StudySlot.objects.filter(annotator=annotator).values("item")
    free = dict(
        pool(now)
        .exclude(item__in=held)
        .order_by()
        .values("item__study")
        .annotate(n=Count("item", distinct=True))
        .values_list("item__study", "n")
    )
    leased = set(
        StudySlot.objects.filter(
            annotator=annotator, state=StudySlotState.LEASED, item__study__active=True
        ).values_list("item__study", flat=True)
    )
    return [
        {"study_id": pk, "items_left": free.get(pk, 0), "in_progress": pk in leased}
        for pk in sorted(set(free) | leased)
    ]


# --- recording a judgment -------------------------------------------------------------------------


@dataclass
class Recorded:
    judgment: StudyJudgment
    created: bool  # False: the same submission was already stored (a retry or a double click)


def _usability(usable, n: int) -> list[bool]:
    """The usable / not usable vote per screen position, every one given."""
    if not isinstance(usable, list) or len(usable) != n:
        raise StudyJudgmentRejected(f"say for every candidate (all {n}) whether it is usable")
    missing = [str(i + 1) for i, vote in enumerate(usable) if vote is None]
    if missing:
        raise StudyJudgmentRejected(f"say whether every candidate is usable; missing: {', '.join(missing)}")
    if not all(isinstance(vote, bool) for vote in usable):
        raise StudyJudgmentRejected("usable takes true or false per candidate")
    return usable


def record_study_judgment(annotator, slot_id: int, payload: dict) -> Recorded:
    """Store an annotator's answer on the slot leased to them, or raise StudyJudgmentRejected and
    store nothing. Idempotent on the submission id.

    Payload (screen positions from 0, leftmost; the server maps them through the slot's shown
    order, so candidate identities never reach the page):
    {"submission_id": uuid, "dwell_ms": int, "usable": [bool per position],
     "picks": {dimension_slug: {"best": position, "worst": position} | {"discarded": true}}}
    """
    submission_id, dwell_ms = parse_envelope(payload)
    existing = stored_submission(StudyJudgment.objects, submission_id, annotator, slot_id)
    if existing is not None:
        return Recorded(existing, created=False)

    with transaction.atomic():
        slot = StudySlot.objects.select_for_update(of=("self",)).select_related("item__input__task")
        slot = slot.filter(pk=slot_id).first()
        if slot is not None and slot.state == StudySlotState.DONE:
            # A retry that waited on the slot's lock while its original was being stored.
            existing = stored_submission(StudyJudgment.objects, submission_id, annotator, slot_id)
            if existing is not None:
                return Recorded(existing, created=False)
        check_held(slot, annotator, "item")
        order = list(slot.shown_order)
        candidates = {c.pk: c for c in StudyCandidate.objects.filter(item_id=slot.item_id)}
        if not order or sorted(order) != sorted(candidates):
            # The item's candidates changed since the lease: the screen no longer matches them.
            raise StudyJudgmentRejected("the candidates shown are not this item's; reload the page")
        usable = _usability(payload.get("usable"), len(order))
        parsed = parse_picks(payload.get("picks"), slot.item.input.judged_dimensions(), order, "item")
        rows = [
            StudyPick(dimension=pick.dimension, discarded=True)
            if pick.discarded
            else StudyPick(dimension=pick.dimension, best=candidates[pick.best], worst=candidates[pick.worst])
            for pick in parsed
        ]

        try:
            with transaction.atomic():
                judgment = StudyJudgment.objects.create(
                    slot=slot,
                    item_id=slot.item_id,
                    annotator=annotator,
                    shown_order=order,
                    submission_id=submission_id,
                    dwell_ms=dwell_ms,
                )
        except IntegrityError:
            # Another request got in first: the same submission (its success is this one's) or
            # another judgment of this annotator on this item.
            existing = stored_submission(StudyJudgment.objects, submission_id, annotator, slot_id)
            if existing is not None:
                return Recorded(existing, created=False)
            raise StudyJudgmentRejected("you have already judged this item") from None
        for row in rows:
            row.judgment = judgment
        StudyPick.objects.bulk_create(rows)
        UsabilityVote.objects.bulk_create(
            [
                UsabilityVote(judgment=judgment, study_candidate=candidates[order[position]], usable=vote)
                for position, vote in enumerate(usable)
            ]
        )
        StudySlot.objects.filter(pk=slot.pk).update(state=StudySlotState.DONE, leased_until=None)
        StudyItem.objects.filter(pk=slot.item_id).update(judgments_done=F("judgments_done") + 1)
    return Recorded(judgment, created=True)


# --- the report -----------------------------------------------------------------------------------


def _rate(successes: int, total: int) -> dict:
    interval = wilson_interval(successes, total)
    return {
        "rate": successes / total if total else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def gsb_figures(good: int, same: int, bad: int) -> dict:
    """Counts, shares with Wilson 95 % intervals, and net = (G - B) / (G + S + B)."""
    total = good + same + bad
    figures = {"good": good, "same": same, "bad": bad, "total": total, "net": (good - bad) / total if total else None}
    for name, count in (("good", good), ("same", same), ("bad", bad)):
        rate = _rate(count, total)
        figures[f"{name}_share"], figures[f"{name}_low"], figures[f"{name}_high"] = (
            rate["rate"],
            rate["low"],
            rate["high"],
        )
    return figures


def pick_outcome(a: int, b: int, best: int | None, worst: int | None, discarded: bool) -> int:
    """+1 Good, 0 Same, -1 Bad for arm a against arm b on one dimension of one judgment."""
    if discarded:
        return 0
    if best == a or worst == b:
        return 1
    if best == b or worst == a:
        return -1
    return 0


def study_report(study: Study) -> dict:
    """Usability per arm x task and Good/Same/Bad per ordered pair of arms x task x dimension, as
    plain data (the admin page and the API show the same). See the module docstring."""
    arms = list(study.arms.select_related("batch__generator").order_by("order", "pk"))
    arm_ids = [arm.pk for arm in arms]
    tasks = list(Task.objects.filter(inputs__study_items__study=study).distinct().order_by("order", "slug"))
    task_slug = {task.pk: task.slug for task in tasks}
    dimension_of = {d.pk: d for d in Dimension.objects.all()}

    # Usability: votes per arm x task, counted by the database.
    votes = (
        UsabilityVote.objects.filter(judgment__item__study=study)
        .order_by()
        .values("study_candidate__arm_id", "judgment__item__input__task_id")
        .annotate(n=Count("pk"), usable=Count("pk", filter=Q(usable=True)))
        .values_list("study_candidate__arm_id", "judgment__item__input__task_id", "n", "usable")
    )
    counted = defaultdict(lambda: [0, 0])  # (arm, task slug) -> [usable, votes]
    for arm_id, task_id, n, usable in votes:
        for key in ((arm_id, task_slug[task_id]), (arm_id, ALL_TASKS)):
            counted[key][0] += usable
            counted[key][1] += n

    def usability_row(slug, name):
        cells = []
        for arm in arms:
            usable, n = counted[(arm.pk, slug)]
            cells.append({"arm": arm.label, "usable": usable, "votes": n, **_rate(usable, n)})
        return {"task": slug, "task_name": name, "arms": cells}

    usability = [usability_row(task.slug, task.name) for task in tasks]
    usability.append(usability_row(ALL_TASKS, "All tasks"))

    # Good/Same/Bad: one pass over the picks, then the per-judgment "overall".
    arm_of = dict(StudyCandidate.objects.filter(item__study=study).values_list("pk", "arm_id"))
    pairs = list(permutations(arm_ids, 2))
    tally = defaultdict(lambda: [0, 0, 0])  # (a, b, task, dimension id | OVERALL) -> [good, same, bad]
    balance = defaultdict(int)  # (judgment, a, b) -> dimensions won - lost
    judgment_task = {}
    dimensions_seen = defaultdict(set)  # task slug -> dimension ids
    picks = (
        StudyPick.objects.filter(judgment__item__study=study)
        .values_list(
            "judgment_id", "judgment__item__input__task_id", "dimension_id", "best_id", "worst_id", "discarded"
        )
        .order_by("judgment_id")
    )
    for judgment_id, task_id, dimension_id, best_id, worst_id, discarded in picks.iterator(chunk_size=5000):
        slug = task_slug[task_id]
        judgment_task[judgment_id] = slug
        dimensions_seen[slug].add(dimension_id)
        best, worst = arm_of.get(best_id), arm_of.get(worst_id)
        for a, b in pairs:
            outcome = pick_outcome(a, b, best, worst, discarded)
            tally[(a, b, slug, dimension_id)][1 - outcome] += 1
            balance[(judgment_id, a, b)] += outcome
    for (judgment_id, a, b), wins in balance.items():
        outcome = (wins > 0) - (wins < 0)
        tally[(a, b, judgment_task[judgment_id], OVERALL)][1 - outcome] += 1

    def ordered_dimensions(ids):
        return sorted((dimension_of[i] for i in ids), key=lambda d: (d.order, d.slug))

    def gsb_rows(a, b, slugs, dimension_ids):
        rows = []
        for dimension in ordered_dimensions(dimension_ids):
            counts = [sum(tally[(a, b, slug, dimension.pk)][i] for slug in slugs) for i in range(3)]
            rows.append({"dimension": dimension.slug, "dimension_name": dimension.name, **gsb_figures(*counts)})
        counts = [sum(tally[(a, b, slug, OVERALL)][i] for slug in slugs) for i in range(3)]
        rows.append({"dimension": OVERALL, "dimension_name": "Overall", **gsb_figures(*counts)})
        return rows

    label = {arm.pk: arm.label for arm in arms}
    gsb = []
    for a, b in pairs:
        blocks = [
            {
                "task": task.slug,
                "task_name": task.name,
                "rows": gsb_rows(a, b, [task.slug], dimensions_seen[task.slug]),
            }
            for task in tasks
        ]
        if len(tasks) > 1:
            every = set().union(*dimensions_seen.values()) if dimensions_seen else set()
            blocks.append(
                {
                    "task": ALL_TASKS,
                    "task_name": "All tasks",
                    "rows": gsb_rows(a, b, [task.slug for task in tasks], every),
                }
            )
        gsb.append({"a": label[a], "b": label[b], "tasks": blocks})

    progress = study.items.aggregate(
        items=Count("pk"), done=Count("pk", filter=Q(judgments_done__gte=study.judgments_per_item))
    )
    judgments = StudyJudgment.objects.filter(item__study=study).count()
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "judgments_per_item": study.judgments_per_item,
            "items": progress["items"],
            "items_complete": progress["done"],
            "judgments": judgments,
            "judgments_wanted": progress["items"] * study.judgments_per_item,
        },
        "arms": [
            {
                "label": arm.label,
                "batch": arm.batch_id,
                "batch_name": str(arm.batch),
                "generator": arm.batch.generator.name,
            }
            for arm in arms
        ],
        "tasks": [{"slug": task.slug, "name": task.name} for task in tasks],
        "usability": usability,
        "gsb": gsb,
        "definitions": {
            "usability": "usable votes / votes per arm and task; Wilson 95 % interval",
            "gsb": "per judgment and dimension: Good when A is best or B is worst, Bad when B is best or A is worst, "
            "Same when discarded or neither is best or worst; overall per judgment: Good when A wins more "
            "dimensions than it loses, Bad when fewer, Same when as many; net = (G - B) / (G + S + B)",
        },
    }


# --- pairs for the generator leaderboard -----------------------------------------------------------


def study_outcomes(task=None):
    """Yield (task_slug, dimension_slug, item_id, winner_generator_id, loser_generator_id) for every
    pair of arms a study judgment ordered on a dimension: the best beats every other candidate,
    every other candidate beats the worst; middle against middle gives nothing, nor does a
    discarded dimension, nor a generator against itself. `task`: a Task or its slug.

    Streams: the picks and the items' candidates are read in item order, side by side, with
    server-side cursors, so memory stays flat however many judgments there are.
    """
    picks = StudyPick.objects.filter(discarded=False)
    candidates = StudyCandidate.objects.all()
    if task is not None:
        slug = task.slug if isinstance(task, Task) else task
        picks = picks.filter(judgment__item__input__task__slug=slug)
        candidates = candidates.filter(item__input__task__slug=slug)
    picks = (
        picks.order_by("judgment__item_id", "judgment_id", "dimension_id")
        .values_list(
            "judgment__item_id", "judgment__item__input__task__slug", "dimension__slug", "best_id", "worst_id"
        )
        .iterator(chunk_size=5000)
    )
    members = (
        candidates.order_by("item_id", "pk")
        .values_list("item_id", "pk", "candidate__candidate_set__batch__generator_id")
        .iterator(chunk_size=5000)
    )

    pending = next(members, None)
    item_id, generators = None, {}
    for pick_item, task_slug, dimension_slug, best_id, worst_id in picks:
        if pick_item != item_id:
            item_id, generators = pick_item, {}
            while pending is not None and pending[0] < item_id:
                pending = next(members, None)
            while pending is not None and pending[0] == item_id:
                generators[pending[1]] = pending[2]
                pending = next(members, None)
        winner, loser = generators.get(best_id), generators.get(worst_id)
        for candidate_id, generator_id in generators.items():
            if candidate_id != best_id and generator_id != winner:
                yield task_slug, dimension_slug, item_id, winner, generator_id
            if candidate_id not in (best_id, worst_id) and generator_id != loser:
                yield task_slug, dimension_slug, item_id, generator_id, loser
