"""Judge ablations (rewardmodel/core/ablation.py) from where ML engineers work: the one rule set for
starting one (admin, API and `manage.py judge_ablation`), the job a GPU worker runs, and the tables
its admin page and the command show.

The test split is the versions' own: the copy of their dataset in their run's directory, which is
what their evaluation read. A base model alone (zero-shot) is scored on a dataset version copied from
storage into the ablation's directory. Who voted against a row's winner is not in the exported rows
(they list who backed it), so it is read from the annotation judgments the dataset was built from:
its own filters, judgments submitted before its build started.
"""
import traceback
from collections import defaultdict
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from onereward.jobs import JobStatus
from preferences.export import eligible_picks, excluded_annotators
from preferences.models import PreferenceDataset

from .core.ablation import (
    Column,
    VariantError,
    parse_variants,
    read_rows,
    read_scores,
    report,
    score_variant,
    write_scores,
)
from .execution import copy_dataset_files
from .models import JudgeAblation, RewardModelVersion

ZERO_SHOT = "base"


class AblationCancelled(Exception):
    pass


# --- the rules ----------------------------------------------------------------------------------------


def dataset_copy(version: RewardModelVersion) -> Path:
    """The copy of the version's dataset in its run's directory."""
    return version.run.output_dir / "dataset"


def copy_is_complete(version: RewardModelVersion) -> bool:
    done = dataset_copy(version) / ".complete"
    return done.is_file() and done.read_text().strip() == version.run.dataset.content_hash


def test_pair_count(dataset: PreferenceDataset) -> int:
    return sum(per_split.get("test", 0) for per_dimension in (dataset.counts or {}).values()
               for per_split in per_dimension.values())


def check_ablation(*, versions=(), dataset: PreferenceDataset | None = None, base_model: str = "",
                   zero_shot: bool = False, variants=(), batch_size: int = 16) -> dict:
    """The fields of a valid ablation: {dataset, base_model, variants (canonical names)}, or a
    ValidationError naming each field's problem. zero_shot=True runs the versions' base model
    untrained (their one base model; name it in base_model when they have several)."""
    versions = list(versions)
    base_model = (base_model or "").strip()
    errors: dict[str, list[str]] = defaultdict(list)
    try:
        names = [variant.name for variant in parse_variants(variants)]
    except VariantError as exc:
        errors["variants"].append(str(exc))
        names = []
    if zero_shot and not base_model:
        bases = sorted({version.base_model for version in versions})
        if len(bases) == 1:
            base_model = bases[0]
        elif not bases:
            errors["base_model"].append("zero-shot needs a base model: choose versions (their base is run) or "
                                        "name one")
        else:
            errors["base_model"].append(f"the versions have different base models ({', '.join(bases)}); name the "
                                        "one to run zero-shot")
    if not versions and not base_model and not zero_shot:
        errors["versions"].append("choose at least one reward-model version, or a base model to run zero-shot")
    trained_on = {version.run.dataset_id: version.run.dataset for version in versions}
    if len(trained_on) > 1:
        errors["versions"].append(
            "the versions were trained on different dataset versions ("
            + ", ".join(f"{version}: {version.run.dataset}" for version in versions)
            + "); an ablation compares judges on one test split, so choose versions of one dataset")
    elif trained_on:
        (own,) = trained_on.values()
        if dataset is not None and dataset.pk != own.pk:
            errors["dataset"].append(f"the versions were trained on {own}, not {dataset}: an ablation reads the test "
                                     "split of the versions' own dataset (leave the dataset empty)")
        dataset = own
    for version in versions:
        if not copy_is_complete(version):
            errors["versions"].append(
                f"{version} has no complete copy of its dataset on this host ({dataset_copy(version)}): its run "
                "never copied it, or its directory was moved or removed")
    if dataset is None and not errors["versions"]:
        errors["dataset"].append("choose the dataset version whose test split the base model is scored on")
    elif dataset is not None and dataset.status != JobStatus.DONE:
        errors["dataset"].append(f"dataset {dataset} is not built ({dataset.get_status_display().lower()})")
    elif dataset is not None and not test_pair_count(dataset):
        errors["dataset"].append(f"dataset {dataset} has no test pairs: there is nothing held out to compare with")
    if batch_size is None or batch_size < 1:
        errors["batch_size"].append("at least one pair per forward pass")
    if any(errors.values()):
        raise ValidationError({name: found for name, found in errors.items() if found})
    return {"dataset": dataset, "base_model": base_model, "variants": names}


def start_ablation(*, user=None, versions=(), dataset=None, base_model: str = "", zero_shot: bool = False,
                   variants=(), name: str = "", batch_size: int = 16, queue: bool = True) -> JudgeAblation:
    """Validate, save and (unless `queue` is false) queue an ablation on the GPU workers; raises
    ValidationError naming what is wrong."""
    versions = list(versions)
    checked = check_ablation(versions=versions, dataset=dataset, base_model=base_model, zero_shot=zero_shot,
                             variants=variants, batch_size=batch_size)
    ablation = JudgeAblation(name=name, created_by=user, batch_size=batch_size, **checked)
    ablation.full_clean(exclude=["created_by"])
    launch(ablation, versions, queue=queue)
    return ablation


def launch(ablation: JudgeAblation, versions, queue: bool = True) -> None:
    with transaction.atomic():
        ablation.save()
        ablation.versions.set(versions)
        if queue:
            ablation.enqueue()


# --- the job -------------------------------------------------------------------------------------------


def judges_of(ablation: JudgeAblation) -> list[dict]:
    """(key, label, where the weights are, the template version it was trained on) per judge."""
    judges = [{"key": f"version-{version.pk}", "label": version.name, "path": version.model_path,
               "trained": version.template_version}
              for version in ablation.versions.select_related("run").order_by("pk")]
    if ablation.base_model:
        judges.append({"key": ZERO_SHOT, "label": f"zero-shot {ablation.base_model}", "path": ablation.base_model,
                       "trained": None})
    return judges


def columns_of(ablation: JudgeAblation) -> list[Column]:
    variants = parse_variants(ablation.variants)
    return [Column(key=f"{judge['key']}/{variant.name}", judge=judge["label"], variant=variant.name,
                   template_version=variant.template, trained_template_version=judge["trained"])
            for judge in judges_of(ablation) for variant in variants]


def data_dir(ablation: JudgeAblation) -> Path:
    version = ablation.versions.select_related("run").order_by("pk").first()
    if version is not None:
        if not copy_is_complete(version):
            raise FileNotFoundError(f"{version} has no complete copy of its dataset at {dataset_copy(version)}")
        return dataset_copy(version)
    return copy_dataset_files(ablation.dataset, ablation.output_dir / "dataset")


def annotation_picks(dataset: PreferenceDataset, rows: list[dict]) -> dict:
    """{(candidate set, dimension slug): [(annotator, best index, worst index)]}: the picks behind the
    rows, from the judgments the dataset's options select, submitted before its build started."""
    picks = eligible_picks(dataset, excluded_annotators(dataset))
    built = dataset.started_at or dataset.finished_at
    if built is not None:
        picks = picks.filter(judgment__submitted_at__lte=built)
    picks = picks.filter(
        discarded=False, judgment__task__candidate_set_id__in={row["candidate_set_id"] for row in rows},
        dimension__slug__in={row["dimension"] for row in rows})
    found: dict = defaultdict(list)
    for set_id, dimension, annotator, best, worst in picks.values_list(
            "judgment__task__candidate_set_id", "dimension__slug", "judgment__annotator_id", "best__index",
            "worst__index").order_by("judgment_id").iterator(chunk_size=5000):
        found[(set_id, dimension)].append((annotator, best, worst))
    return found


def claim(ablation: JudgeAblation, worker: str) -> bool:
    """Take a queued ablation (or one whose worker died while running it: the job is delivered again)."""
    taken = JudgeAblation.objects.filter(pk=ablation.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.RUNNING, worker=worker)
    ablation.refresh_from_db()
    return bool(taken)


def run_ablation(ablation: JudgeAblation, worker: str = "") -> None:
    """Score every (judge, variant) column, then the report; the row tells what happened. Columns
    already scored (their file in the ablation's directory) are not scored again on a retry."""
    if not claim(ablation, worker):
        return
    try:
        results = _run(ablation)
    except AblationCancelled:
        return
    except Exception as exc:  # noqa: BLE001 - recorded on the row, cause first
        cause = f"{type(exc).__name__}: {exc}"
        JudgeAblation.objects.filter(pk=ablation.pk).exclude(status=JobStatus.CANCELLED).update(
            status=JobStatus.FAILED, error=f"{cause}\n\n{traceback.format_exc()}")
        ablation.refresh_from_db()
        return
    ablation.finish(results=results)


def _run(ablation: JudgeAblation) -> dict:
    from .core.judge import Judge

    directory = data_dir(ablation)
    rows = read_rows(directory, "test")
    if not rows:
        raise ValueError(f"the test split of {ablation.dataset} holds no pairs")
    from .core.pairs import PreferencePairs  # torch: only on the GPU worker that scores

    pairs = PreferencePairs(directory, "test")
    columns = columns_of(ablation)
    by_judge: dict[str, list[Column]] = defaultdict(list)
    for column in columns:
        by_judge[column.key.rsplit("/", 1)[0]].append(column)
    judges = {judge["key"]: judge for judge in judges_of(ablation)}
    ablation.mark_running(total=len(columns) * len(pairs))
    ablation._update(progress_done=0)
    scores, done = {}, 0

    def progress(count: int) -> None:
        ablation.set_progress(done + count)
        if JudgeAblation.objects.filter(pk=ablation.pk, status=JobStatus.CANCELLED).exists():
            raise AblationCancelled

    for key, judge_columns in by_judge.items():
        judge = None
        for column in judge_columns:
            path = ablation.output_dir / f"scores-{column.key.replace('/', '-')}.parquet"
            if not path.exists():
                if judge is None:
                    judge = Judge.from_pretrained(judges[key]["path"])
                variant = parse_variants([column.variant])[0]
                write_scores(score_variant(judge, pairs, variant, batch_size=ablation.batch_size, on_batch=progress),
                             path)
            scores[column.key] = read_scores(path)
            done += len(pairs)
            progress(0)
        del judge
        _free_accelerator()
    results = report(rows, scores, columns, annotation_picks(ablation.dataset, rows))
    names = dict(get_user_model().objects.filter(pk__in=[row["annotator"] for row in results["annotators"]])
                 .values_list("pk", "username"))
    for row in results["annotators"]:
        row["name"] = names.get(row["annotator"], f"annotator {row['annotator']}")
    results["dataset"] = {"id": ablation.dataset_id, "name": str(ablation.dataset)}
    return results


def _free_accelerator() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- showing the results ----------------------------------------------------------------------------------


def percent(rate: dict | None) -> str:
    if not rate or rate.get("rate") is None:
        return "–"
    return f"{100 * rate['rate']:.1f}"


def interval(rate: dict | None) -> str:
    if not rate or rate.get("low") is None:
        return ""
    return f"{100 * rate['low']:.1f}–{100 * rate['high']:.1f}"


def tables(results: dict) -> dict:
    """The report laid out for the admin page: `overview` (averaged accuracy, one cell per column),
    `detail` (per task x dimension, one line per column) and `annotators`."""
    columns = results.get("columns") or []

    def cell(rate):
        return {"value": percent(rate), "interval": interval(rate)}

    overview, detail = [], []
    for row in results.get("rows") or []:
        cells = [row["cells"].get(column["key"], {}) for column in columns]
        overview.append({"task": row["task"], "dimension": row["dimension"], "pairs": row["pairs"],
                         "cells": [{"key": column["key"], **cell(found.get("averaged"))}
                                   for column, found in zip(columns, cells)],
                         "ceiling": cell(row["human_ceiling"])})
        lines = []
        for column, found in zip(columns, cells):
            mean = found.get("mean")
            lines.append({"column": column, "forward": cell(found.get("forward")),
                          "reversed": cell(found.get("reversed")), "averaged": cell(found.get("averaged")),
                          "mean": "–" if mean is None else f"{100 * mean:.1f}",
                          "majority": cell(found.get("majority")),
                          "in_annotator_place": cell(found.get("in_annotator_place"))})
        detail.append({**{k: row[k] for k in ("task", "dimension", "pairs", "judged_pairs", "multi_vote_pairs",
                                               "votes")}, "ceiling": cell(row["human_ceiling"]), "lines": lines})
    annotators = [{"name": row.get("name", row["annotator"]), "annotator": row["annotator"], "pairs": row["pairs"],
                   "with_others": cell(row["with_others"]),
                   "cells": [{"key": column["key"], **cell(row["cells"].get(column["key"]))} for column in columns]}
                  for row in results.get("annotators") or []]
    return {"columns": columns, "overview": overview, "detail": detail, "annotators": annotators}


def as_text(ablation: JudgeAblation) -> str:
    """The results as plain text, for the command line."""
    results = ablation.results or {}
    lines = [f"{ablation}: {results.get('pairs', 0)} test pairs of {ablation.dataset} "
             f"({results.get('judged_pairs', 0)} judged pairs)"]
    lines += [f"warning: {warning}" for warning in results.get("warnings", [])]
    layout = tables(results)
    head = (f"  {'fwd %':>6} {'rev %':>6} {'avg %':>6} {'mean %':>6} {'major. %':>8} {'in place %':>10}  "
            "judge / variant")
    for row in layout["detail"]:
        lines += ["", f"{row['task']} / {row['dimension']}: {row['pairs']} pairs, {row['multi_vote_pairs']} with "
                      f"several votes, human ceiling {row['ceiling']['value']} % [{row['ceiling']['interval']}]", head]
        for line in row["lines"]:
            lines.append(f"  {line['forward']['value']:>6} {line['reversed']['value']:>6} "
                         f"{line['averaged']['value']:>6} {line['mean']:>6} {line['majority']['value']:>8} "
                         f"{line['in_annotator_place']['value']:>10}  {line['column']['judge']} / "
                         f"{line['column']['variant']}")
    if layout["annotators"]:
        lines += ["", "agreement with each annotator (%, averaged orders)"]
        lines.append("  with the others (leave-one-out): " + ", ".join(
            f"{row['name']} {row['with_others']['value']}" for row in layout["annotators"]))
        for index, column in enumerate(layout["columns"]):
            lines.append(f"  {column['judge']} / {column['variant']}: " + ", ".join(
                f"{row['name']} {row['cells'][index]['value']}" for row in layout["annotators"]))
    return "\n".join(lines)
