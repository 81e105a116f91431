from datetime import datetime
from datetime import time as day_start
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generation.models import GenerationBatch
from inputs.models import Dimension, Task
from onereward.jobs import follow
from preferences.core.files import SPLITS
from preferences.export import build, create_dataset, stored_files
from preferences.models import PairingPolicy, TieRule, VoteAggregation


def _moment(text: str) -> datetime:
    """An ISO date or date-time; a date means its midnight, naive values the server's time zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not an ISO date or date-time (e.g. 2026-11-01 or 2026-11-01T12:00)") from None
    if len(text) == 10:
        value = datetime.combine(value.date(), day_start())
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        train, validation, test = (float(part) for part in text.split(","))
    except ValueError:
        raise CommandError(
            f"--split takes three fractions TRAIN,VALIDATION,TEST, e.g. 0.9,0.05,0.05; got {text!r}"
        ) from None
    return train, validation, test


def _many(model, field: str, values, what: str):
    if not values:
        return []
    found = {str(getattr(item, field)): item for item in model.objects.filter(**{f"{field}__in": values})}
    missing = [value for value in values if str(value) not in found]
    if missing:
        raise CommandError(f"no {what} {', '.join(map(str, missing))}")
    return list(found.values())


class Command(BaseCommand):
    help = ("Build a new version of a preference dataset (winner/loser pairs from judgments), in the "
            "background on a worker or here, and optionally copy its files to a folder.")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="dataset name (a slug); the next version is built")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--batch", type=int, action="append", dest="batches", help="generation batch id (repeatable)"
        )
        parser.add_argument("--task", action="append", dest="tasks", help="task slug (repeatable)")
        parser.add_argument("--dimension", action="append", dest="dimensions", help="dimension slug (repeatable)")
        parser.add_argument("--annotator", action="append", dest="annotators", help="username (repeatable)")
        parser.add_argument("--from", dest="submitted_from", type=_moment, help="judgments submitted at or after")
        parser.add_argument("--until", dest="submitted_until", type=_moment, help="judgments submitted before")
        parser.add_argument("--all-annotators", action="store_true",
                            help="keep paused annotators and those under the gold accuracy bar")
        parser.add_argument(
            "--min-gold-accuracy", type=float, help="the bar for good standing (default: QC threshold)"
        )
        parser.add_argument("--include-gold", action="store_true", help="also judgments on gold tasks")
        parser.add_argument("--include-repeats", action="store_true", help="also repeat judgments")
        parser.add_argument("--include-simulated", action="store_true",
                            help="also judgments of simulated annotators (oracles)")
        parser.add_argument("--implicit-feedback", action="store_true",
                            help="also weak pairs from production feedback events")
        parser.add_argument("--implicit-weight", type=float, default=0.5, help="a weak pair's weight (0, 1]")
        parser.add_argument("--implicit-source", action="append", dest="implicit_sources",
                            help="feedback source to include (repeatable; default every one)")
        parser.add_argument("--pairing", choices=PairingPolicy.values, default=PairingPolicy.BEST_WORST)
        parser.add_argument("--aggregation", choices=VoteAggregation.values, default=VoteAggregation.MAJORITY)
        parser.add_argument("--tie-rule", choices=TieRule.values, default=TieRule.DROP)
        parser.add_argument("--min-votes", type=int, default=1)
        parser.add_argument(
            "--split", type=_fractions, default=(0.9, 0.05, 0.05), help="TRAIN,VALIDATION,TEST fractions"
        )
        parser.add_argument("--seed", type=int, default=0, help="split seed")
        parser.add_argument("--embed-images", action="store_true", help="put image bytes in the files")
        parser.add_argument("--format", action="append", dest="formats", choices=["jsonl", "trl"],
                            help="also write this format (repeatable); Parquet is always written")
        parser.add_argument("--user", help="username recorded as the builder")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--here", action="store_true", help="build in this process instead of on a worker")
        where.add_argument("--wait", action="store_true", help="queue on a worker and follow the build")
        parser.add_argument(
            "--out", type=Path, help="copy the built files into this folder (implies --wait or --here)"
        )

    def handle(self, *args, **options):
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
        train, validation, test = options["split"]
        try:
            dataset = create_dataset(
                name=options["name"], description=options["description"], user=user,
                batches=_many(GenerationBatch, "pk", options["batches"], "generation batch"),
                tasks=_many(Task, "slug", options["tasks"], "task"),
                dimensions=_many(Dimension, "slug", options["dimensions"], "dimension"),
                annotators=_many(get_user_model(), "username", options["annotators"], "annotator"),
                submitted_from=options["submitted_from"], submitted_until=options["submitted_until"],
                good_standing_only=not options["all_annotators"], min_gold_accuracy=options["min_gold_accuracy"],
                include_gold=options["include_gold"], include_repeats=options["include_repeats"],
                include_simulated=options["include_simulated"],
                implicit_feedback=options["implicit_feedback"], implicit_weight=options["implicit_weight"],
                implicit_sources=options["implicit_sources"] or [],
                pairing=options["pairing"], aggregation=options["aggregation"], tie_rule=options["tie_rule"],
                min_votes=options["min_votes"], train_fraction=train, validation_fraction=validation,
                test_fraction=test, split_seed=options["seed"], embed_images=options["embed_images"],
                formats=options["formats"] or [], queue=not options["here"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        if options["here"]:
            self.stdout.write(f"Building {dataset} here.")
            try:
                build(dataset)
            except Exception as exc:  # the record says failed; say why and stop
                raise CommandError(f"{dataset} failed: {exc}") from None
        else:
            self.stdout.write(f"{dataset} queued (id {dataset.pk}).")
            if options["wait"] or options["out"]:
                follow(
                    dataset,
                    lambda d: f"{d.get_status_display()}: {d.progress_done}/{d.progress_total} candidate sets",
                    self.stdout.write,
                )
        dataset.refresh_from_db()
        if dataset.status != "done":
            if options["here"] or options["wait"] or options["out"]:
                raise CommandError(f"{dataset} ended {dataset.get_status_display().lower()}: {dataset.error}")
            return
        self.stdout.write(f"{dataset}: {dataset.pair_count} pairs from {dataset.judgment_count} judgments; "
                          f"content hash {dataset.content_hash}")
        for task, per_dimension in sorted(dataset.counts.items()):
            for dimension, counts in sorted(per_dimension.items()):
                self.stdout.write(
                    f"  {task} / {dimension}: " + ", ".join(f"{split} {counts.get(split, 0)}" for split in SPLITS)
                )
        if options["out"]:
            for name in stored_files(dataset):
                target = options["out"] / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with (
                    default_storage.open(f"{dataset.storage_prefix}/{name}", "rb") as source,
                    open(target, "wb") as sink,
                ):
                    for block in iter(lambda: source.read(1 << 20), b""):
                        sink.write(block)
            self.stdout.write(f"Files copied to {options['out']}")
