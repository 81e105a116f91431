from django.core.management.base import BaseCommand, CommandError

from annotation.core.oracles import BUILT_IN, OracleError
from annotation.simulation import simulate, simulated_annotators
from evaluation.models import Study
from evaluation.simulation import simulate_studies
from generation.models import GenerationBatch


class Command(BaseCommand):
    help = ("Judge open annotation tasks (or, with --studies, human-study items) with simulated annotators: an oracle "
            "computed from the pixels picks each dimension's best and worst, through the same hand-out, validation "
            "and QC as the annotation and study pages.")

    def add_arguments(self, parser):
        parser.add_argument("--oracle", required=True,
                            help=f"{', '.join(sorted(BUILT_IN))}, or a plug-in as package.module:ClassName")
        parser.add_argument("--annotators", type=int, default=3, help="how many simulated annotators (default 3)")
        parser.add_argument("--noise", type=float, default=0.0, help="share of random answers, in [0, 1]")
        parser.add_argument("--batch", type=int, help="only this generation batch's tasks")
        parser.add_argument("--max-tasks", type=int, help="stop after this many judgments")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--studies", action="store_true", help="judge human-study items instead of tasks")
        parser.add_argument("--study", type=int, help="with --studies: only this study")

    def handle(self, *args, **options):
        batch = None
        if options["batch"] is not None:
            batch = GenerationBatch.objects.filter(pk=options["batch"]).first()
            if batch is None:
                raise CommandError(f"no generation batch with id {options['batch']}")
        try:
            users = simulated_annotators(options["oracle"], options["annotators"], options["noise"], options["seed"])
        except (OracleError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if options["studies"]:
            study = None
            if options["study"] is not None:
                study = Study.objects.filter(pk=options["study"]).first()
                if study is None:
                    raise CommandError(f"no study with id {options['study']}")
            report = simulate_studies(users, study=study, max_items=options["max_tasks"])
            what = "study judgments"
        else:
            report = simulate(users, batch=batch, max_tasks=options["max_tasks"])
            what = "judgments"
        self.stdout.write(f"{report.judged} {what} by {len(users)} simulated annotators "
                          f"(oracle {options['oracle']}, noise {options['noise']:g}); {report.skipped} tasks of other "
                          f"batches skipped; {len(report.refused)} refused")
        for username, count in sorted(report.per_annotator.items()):
            self.stdout.write(f"  {username}: {count}")
        for refusal in report.refused[:10]:
            self.stdout.write(f"  refused: {refusal}")
