"""manage.py bias_audit VERSION [--threshold 0.1] [--json]: what a trained judge rewards beside what
people chose, per task, tag and generation setting (rewardmodel.bias_audit)."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from rewardmodel.bias_audit import as_json, as_text, version_audit
from rewardmodel.core.bias_audit import DEFAULT_THRESHOLD
from rewardmodel.models import RewardModelVersion


class Command(BaseCommand):
    help = "Bias audit of a reward-model version on its dataset's test split."

    def add_arguments(self, parser):
        parser.add_argument("version", help="the version's name or id")
        parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                            help="flag disparities larger than this (a share, default %(default)s)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, version, threshold, json, **options):
        found = RewardModelVersion.objects.filter(name=version).first()
        if found is None and version.isdigit():
            found = RewardModelVersion.objects.filter(pk=int(version)).first()
        if found is None:
            raise CommandError(f"no reward-model version named or numbered {version!r}")
        try:
            result = version_audit(found, threshold)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(as_json(result) if json else as_text(result))
