"""The default broker needs no server yet runs jobs in a separate worker process; queues are
named for the kind of work."""
import os
import subprocess
import sys

import pytest

from inputs.models import Input
from onereward.celery import app as celery_app
from tests.conftest import (
    REPO,
    box_mask,
    database_url_of_test_db,
    photo,
    png_bytes,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.inputs.test_archive_import_job import finished, zip_of

ENQUEUE = """
import django; django.setup()
from django.core.files.base import ContentFile
from inputs.models import InputImport, Task
archive = ContentFile(open({path!r}, "rb").read(), name="inputs.zip")
print(InputImport.queue(archive, task=Task.objects.get(slug="image_fill")).pk)
"""


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_filesystem_broker_hands_jobs_to_a_separate_worker(tmp_path, settings):
    env = {
        "DATABASE_URL": database_url_of_test_db(),
        "ONEREWARD_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ONEREWARD_DATA_DIR": str(tmp_path / "var"),
    }
    env_without_broker = {k: v for k, v in {**os.environ, **env}.items() if k != "CELERY_BROKER_URL"}
    archive_path = tmp_path / "inputs.zip"
    archive_path.write_bytes(
        zip_of({"a.png": png_bytes(photo(seed=7)), "a_mask.png": png_bytes(box_mask()), "a.txt": b"a kite"}).getvalue()
    )

    worker = start_worker({**env, "CELERY_BROKER_URL": ""}, tmp_path / "worker.log", queues="default")
    try:
        result = subprocess.run([sys.executable, "-c", ENQUEUE.format(path=str(archive_path))], cwd=REPO,
                                env=env_without_broker, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        job_id = int(result.stdout.strip().splitlines()[-1])
        job = wait_for(lambda: finished(job_id), what="the import job", timeout=90)
        assert job.status == "done", (job.error, worker.log()[-3000:])
        assert list(Input.objects.values_list("prompt", flat=True)) == ["a kite"]
        # The job ran in the worker process: its log names the task.
        assert "inputs.import_inputs_archive" in worker.log()
        assert (tmp_path / "var" / "broker" / "messages").is_dir()
    finally:
        stop_worker(worker)


@pytest.mark.parametrize(
    "task_name, queue",
    [("generation.generate_candidates", "gpu"), ("rewardmodel.core.train", "gpu"), ("rl.core.train", "gpu"),
     ("inputs.import_inputs_archive", "default")],
)
def test_tasks_are_routed_to_queues_by_kind_of_work(task_name, queue):
    assert celery_app.amqp.router.route({}, task_name)["queue"].name == queue
