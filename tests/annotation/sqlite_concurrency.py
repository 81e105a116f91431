"""Run as a script against a SQLite database (DATABASE_URL): several annotator threads take and
judge tasks at once; prints one JSON line with what ended up stored."""
import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "onereward.settings")
django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)

from django.contrib.auth.models import User  # noqa: E402

from annotation.models import AnnotationTask, Judgment, QualityControlSettings  # noqa: E402
from onereward.roles import assign_role  # noqa: E402
from tests.annotation.world import annotate_concurrently, make_tasks  # noqa: E402

k, task_count, annotator_count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
settings = QualityControlSettings.current()
settings.gold_rate = settings.repeat_share = 0.0
settings.save()
make_tasks(task_count, n=3, k=k)
users = []
for i in range(annotator_count):
    user = User.objects.create_user(f"annotator{i}", password="x")
    assign_role(user, "annotator")
    users.append(user)
errors, judged = annotate_concurrently(users)
print(
    json.dumps(
        {
            "errors": errors,
            "judgments": Judgment.objects.count(),
            "twice": sum(len(t) - len(set(t)) for t in judged.values()),
            "per_task": sorted(set(AnnotationTask.objects.values_list("judgments_done", flat=True))),
            "distinct_per_task": sorted(
                {t.judgments.values("annotator").distinct().count() for t in AnnotationTask.objects.all()}
            ),
        }
    )
)
