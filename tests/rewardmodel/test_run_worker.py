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


def trainer_alive(run) -> bool:
    import subprocess

    return subprocess.run(["pgrep", "-f", str(run.output_dir / "config.json")], capture_output=True).returncode == 0


def test_a_run_whose_worker_died_is_resumed_by_a_worker_of_another_name(celery_worker_process, make_user, tmp_path):
    """The run's heartbeat stops with its worker; a worker that starts under another name hands the
    run back to the queue once the lease has passed and resumes it from its last checkpoint, and the
    job the dead worker held, delivered again, is dropped while the run is being trained."""
    from rewardmodel.execution import RewardModelTraining
    from rewardmodel.forms import start_run
    from tests.conftest import start_worker, stop_worker

    tasks = make_tasks(10, n=3, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        for candidate in task.candidate_set.candidates.all():
            default_storage.save(candidate.image.name, ContentFile(png_bytes(photo(32, 32, seed=candidate.index))))
        judge(task, alice, {"structure": (0, 2), "aesthetics": (1, 2)})
    dataset = create_dataset(name="worker-prefs", queue=False, train_fraction=0.4, validation_fraction=0.3,
                             test_fraction=0.3)
    build(dataset)
    base = str(save_tiny_qwen(tmp_path / "q"))
    run = start_run(dataset=PreferenceDataset.objects.get(pk=dataset.pk), base_model=base, learning_rate=1e-4,
                    batch_size=2, max_steps=400, save_every=5, zero_shot_eval=False, mixed_precision="no",
                    extra={"log_every": 1})
    wait_for(lambda: RewardModelRun.objects.get(pk=run.pk).step >= 8, timeout=300, interval=0.5,
             what="the run past its first checkpoints")
    celery_worker_process.kill()  # the host dies: the worker, and the trainer it started with it
    wait_for(lambda: not trainer_alive(run), timeout=30, what="the trainer to die with its worker")
    killed_at = RewardModelRun.objects.get(pk=run.pk).step
    stranger = start_worker({**celery_worker_process.env_overrides, "ONEREWARD_RUN_LEASE_SECONDS": "4"},
                            tmp_path / "stranger.log", purge=False, name="another-host@elsewhere")
    try:
        wait_for(lambda: RewardModelRun.objects.get(pk=run.pk).worker == "another-host@elsewhere", timeout=120,
                 what="another worker to take the run over")
        # A second delivery while the new worker beats: dropped, the run untouched.
        taken = RewardModelRun.objects.get(pk=run.pk)
        RewardModelTraining(taken, worker="a-third-host").execute()
        assert RewardModelRun.objects.get(pk=run.pk).worker == "another-host@elsewhere"
        run = wait_for(lambda: RewardModelRun.objects.filter(pk=run.pk, status__in=["done", "failed"]).first(),
                       timeout=400, what="the resumed run")
    finally:
        stop_worker(stranger)
        celery_worker_process.restart()
    assert run.status == "done", (run.error, stranger.log()[-3000:])
    assert run.step == 400 and killed_at < 400
    assert "resuming from" in (run.output_dir / "train.log").read_text()
    assert run.version.steps == 400
