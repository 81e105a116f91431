"""Building a preference dataset version: judgments -> winner/loser pairs -> files in storage.

The picks are read as one stream of narrow rows ordered by (candidate set, dimension), so every
(set, dimension) arrives as a run of consecutive rows; the sets' details (input, candidates,
generator) are fetched for a buffer of sets at a time with two queries. Memory therefore depends
on the buffer, never on the number of judgments. Files are written into a temporary folder and
only then put into storage, and the record is updated last, so a failed or cancelled build leaves
no half-written dataset behind.
"""
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, groupby
from pathlib import Path
from urllib.parse import quote_from_bytes

import numpy as np
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, connections, transaction
from django.db.models import Case, IntegerField, Max, Q, When
from django.db.models.functions import Coalesce
from django.db.models.sql.constants import MULTI
from django.utils import timezone

from annotation.models import (
    AnnotatorStatus,
    DimensionPick,
    Judgment,
    QualityControlSettings,
    SimulatedAnnotator,
    SlotKind,
)
from annotation.quality import gold_accuracy
from generation.models import Candidate, CandidateSet
from inputs.core import taxonomy as taxonomy_rules
from inputs.models import Dimension, Input, Task, TaskDimension
from onereward.jobs import JobStatus

from .core import feedback, pair_arrays, pairing, row_tables, splits
from .core.files import FORMATS, SCHEMA_VERSION, SPLITS, DatasetWriter, file_sha256
from .models import FeedbackEvent, PreferenceDataset

STREAM_CHUNK = 10000
# Sets whose rows are built together: 500 made the same speed with twice the memory (the buffer's
# columns and row texts are held at once).
SETS_PER_BUFFER = 200


class DatasetCancelled(Exception):
    pass


# --- which judgments -----------------------------------------------------------------------------


def excluded_annotators(dataset: PreferenceDataset) -> set[int]:
    """Annotators not in good standing: paused, or with gold accuracy under the bar (over every
    gold judgment; annotators with fewer scored gold picks than the QC minimum are not judged)."""
    if not dataset.good_standing_only:
        return set()
    qc = QualityControlSettings.current()
    bar = qc.gold_accuracy_threshold if dataset.min_gold_accuracy is None else dataset.min_gold_accuracy
    excluded = set(AnnotatorStatus.objects.filter(paused=True).values_list("user_id", flat=True))
    for annotator_id, accuracy in gold_accuracy().items():
        if accuracy.total >= qc.gold_min_judgments and accuracy.share is not None and accuracy.share < bar:
            excluded.add(annotator_id)
    return excluded


def judgment_filter(dataset: PreferenceDataset, excluded: set[int], prefix: str = "") -> Q:
    """Which judgments go in, as a condition on Judgment (prefix "") or on a model that points at
    one (prefix "judgment__"): the picks are filtered through their own joins, never through an
    `IN (subquery)`, which PostgreSQL planned as a nested loop over every annotator's judgments
    (a third of the export's time at a million judgments)."""
    def q(**lookups) -> Q:
        return Q(**{prefix + key: value for key, value in lookups.items()})

    condition = Q()
    if dataset.pk and dataset.batches.exists():
        condition &= q(task__candidate_set__batch__in=list(dataset.batches.values_list("pk", flat=True)))
    if dataset.pk and dataset.tasks.exists():
        condition &= q(task__candidate_set__input__task__in=list(dataset.tasks.values_list("pk", flat=True)))
    if dataset.pk and dataset.annotators.exists():
        condition &= q(annotator__in=list(dataset.annotators.values_list("pk", flat=True)))
    left_out = set(excluded)
    if not dataset.include_simulated:
        left_out |= set(SimulatedAnnotator.objects.values_list("user_id", flat=True))
    if left_out:
        condition &= ~q(annotator__in=sorted(left_out))
    if dataset.submitted_from:
        condition &= q(submitted_at__gte=dataset.submitted_from)
    if dataset.submitted_until:
        condition &= q(submitted_at__lt=dataset.submitted_until)
    if not dataset.include_gold:
        # Also a regular judgment on a task marked gold after it was handed out.
        condition &= q(task__is_gold=False) & ~q(kind=SlotKind.GOLD)
    if not dataset.include_repeats:
        condition &= ~q(kind=SlotKind.REPEAT)
    return condition


def eligible_judgments(dataset: PreferenceDataset, excluded: set[int]):
    return Judgment.objects.order_by().filter(judgment_filter(dataset, excluded))


def eligible_picks(dataset: PreferenceDataset, excluded: set[int]):
    picks = DimensionPick.objects.order_by().filter(judgment_filter(dataset, excluded, prefix="judgment__"))
    if dataset.pk and dataset.dimensions.exists():
        picks = picks.filter(dimension__in=list(dataset.dimensions.values_list("pk", flat=True)))
    return picks


# --- from picks to rows ---------------------------------------------------------------------------


@dataclass
class SetDetails:
    input_id: int
    input_hash: str
    task: str
    prompt: str
    prompt_given: bool
    source: object  # storage URI (str) or an embedded image {"bytes", "path"}
    mask: object
    batch_id: int
    generator_id: int
    generator: str
    candidates: dict  # index -> (public id, image, settings JSON)


def storage_uri(name: str) -> str:
    """Where a stored file lives, for readers outside the platform: s3://bucket/key on S3, a file
    URI on local storage."""
    bucket = getattr(default_storage, "bucket_name", None)
    if bucket:
        location = getattr(default_storage, "location", "").strip("/")
        return f"s3://{bucket}/{location + '/' if location else ''}{name}"
    # What Path(...).as_uri() makes of the storage's absolute, normalised path, without the Path
    # objects (a fifth of the time per candidate set in the export).
    return "file://" + quote_from_bytes(os.fsencode(default_storage.path(name)))


def _image(name: str, embed: bool):
    if not embed:
        return storage_uri(name)
    with default_storage.open(name, "rb") as handle:
        return {"bytes": handle.read(), "path": name}


def _set_details(set_ids: list[int], embed: bool, tasks: dict[int, Task]) -> dict[int, SetDetails]:
    details = {}
    rows = CandidateSet.objects.filter(pk__in=set_ids).values_list(
        "pk", "input_id", "input__content_hash", "input__task_id", "input__prompt", "input__source", "input__mask",
        "batch_id", "batch__generator_id", "batch__generator__name")
    for pk, input_id, content_hash, task_id, prompt, source, mask, batch_id, generator_id, generator in rows:
        task = tasks[task_id]
        details[pk] = SetDetails(
            input_id=input_id, input_hash=content_hash, task=task.slug, prompt=task.effective_prompt(prompt),
            prompt_given=taxonomy_rules.prompt_given(prompt), source=_image(source, embed), mask=_image(mask, embed),
            batch_id=batch_id, generator_id=generator_id, generator=generator, candidates={})
    for set_id, index, public_id, image, settings in (
        Candidate.objects.filter(candidate_set_id__in=set_ids)
        .values_list("candidate_set_id", "index", "public_id", "image", "settings")
        .order_by()
    ):
        details[set_id].candidates[index] = (str(public_id), image, json.dumps(settings, sort_keys=True))
    return details


def taxonomy() -> dict:
    """Tasks and dimensions as the ML core reads them (no database there): names, definitions,
    prompt rules, RL probabilities and each task's judged dimensions in order (inputs.core.taxonomy
    gives a task entry's shape)."""
    links: dict[int, list[tuple[str, bool]]] = {}
    for task_id, dimension, only_with_prompt in TaskDimension.objects.order_by("task", "order", "dimension__order") \
            .values_list("task_id", "dimension__slug", "only_with_prompt"):
        links.setdefault(task_id, []).append((dimension, only_with_prompt))
    tasks = {task.slug: taxonomy_rules.task_entry(
        name=task.name, description=task.description, default_prompt=task.default_prompt,
        prompt_mode=task.prompt_mode, rl_probability=task.rl_probability, dimensions=links.get(task.pk, []))
        for task in Task.objects.all()}
    dimensions = {slug: {"name": name, "definition": definition, "uses_prompt": uses_prompt}
                  for slug, name, definition, uses_prompt in
                  Dimension.objects.values_list("slug", "name", "definition", "query_includes_prompt")}
    return {"tasks": tasks, "dimensions": dimensions}


def options(dataset: PreferenceDataset) -> dict:
    """Everything that decides the rows: part of the manifest and of the content hash."""
    return {
        "batches": sorted(dataset.batches.values_list("pk", flat=True)),
        "tasks": sorted(dataset.tasks.values_list("slug", flat=True)),
        "dimensions": sorted(dataset.dimensions.values_list("slug", flat=True)),
        "annotators": sorted(dataset.annotators.values_list("pk", flat=True)),
        "submitted_from": dataset.submitted_from.isoformat() if dataset.submitted_from else None,
        "submitted_until": dataset.submitted_until.isoformat() if dataset.submitted_until else None,
        "good_standing_only": dataset.good_standing_only,
        "min_gold_accuracy": dataset.min_gold_accuracy,
        "include_gold": dataset.include_gold,
        "include_repeats": dataset.include_repeats,
        "include_simulated": dataset.include_simulated,
        "pairing": dataset.pairing,
        "aggregation": dataset.aggregation,
        "tie_rule": dataset.tie_rule,
        "min_votes": dataset.min_votes,
        "split_fractions": {"train": dataset.train_fraction, "validation": dataset.validation_fraction,
                            "test": dataset.test_fraction},
        "split_seed": dataset.split_seed,
        "embed_images": dataset.embed_images,
        "implicit_feedback": dataset.implicit_feedback,
        "implicit_weight": dataset.implicit_weight if dataset.implicit_feedback else None,
        "implicit_sources": sorted(dataset.implicit_sources) if dataset.implicit_feedback else [],
    }


def write_dataset(dataset: PreferenceDataset, folder: Path, progress=None) -> dict:
    """Write the dataset's files into `folder`; returns the manifest. `progress(done, total)` is
    called after every buffer of candidate sets and may raise to stop the build."""
    excluded = excluded_annotators(dataset)
    judgments = eligible_judgments(dataset, excluded)
    picks = eligible_picks(dataset, excluded)
    total_sets = judgments.values("task__candidate_set_id").distinct().count()
    judgment_count = judgments.count()
    tasks = {task.pk: task for task in Task.objects.all()}
    dimensions = dict(Dimension.objects.values_list("pk", "slug"))
    writer = DatasetWriter(folder, embed_images=dataset.embed_images, formats=dataset.formats)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    done_sets = 0
    try:
        waiting = np.empty((0, len(STREAM_COLUMNS)), np.int64)
        for chunk in _pick_chunks(picks):
            waiting = np.concatenate([waiting, chunk]) if len(waiting) else chunk
            # Picks come ordered by set; the last set may go on in the next chunk, so a buffer is
            # cut only once a set after its last one has begun.
            starts = np.flatnonzero(np.r_[True, waiting[1:, 0] != waiting[:-1, 0]])
            while len(starts) > SETS_PER_BUFFER:
                cut = starts[SETS_PER_BUFFER]
                done_sets += _flush(waiting[:cut], dataset, writer, counts, tasks, dimensions)
                waiting, starts = waiting[cut:], starts[SETS_PER_BUFFER:] - cut
                if progress is not None:
                    progress(done_sets, total_sets)
        done_sets += _flush(waiting, dataset, writer, counts, tasks, dimensions)
        weak = _write_weak_pairs(dataset, writer, counts, tasks) if dataset.implicit_feedback else {}
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    if progress is not None:
        progress(done_sets, total_sets)
    pair_count = sum(count for per_task in counts.values() for per_dim in per_task.values()
                     for count in per_dim.values())
    settings = options(dataset)
    inputs_per_split = _inputs_per_split(dataset, judgments)
    for split, count in weak.get("inputs_per_split", {}).items():
        inputs_per_split[split] += count
    content = hashlib.sha256()
    content.update(json.dumps(settings, sort_keys=True).encode())
    content.update(writer.digest.digest())
    return {
        "schema_version": SCHEMA_VERSION,
        "name": dataset.name,
        "version": dataset.version,
        "content_hash": content.hexdigest(),
        "options": settings,
        "judgments": judgment_count,
        "candidate_sets": done_sets,
        "pairs": pair_count,
        "weak_pairs": weak.get("pairs", 0),
        "inputs_per_split": inputs_per_split,
        "warnings": splits.split_warnings(
            {"train": dataset.train_fraction, "validation": dataset.validation_fraction,
             "test": dataset.test_fraction}, inputs_per_split, splits.pairs_per_split(counts)),
        "counts": counts,
        # Names and definitions, so that a trainer with no database can build its queries.
        "taxonomy": taxonomy(),
        "files": {name: {"rows": rows, "bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
                  for name, rows in files.items()},
    }


def _inputs_per_split(dataset: PreferenceDataset, judgments) -> dict[str, int]:
    """Inputs with eligible judgments in each split: one more stream, of distinct input hashes, so
    that an input judged in several batches counts once."""
    counts = dict.fromkeys(SPLITS, 0)
    hashes = judgments.values_list("task__candidate_set__input__content_hash", flat=True).distinct()
    for content_hash in hashes.iterator(chunk_size=STREAM_CHUNK):
        counts[pairing.split_of(content_hash, dataset.split_seed, dataset.train_fraction,
                                dataset.validation_fraction, dataset.test_fraction)] += 1
    return counts


# The stream's columns: set, dimension, annotator, discarded (0/1), best and worst index (-1: none).
STREAM_COLUMNS = ("judgment__task__candidate_set_id", "dimension_id", "judgment__annotator_id", "discarded_flag",
                  "best_index", "worst_index")
# Room for PostgreSQL to sort the picks in memory instead of in temporary files (a million
# judgments make 3.9 M picks, about 190 MB to sort); for the stream's statement only.
STREAM_WORK_MEM = "512MB"


def _pick_chunks(picks) -> Iterator[np.ndarray]:
    """The picks ordered by (set, dimension, annotator, judgment), STREAM_CHUNK rows at a time, as
    integer arrays of STREAM_COLUMNS: the rows the database cursor hands over, never one Python
    object per pick."""
    stream = picks.annotate(
        discarded_flag=Case(When(discarded=True, then=1), default=0, output_field=IntegerField()),
        best_index=Coalesce("best__index", -1, output_field=IntegerField()),
        worst_index=Coalesce("worst__index", -1, output_field=IntegerField()),
    ).values_list(*STREAM_COLUMNS).order_by(
        "judgment__task__candidate_set_id", "dimension_id", "judgment__annotator_id", "judgment_id")
    compiler = stream.query.get_compiler(using=stream.db)
    connection = connections[stream.db]
    tuned = connection.vendor == "postgresql"
    if tuned:
        with connection.cursor() as cursor:
            # Inside a transaction SET LOCAL ends with it; outside, each statement is its own.
            cursor.execute(f"SET {'LOCAL ' if connection.in_atomic_block else ''}work_mem = '{STREAM_WORK_MEM}'")
    try:
        server_side = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        for rows in compiler.execute_sql(MULTI, chunked_fetch=server_side, chunk_size=STREAM_CHUNK):
            yield np.fromiter(chain.from_iterable(rows), dtype=np.int64,
                              count=len(rows) * len(STREAM_COLUMNS)).reshape(-1, len(STREAM_COLUMNS))
    finally:
        if tuned and not connection.in_atomic_block:
            with connection.cursor() as cursor:
                cursor.execute("RESET work_mem")


def _flush(picks: np.ndarray, dataset, writer, counts, tasks, dimensions) -> int:
    """Turn the picks of whole sets (rows of STREAM_COLUMNS) into rows; returns the number of sets."""
    if not len(picks):
        return 0
    new_unit = np.r_[True, (picks[1:, 0] != picks[:-1, 0]) | (picks[1:, 1] != picks[:-1, 1])]
    unit = np.cumsum(new_unit) - 1
    unit_first = np.flatnonzero(new_unit)
    unit_set_id, unit_dimension_id = picks[unit_first, 0], picks[unit_first, 1]
    set_ids, unit_set = np.unique(unit_set_id, return_inverse=True)
    details = _set_details(set_ids.tolist(), dataset.embed_images, tasks)
    sets, candidates = [], []
    for set_id in set_ids.tolist():
        set_details = details[set_id]
        if sorted(set_details.candidates) != list(range(len(set_details.candidates))):
            raise ValueError(f"candidate set {set_id}: candidate indices {sorted(set_details.candidates)} "
                             f"are not 0..{len(set_details.candidates) - 1}")
        split = pairing.split_of(set_details.input_hash, dataset.split_seed, dataset.train_fraction,
                                 dataset.validation_fraction, dataset.test_fraction)
        sets.append({"split": split, "input_id": set_details.input_id, "input_hash": set_details.input_hash,
                     "task": set_details.task, "prompt": set_details.prompt,
                     "prompt_given": set_details.prompt_given, "source": set_details.source,
                     "mask": set_details.mask, "set_id": set_id, "generator": set_details.generator,
                     "generator_id": set_details.generator_id, "batch_id": set_details.batch_id})
        candidates.append([set_details.candidates[index] for index in range(len(set_details.candidates))])
    votes = pair_arrays.Votes(unit=unit, annotator=picks[:, 2], discarded=picks[:, 3] == 1, best=picks[:, 4],
                              worst=picks[:, 5], n=np.array([len(c) for c in candidates], np.int64)[unit_set])
    pairs = pair_arrays.derive_pair_arrays(votes, policy=dataset.pairing, aggregation=dataset.aggregation,
                                           tie_rule=dataset.tie_rule, min_votes=dataset.min_votes)
    unit_dimension = [dimensions[dimension_id] for dimension_id in unit_dimension_id.tolist()]
    if len(pairs):
        # Images as the files name them (read from storage when embedded), only those in a pair.
        used = np.unique(np.concatenate([unit_set[pairs.unit] * 2**16 + pairs.winner,
                                         unit_set[pairs.unit] * 2**16 + pairs.loser]))
        resolved = [[(public_id, None, settings) for public_id, _, settings in per_set] for per_set in candidates]
        for key in used.tolist():
            position, index = divmod(key, 2**16)
            public_id, name, settings = candidates[position][index]
            resolved[position][index] = (public_id, _image(name, dataset.embed_images), settings)
        table, lines = row_tables.pair_table(pairs, unit_set, unit_dimension, sets, resolved, writer.schema)
        writer.write_table(table, row_tables.text_bytes(lines))
    made = np.bincount(pairs.unit, minlength=len(unit_first)).tolist()
    for u, count in enumerate(made):
        if count:
            values = sets[unit_set[u]]
            per_split = counts.setdefault(values["task"], {}).setdefault(unit_dimension[u], dict.fromkeys(SPLITS, 0))
            per_split[values["split"]] += count
    return len(set_ids)


# --- weak pairs from production feedback -----------------------------------------------------------


def _write_weak_pairs(dataset: PreferenceDataset, writer, counts, tasks) -> dict:
    """Weak pairs (preferences.core.feedback.weak_pairs) of every input with feedback events, on
    each dimension its task is judged on (the dataset's dimension filter applies), weighted by
    `implicit_weight` and marked by source in `origin`. Inputs whose judgments are also in the
    dataset are already counted per split; the others are returned."""
    events = FeedbackEvent.objects.order_by("input_id", "pk").select_related(
        "candidate__candidate_set__batch__generator")
    if dataset.implicit_sources:
        events = events.filter(source__in=dataset.implicit_sources)
    if dataset.pk and dataset.tasks.exists():
        events = events.filter(input__task__in=dataset.tasks.all())
    chosen_dimensions = set(dataset.dimensions.values_list("slug", flat=True)) if dataset.pk else set()
    judged = {}
    for task_id, slug, only_with_prompt in TaskDimension.objects.order_by("task", "order").values_list(
            "task_id", "dimension__slug", "only_with_prompt"):
        judged.setdefault(task_id, []).append((slug, only_with_prompt))
    made, new_inputs = 0, dict.fromkeys(SPLITS, 0)
    judged_inputs = set(eligible_judgments(dataset, excluded_annotators(dataset)).values_list(
        "task__candidate_set__input_id", flat=True).distinct())
    for input_id, group in groupby(events.iterator(chunk_size=STREAM_CHUNK), key=lambda event: event.input_id):
        group = list(group)
        item = Input.objects.get(pk=input_id)
        task = tasks[item.task_id]
        split = pairing.split_of(item.content_hash, dataset.split_seed, dataset.train_fraction,
                                 dataset.validation_fraction, dataset.test_fraction)
        by_key = {event.image_key: event for event in group}
        pairs = feedback.weak_pairs([(e.image_key, e.event, e.source, (e.occurred_at or e.imported_at, e.pk))
                                     for e in group])
        if not pairs:
            continue
        if input_id not in judged_inputs:
            new_inputs[split] += 1
        prompt_given = taxonomy_rules.prompt_given(item.prompt)
        dimensions = [slug for slug, only_with_prompt in judged.get(item.task_id, [])
                      if (prompt_given or not only_with_prompt)
                      and (not chosen_dimensions or slug in chosen_dimensions)]
        source, mask = _image(item.source.name, dataset.embed_images), _image(item.mask.name, dataset.embed_images)
        for pair in pairs:
            winner, loser = by_key[pair.winner], by_key[pair.loser]
            for dimension in dimensions:
                writer.write(_weak_row(dataset, split, item, task, prompt_given, source, mask, dimension, winner,
                                       loser, pair.source))
                per_split = counts.setdefault(task.slug, {}).setdefault(dimension, dict.fromkeys(SPLITS, 0))
                per_split[split] += 1
                made += 1
    return {"pairs": made, "inputs_per_split": new_inputs}


def _side(event: FeedbackEvent, embed: bool) -> dict:
    candidate = event.candidate
    if candidate is not None:
        batch = candidate.candidate_set.batch
        return {"candidate": str(candidate.public_id), "index": candidate.index, "image": _image(candidate.image.name,
                embed), "generator": batch.generator.name, "generator_id": batch.generator_id, "batch_id": batch.pk,
                "settings": json.dumps(candidate.settings, sort_keys=True), "set": candidate.candidate_set_id}
    # An outside image: made by the product, not by a generator of ours.
    return {"candidate": f"outside:{event.image_hash[:20]}", "index": -1, "image": _image(event.image, embed),
            "generator": f"outside ({event.source})", "generator_id": None, "batch_id": None, "settings": "{}",
            "set": None}


def _weak_row(dataset, split, item, task, prompt_given, source, mask, dimension, winner, loser, origin) -> dict:
    win, lose = _side(winner, dataset.embed_images), _side(loser, dataset.embed_images)
    key = f"implicit:{item.pk}:{dimension}:{winner.image_key}:{loser.image_key}"
    return {
        "pair_id": hashlib.sha256(key.encode()).hexdigest()[:20], "split": split, "input_id": item.pk,
        "input_hash": item.content_hash, "task": task.slug, "dimension": dimension,
        "prompt": task.effective_prompt(item.prompt), "prompt_given": prompt_given, "source": source, "mask": mask,
        # Both images of one candidate set when they are; otherwise none (outside images, two batches).
        "candidate_set_id": win["set"] if win["set"] == lose["set"] else None,
        "winner_candidate": win["candidate"], "loser_candidate": lose["candidate"], "winner_index": win["index"],
        "loser_index": lose["index"], "winner_image": win["image"], "loser_image": lose["image"],
        "origin": f"implicit:{origin}", "votes_for": 0, "votes_against": 0, "discards": 0, "soft_label": 1.0,
        "weight": dataset.implicit_weight, "annotators": [],
        "winner_generator": win["generator"], "winner_generator_id": win["generator_id"],
        "winner_batch_id": win["batch_id"], "winner_settings": win["settings"],
        "loser_generator": lose["generator"], "loser_generator_id": lose["generator_id"],
        "loser_batch_id": lose["batch_id"], "loser_settings": lose["settings"],
    }


# --- the job --------------------------------------------------------------------------------------


def next_version(name: str) -> int:
    latest = PreferenceDataset.objects.filter(name=name).aggregate(latest=Max("version"))["latest"]
    return (latest or 0) + 1


def create_dataset(*, name: str, user=None, batches=(), tasks=(), dimensions=(), annotators=(), queue=True,
                   **fields) -> PreferenceDataset:
    """Validate the options, save the next version of `name` with them and queue its build.
    Raises ValidationError naming what is wrong (admin, API and command line alike)."""
    return save_dataset(checked_dataset(name=name, user=user, **fields), batches=batches, tasks=tasks,
                        dimensions=dimensions, annotators=annotators, queue=queue)


def checked_dataset(*, name: str, user=None, **fields) -> PreferenceDataset:
    """A dataset version with these options, validated and not yet saved (its version number is
    given when it is saved). Raises ValidationError naming what is wrong."""
    dataset = PreferenceDataset(name=name, created_by=user, version=0, **fields)
    dataset.full_clean(exclude=["created_by", "version"])
    return dataset


def save_dataset(dataset: PreferenceDataset, *, batches=(), tasks=(), dimensions=(), annotators=(), queue=True
                 ) -> PreferenceDataset:
    """Save a checked dataset as the next version of its name, with its selections, and queue its build."""
    name = dataset.name
    for _ in range(5):
        try:
            with transaction.atomic():
                dataset.version = next_version(name)
                dataset.save()
                dataset.batches.set(batches)
                dataset.tasks.set(tasks)
                dataset.dimensions.set(dimensions)
                dataset.annotators.set(annotators)
                if queue:
                    dataset.enqueue()
            return dataset
        except IntegrityError:
            # Another version of the same name was saved at the same moment: take the next number.
            dataset.pk = None
    raise ValidationError({"name": f"could not number a new version of {name!r}; try again"})


def build(dataset: PreferenceDataset) -> None:
    """Run a queued build: write the files, store them, then record what was built. Safe to run
    again (a retry overwrites the same storage names and the same record)."""
    if dataset.status == JobStatus.CANCELLED:
        return
    dataset.mark_running()
    folder = Path(tempfile.mkdtemp(prefix="preference-dataset-"))
    stored: list[str] = []

    def progress(done, total):
        dataset.set_progress(done, total)
        if PreferenceDataset.objects.filter(pk=dataset.pk, status=JobStatus.CANCELLED).exists():
            raise DatasetCancelled

    try:
        manifest = write_dataset(dataset, folder, progress)
        manifest["built_at"] = timezone.now().isoformat()
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for relative in ["manifest.json", *manifest["files"]]:
            name = f"{dataset.storage_prefix}/{relative}"
            default_storage.delete(name)  # a retry: the same name, never name_xyz
            with open(folder / relative, "rb") as handle:
                stored.append(default_storage.save(name, File(handle)))
        counts = manifest["counts"]
        if not dataset.finish(counts=counts, pair_count=manifest["pairs"], judgment_count=manifest["judgments"],
                              content_hash=manifest["content_hash"], manifest=manifest):
            raise DatasetCancelled
    except DatasetCancelled:
        for name in stored:
            default_storage.delete(name)
    except Exception as exc:
        for name in stored:
            default_storage.delete(name)
        dataset.mark_failed(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    dataset.refresh_from_db()


def stored_files(dataset: PreferenceDataset) -> list[str]:
    """Relative names of the dataset's files, manifest first."""
    if dataset.status != JobStatus.DONE:
        return []
    return ["manifest.json", *dataset.manifest.get("files", {})]


def delete_files(dataset: PreferenceDataset) -> None:
    names = [f"{dataset.storage_prefix}/{relative}" for relative in stored_files(dataset)]

    def remove():
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(remove)


__all__ = ["FORMATS", "build", "create_dataset", "write_dataset", "stored_files", "delete_files", "storage_uri"]
