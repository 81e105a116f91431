import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation.core.sampling import Ranges
from generation.models import GenerationBatch, Generator
from generation.selection import select_inputs


def _range(text: str, kind):
    """"28-50" or "28" -> [28, 50] / [28, 28] (negative numbers are not ranges here)."""
    low, _, high = text.partition("-")
    try:
        return [kind(low), kind(high or low)]
    except ValueError:
        raise CommandError(f"{text!r} is not a number or a LOW-HIGH range") from None


class Command(BaseCommand):
    help = "Launch a generation batch: N randomised candidates per chosen input, made by GPU workers."

    def add_arguments(self, parser):
        parser.add_argument("--generator", required=True, help="generator name")
        parser.add_argument("--task", help="inputs of this task")
        parser.add_argument("--tag", help="inputs with this tag")
        parser.add_argument("--inputs", help="input ids, comma-separated")
        parser.add_argument("-n", "--candidates", type=int, default=4, help="candidates per input (default 4)")
        parser.add_argument("--steps", help="LOW-HIGH, e.g. 28-50")
        parser.add_argument("--guidance", help="embedded guidance LOW-HIGH")
        parser.add_argument("--true-cfg", help="true CFG LOW-HIGH (1 = off)")
        parser.add_argument("--strength", help="initial noise strength LOW-HIGH in (0, 1]")
        parser.add_argument("--negative-prompt", action="append", dest="negative_prompts",
                            help='a negative prompt of the pool (repeatable; "" = none)')
        parser.add_argument("--vary", choices=["candidate", "input"], help="draw settings per candidate or per input")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "-k", "--judgments", type=int, default=1, help="judgments per candidate set (annotation overlap)"
        )
        parser.add_argument("--evaluation", action="store_true",
                            help="a batch for a human evaluation study: no annotation tasks, -n 1 allowed")
        parser.add_argument("--name", default="")
        parser.add_argument("--user", help="username recorded as the launcher")
        parser.add_argument("--wait", action="store_true", help="follow the batch until it finishes")

    def handle(self, *args, **options):
        try:
            generator = Generator.objects.get(name=options["generator"])
        except Generator.DoesNotExist:
            names = ", ".join(Generator.objects.values_list("name", flat=True)) or "none yet (add one in the admin)"
            raise CommandError(f"no generator named {options['generator']!r} (generators: {names})") from None
        ranges = {}
        for key, kind in (("steps", int), ("guidance", float), ("true_cfg", float), ("strength", float)):
            if options[key]:
                ranges[key] = _range(options[key], kind)
        if options["negative_prompts"] is not None:
            ranges["negative_prompts"] = options["negative_prompts"]
        if options["vary"]:
            ranges["vary"] = options["vary"]
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        try:
            ids = [int(i) for i in options["inputs"].split(",")] if options["inputs"] else None
        except ValueError:
            raise CommandError("--inputs takes ids separated by commas, e.g. 3,7,12") from None
        try:
            inputs = select_inputs(task=options["task"], tag=options["tag"], ids=ids)
            batch = GenerationBatch.launch(
                generator=generator,
                inputs=inputs,
                candidates_per_input=options["candidates"],
                ranges=ranges,
                seed=options["seed"],
                name=options["name"],
                user=user,
                annotation_overlap=options["judgments"],
                for_annotation=not options["evaluation"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        purpose = "" if batch.for_annotation else " for evaluation (no annotation tasks)"
        self.stdout.write(
            f"Batch #{batch.pk} queued{purpose}: {batch.progress_total} inputs x {batch.candidates_per_input} "
            f"candidates with {generator.name} (ranges {Ranges.parse(batch.ranges).as_dict()})."
        )
        if options["wait"]:
            self._follow(batch)

    def _follow(self, batch):
        last = None
        while True:
            batch.refresh_from_db()
            line = (
                f"{batch.get_status_display()}: {batch.progress_done}/{batch.progress_total} done, "
                f"{batch.progress_failed} failed"
            )
            if line != last:
                self.stdout.write(line)
                last = line
            if batch.is_finished:
                break
            time.sleep(1)
        if batch.progress_failed:
            for candidate_set in batch.candidate_sets.filter(status="failed"):
                self.stderr.write(f"input #{candidate_set.input_id}: {candidate_set.error}")
        if batch.status != "done" or batch.progress_failed:
            raise CommandError(f"batch #{batch.pk} ended {batch.get_status_display().lower()} with "
                               f"{batch.progress_failed} failed input(s)")
