from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from inputs.core.images import CanvasSpec, InputProblem
from inputs.core.sources import ImportDefaults, specs_from_path
from inputs.importing import (
    NO_INPUTS,
    ImportRejected,
    find_problems,
    import_inputs,
    parse_tags,
    prompt_problem,
    zip_limits,
)


class Command(BaseCommand):
    help = (
        "Import inputs from a folder of image/mask pairs (NAME.png + NAME_mask.png, optional NAME.txt "
        "prompt and NAME.json settings), a JSONL manifest, or a zip of either. All or nothing: on any "
        "bad entry nothing is stored and every problem is listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="folder, .jsonl manifest or .zip")
        parser.add_argument("--task", help="task slug for entries that do not name one (e.g. image_fill)")
        parser.add_argument("--prompt", default="", help="prompt for entries without their own")
        parser.add_argument(
            "--tag", action="append", default=[], help="tag added to every input (repeatable, or comma-separated)"
        )
        canvas = parser.add_mutually_exclusive_group()
        canvas.add_argument("--extend-padding", metavar="L,T,R,B", help="extend: pixels added on each side")
        canvas.add_argument("--extend-size", metavar="WxH", help="extend: canvas size, source centred")
        canvas.add_argument("--extend-ratio", metavar="W:H", help="extend: smallest canvas of this aspect ratio")
        parser.add_argument("--user", help="username recorded as the importer")
        parser.add_argument(
            "--skip-existing", action="store_true", help="leave out inputs already imported instead of refusing"
        )
        parser.add_argument("--dry-run", action="store_true", help="check everything, store nothing")

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        canvas_raw = {
            key: options[f"extend_{key}"] for key in ("padding", "size", "ratio") if options.get(f"extend_{key}")
        }
        try:
            canvas = CanvasSpec.parse(canvas_raw, "--extend-*") if canvas_raw else None
        except InputProblem as problem:
            raise CommandError(problem.problem) from None
        user = None
        if options["user"]:
            try:
                user = get_user_model().objects.get(username=options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {options['user']!r}") from None
        too_long = prompt_problem(options["prompt"])
        if too_long:
            raise CommandError(f"--prompt: {too_long}")
        tags = [tag for raw in options["tag"] for tag in parse_tags(raw)]
        defaults = ImportDefaults(task=options["task"], prompt=options["prompt"], tags=tags, canvas=canvas)
        specs, problems = specs_from_path(Path(options["path"]), defaults, zip_limits())
        if not specs and not problems:
            problems = [NO_INPUTS]
        if problems or options["dry_run"]:
            problems = problems + find_problems(specs, skip_existing=options["skip_existing"])[1]
        if problems:
            self._fail(problems)
        if options["dry_run"]:
            self.stdout.write(
                self.style.SUCCESS(f"{len(specs)} input(s) checked, no problem found (dry run: nothing stored).")
            )
            return
        try:
            created = import_inputs(
                specs, user=user, on_progress=self._progress, skip_existing=options["skip_existing"]
            )
        except ImportRejected as rejected:
            self._fail(rejected.problems)
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {len(created)} input(s): #{created[0].pk}..#{created[-1].pk}"
                if created
                else "Nothing to import."
            )
        )

    def _progress(self, done, total):
        if self.verbosity >= 2:
            self.stdout.write(f"  stored {done}/{total}")

    def _fail(self, problems):
        for problem in problems:
            self.stderr.write(f"{problem.entry}: {problem.problem}")
        raise CommandError(f"{len(problems)} problem(s); nothing was imported.")
