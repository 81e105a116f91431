"""manage.py judge_ablation --version NAME [--version NAME ...] [--zero-shot | --base-model DIR]
[--dataset NAME[:vN]] [--variant v1 --variant v2+no-prompt ...] [--wait | --here] [--json]:
score trained judges on their dataset's test split under query variants (rewardmodel.ablation)."""
import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from onereward.jobs import JobStatus, follow
from rewardmodel.ablation import as_text, run_ablation, start_ablation
from rewardmodel.core.ablation import NO_PROMPT, SOURCE
from rewardmodel.management.commands.train_reward_model import find_dataset
from rewardmodel.models import RewardModelVersion


def find_version(text: str) -> RewardModelVersion:
    found = RewardModelVersion.objects.filter(name=text).first()
    if found is None and text.isdigit():
        found = RewardModelVersion.objects.filter(pk=int(text)).first()
    if found is None:
        raise CommandError(f"no reward-model version named or numbered {text!r}")
    return found


class Command(BaseCommand):
    help = ("Score reward-model versions (and optionally their base model zero-shot) on their dataset's test "
            "split under query variants, beside the held-out human judgments.")

    def add_base_argument(self, parser, *args, **kwargs):
        # --version names a reward-model version here, not the program's version.
        if "--version" not in args:
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--version", action="append", dest="versions", default=[],
                            help="a reward-model version's name or id (repeatable)")
        parser.add_argument("--zero-shot", action="store_true", help="also run the versions' base model untrained")
        parser.add_argument("--base-model", default="", help="a base model to run zero-shot (a directory or hub id)")
        parser.add_argument("--dataset", help="NAME, NAME:vN or id; default: the versions' own dataset")
        parser.add_argument("--variant", action="append", dest="variants", default=[],
                            help=f"v<template>[+{NO_PROMPT}][+{SOURCE}] (repeatable; default: the method's query)")
        parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
        parser.add_argument("--name", default="")
        parser.add_argument("--user", help="username recorded as the starter")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--wait", action="store_true", help="queue on a GPU worker and follow it")
        where.add_argument("--here", action="store_true", help="score in this process instead of on a worker")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        versions = [find_version(text) for text in options["versions"]]
        dataset = find_dataset(options["dataset"]) if options["dataset"] else None
        try:
            ablation = start_ablation(user=user, versions=versions, dataset=dataset, base_model=options["base_model"],
                                      zero_shot=options["zero_shot"], variants=options["variants"],
                                      name=options["name"], batch_size=options["batch_size"],
                                      queue=not options["here"])
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        self.stdout.write(f"{ablation} (id {ablation.pk}) on {ablation.dataset}: {', '.join(ablation.variants)}")
        if options["here"]:
            run_ablation(ablation, worker="command line")
        elif options["wait"]:
            follow(ablation, lambda job: f"{job.get_status_display()}: {job.progress_done}/{job.progress_total} pairs",
                   self.stdout.write, interval=2)
        else:
            return
        ablation.refresh_from_db()
        if ablation.status != JobStatus.DONE:
            raise CommandError(f"{ablation} ended {ablation.get_status_display().lower()}: {ablation.error_cause}")
        self.stdout.write(json.dumps(ablation.results, indent=2) if options["json"] else as_text(ablation))
