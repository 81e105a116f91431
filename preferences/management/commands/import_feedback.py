"""manage.py import_feedback FILE [--source NAME]: production feedback events from a JSONL or CSV
file (preferences.feedback); all rows stored or none. Its progress goes to stderr, a line per tenth of
each phase."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from preferences.feedback import FeedbackRejected, import_file


class Command(BaseCommand):
    help = "Import production feedback events (accepted, published, re-edited, discarded) from JSONL or CSV."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--source", default="", help="the source of rows that name none")

    def handle(self, *args, file: Path, source: str, **options):
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        shown = {}

        def progress(phase: str, done: int, total: int) -> None:
            # A line per tenth of each phase (and its end): a large file shows it moving.
            tenth = 10 * done // total if total else 10
            if total and shown.get(phase) != tenth:
                shown[phase] = tenth
                self.stderr.write(f"{phase}: {done}/{total}")

        try:
            done = import_file(file.read_bytes(), file.name, default_source=source, on_progress=progress)
        except FeedbackRejected as rejected:
            raise CommandError("nothing was imported:\n" + "\n".join(str(p) for p in rejected.problems)) from None
        self.stdout.write(f"{done.created} event(s) imported, {done.already_stored} already stored")
