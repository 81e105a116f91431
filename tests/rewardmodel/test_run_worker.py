"""A reward model run started from the admin is trained by a real GPU-queue worker (here on the
CPU) and registers a version with its evaluation table."""
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from preferences.export import build, create_dataset
from preferences.models import PreferenceDataset
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.models import RewardModelRun
from tests.annotation.world import make_tasks
from tests.conftest import photo, png_bytes, wait_for
from tests.preferences.preference_world import judge

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_run_from_the_admin_registers_a_version(celery_worker_process, client, make_user, tmp_path, settings):
    tasks = make_tasks(10, n=3, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        for candidate in task.candidate_set.candidates.all():
            default_storage.save(candidate.image.name, ContentFile(png_bytes(photo(32, 32, seed=candidate.index))))
        judge(task, alice, {"structure": (0, 2), "aesthetics": (1, 2)})
    dataset = create_dataset(name="worker-prefs", queue=False, train_fraction=0.4, validation_fraction=0.3,
                             test_fraction=0.3)
    build(dataset)
    dataset = PreferenceDataset.objects.get(pk=dataset.pk)
    assert dataset.status == "done" and dataset.pair_count == 20
    assert all(dataset.manifest["inputs_per_split"].values())  # every split has inputs
    model_dir = save_tiny_qwen(tmp_path / "tiny-qwen")
    client.force_login(make_user("eve", "ml_engineer"))
    response = client.post("/admin/rewardmodel/rewardmodelrun/add/", {
        "name": "tiny", "dataset": dataset.pk, "base_model": str(model_dir), "learning_rate": 1e-4,
        "batch_size": 4, "epochs": 1, "max_steps": 3, "warmup_steps": 0, "mixed_precision": "no", "seed": 0,
        "save_every": 2, "processes": 1, "accelerate_config": "", "zero_shot_eval": "on",
        "eval_every": 1, "extra": '{"log_every": 1}'})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = RewardModelRun.objects.get()
    run = wait_for(lambda: RewardModelRun.objects.filter(pk=run.pk, status__in=["done", "failed"]).first(),
                   timeout=300, what="the reward model run")
    assert run.status == "done", (run.error, celery_worker_process.log()[-3000:])
    assert run.step == 3 and run.loss is not None and run.loss_history
    version = run.version
    assert version.steps == 3 and version.template_version >= 1 and str(run.output_dir) in version.model_path
    rows = {(row["task"], row["dimension"]): row for row in version.evaluation["rows"]}
    assert set(rows) >= {("image_fill", "structure"), ("image_fill", "aesthetics")}
    assert sum(rows[key]["pairs"] for key in rows if key[1] != "all" and key[0] != "all") >= 1
    assert version.zero_shot.get("rows")
    page = client.get(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/change/").content.decode()
    assert run.validation_history and [row[0] for row in run.validation_history] == [1, 2, 3]
    assert "Validation accuracy by step" in page
    assert "Forward %" in page and "<polyline" in page, page[page.find("Evaluation"):][:3000]
    assert (run.output_dir / "model").is_dir() and (run.output_dir / "test_scores.parquet").exists()
