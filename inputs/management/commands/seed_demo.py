import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from inputs.demo_inputs import demo_specs
from inputs.importing import import_inputs
from onereward.demo import seeding_demo
from onereward.roles import assign_role

DEMO_USERS = [
    ("admin", "admin"),
    ("mlengineer", "ml_engineer"),
    ("annotator1", "annotator"),
    ("annotator2", "annotator"),
]


def logins_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-logins.txt"


class Command(BaseCommand):
    help = ("Create demo users (one per role, passwords printed), demo inputs for every task and the demo models "
            "(a small FLUX Fill generator and a small judge, random weights, built once). Safe to re-run.")

    def add_arguments(self, parser):
        parser.add_argument("--reset-passwords", action="store_true", help="give existing demo users new passwords")
        parser.add_argument("--skip-models", action="store_true", help="users and inputs only; no demo models")

    def handle(self, *args, **options):
        User = get_user_model()
        lines = []
        with transaction.atomic():
            for username, role in DEMO_USERS:
                user, created = User.objects.get_or_create(username=username)
                if created or options["reset_passwords"]:
                    password = secrets.token_urlsafe(9)
                    user.set_password(password)
                    user.save()
                    lines.append(f"{username:<12} {password:<14} {role}")
                else:
                    lines.append(f"{username:<12} {'(unchanged)':<14} {role}")
                assign_role(user, role)
        created_inputs = import_inputs(demo_specs(), skip_existing=True)
        self.stdout.write(f"Demo inputs: {len(created_inputs)} new, from scikit-image's photographs (tag 'demo').")
        if not options["skip_models"]:
            # Each app adds its demo models (generation: the generators; rewardmodel: the judge).
            for _, said in seeding_demo.send(sender=self.__class__):
                for line in said or []:
                    self.stdout.write(line)
        self.stdout.write("Demo logins (username, password, role):")
        for line in lines:
            self.stdout.write("  " + line)
        if any("(unchanged)" not in line for line in lines):
            # The run script prints these again on later starts; only the owner can read them.
            path = logins_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            previous = {l.split()[0]: l for l in path.read_text().splitlines()} if path.exists() else {}
            for line in lines:
                if "(unchanged)" not in line:
                    previous[line.split()[0]] = line
            path.write_text("\n".join(previous.values()) + "\n")
            path.chmod(0o600)
            self.stdout.write(f"(also written to {path})")
