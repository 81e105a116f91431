"""manage.py collection_round [--strategy uncertainty --reward-model NAME] [--generator NAME]
[--include-base] [--tag TAG ...] [--task SLUG] [--count N] [-n 4] [-k 1] [--top-k K] [--seed S]
[--ranges JSON] [--wait | --here];  manage.py collection_round --schedule NAME [--wait | --here];
manage.py collection_round --tick: start a collection round now (rl.rounds), one with a schedule's
options, or whatever rounds the schedules have due (the beat's tick, once)."""
import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation.execution import run_batch_here
from generation.models import Generator
from inputs.models import Tag, Task
from onereward.jobs import JobStatus, follow
from rewardmodel.models import RewardModelVersion
from rl.core.strategies import STRATEGIES
from rl.rounds import (
    CollectionRound,
    CollectionSchedule,
    Stage,
    error_text,
    score_round,
    stage_line,
    start_from_schedule,
    start_round,
    tick,
)


def named(model, field: str, value: str, what: str):
    found = model.objects.filter(**{field: value}).first()
    if found is None:
        names = ", ".join(model.objects.values_list(field, flat=True)[:20]) or "none yet"
        raise CommandError(f"no {what} {value!r} ({what}s: {names})")
    return found


class Command(BaseCommand):
    help = ("Start a collection round: generate candidates with the current policy and open annotation tasks in "
            "a strategy's order (or start a schedule's round, or run the schedules' tick once).")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--schedule", help="start a round with this schedule's options")
        source.add_argument("--tick", action="store_true", help="start the rounds whose schedules are due, and exit")
        parser.add_argument("--strategy", choices=STRATEGIES, default="random")
        parser.add_argument("--reward-model", help="the reward model version that scores the sets (by name)")
        parser.add_argument("--generator", help="generator name (default: the latest policy checkpoint's)")
        parser.add_argument("--include-base", action="store_true", help="also generate with the checkpoint's base")
        parser.add_argument("--tag", action="append", dest="tags", default=[],
                            help="inputs with this tag (repeatable)")
        parser.add_argument("--task", help="inputs of this task (slug)")
        parser.add_argument("--count", type=int, help="at most this many inputs, the least annotated first")
        parser.add_argument("-n", "--candidates", type=int, default=4, help="candidates per input (default 4)")
        parser.add_argument("-k", "--judgments", type=int, default=1, help="judgments per opened task (default 1)")
        parser.add_argument("--top-k", type=int, help="open tasks for the first K sets only")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--ranges", help="randomisation ranges as a JSON object (as a batch's)")
        parser.add_argument("--name", default="")
        parser.add_argument("--user", help="username recorded as the starter")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--wait", action="store_true", help="follow the round on the workers until it ends")
        where.add_argument("--here", action="store_true",
                           help="generate and score in this process instead of on the workers")

    def handle(self, *args, **options):
        if options["tick"]:
            started = tick()
            for round_ in started:
                self.stdout.write(f"{round_} (id {round_.pk}) started for schedule {round_.schedule}")
            self.stdout.write(f"{len(started)} round(s) started")
            return
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        try:
            if options["schedule"]:
                round_ = start_from_schedule(named(CollectionSchedule, "name", options["schedule"], "schedule"),
                                             user=user)
            else:
                round_ = start_round(user=user, name=options["name"], **self.round_options(options))
        except ValidationError as error:
            raise CommandError(error_text(error)) from None
        self.stdout.write(f"{round_} (id {round_.pk}) started: {round_.get_strategy_display()}; {stage_line(round_)}")
        if options["here"]:
            self.run_here(round_)
        elif options["wait"]:
            follow(round_, stage_line, self.stdout.write, interval=2)
        else:
            return
        round_.refresh_from_db()
        if round_.status != JobStatus.DONE:
            raise CommandError(f"{round_} ended {round_.get_status_display().lower()}: {round_.error_cause}")
        self.stdout.write(stage_line(round_))
        self.stdout.write(json.dumps(round_.results, indent=2))

    def round_options(self, options) -> dict:
        try:
            ranges = json.loads(options["ranges"]) if options["ranges"] else {}
        except ValueError as exc:
            raise CommandError(f"--ranges is not JSON: {exc}") from None
        return {
            "strategy": options["strategy"],
            "reward_model": named(RewardModelVersion, "name", options["reward_model"], "reward model version")
            if options["reward_model"] else None,
            "generator": named(Generator, "name", options["generator"], "generator") if options["generator"] else None,
            "include_base": options["include_base"],
            "tags": [named(Tag, "name", name, "tag") for name in options["tags"]],
            "task": named(Task, "slug", options["task"], "task") if options["task"] else None,
            "input_count": options["count"],
            "candidates_per_input": options["candidates"],
            "ranges": ranges,
            "annotation_overlap": options["judgments"],
            "top_k": options["top_k"],
            "seed": options["seed"],
        }

    def run_here(self, round_: CollectionRound) -> None:
        """The workers' part in this process: each batch generated (its end moves the round on),
        then the scoring job when the strategy needs one."""
        for batch in round_.batches.all():
            run_batch_here(batch, worker="command line")
            self.stdout.write(f"{batch}: {batch.get_status_display().lower()}, {batch.progress_done} sets")
        round_.refresh_from_db()
        if round_.stage == Stage.SCORING and not round_.is_finished:
            score_round(round_, worker="command line")
