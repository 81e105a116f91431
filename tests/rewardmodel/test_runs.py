"""Reward model runs from where ML engineers work: validation, the API, the command line, the
admin pages, and sending doubtful candidate sets back to annotation."""
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotation.assignment import next_slot
from annotation.models import AnnotationTask, Slot
from preferences.export import build, create_dataset
from rewardmodel.admin import evaluation_table, loss_plot
from rewardmodel.execution import RewardModelTraining
from rewardmodel.forms import start_run
from rewardmodel.models import ReannotationRequest, RewardModelRun, RewardModelVersion
from rewardmodel.reannotation import ranked_sets, send_back
from tests.annotation.world import make_tasks
from tests.preferences.preference_world import judge

pytestmark = pytest.mark.django_db
FILL_DIMS = ("text_alignment", "consistency", "structure", "aesthetics")


@pytest.fixture
def dataset(make_user):
    tasks = make_tasks(4, n=4, k=1)
    alice = make_user("alice", "annotator")
    for task in tasks:
        judge(task, alice, {slug: (0, 1) for slug in FILL_DIMS})
    Slot.objects.filter(state="open").delete()  # every task has had its judgment
    version = create_dataset(name="prefs", queue=False)
    build(version)
    version.refresh_from_db()
    return version


def test_a_run_needs_a_built_dataset_with_pairs_and_sane_settings(dataset, make_user):
    queued = create_dataset(name="later", queue=False)
    with pytest.raises(Exception, match="not built yet"):
        start_run(dataset=queued)
    with pytest.raises(Exception, match=r"learning_rate.*must lie in \(0, 1\)"):
        start_run(dataset=dataset, learning_rate=2.0)
    with pytest.raises(Exception, match="multiple of per-device batch"):
        start_run(dataset=dataset, processes=2, per_device_batch_size=3, batch_size=16)
    run = start_run(dataset=dataset, user=make_user("eve", "ml_engineer"))
    assert run.status == "queued" and run.learning_rate == 1e-6 and run.batch_size == 16
    config = run.training_config()
    assert config["dataset_dir"].endswith(f"run-{run.pk}/dataset")
    assert config["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_api_starts_follows_and_guards_runs(dataset, make_user):
    api = APIClient()
    api.force_authenticate(make_user("ann", "annotator"))
    assert api.post("/api/reward-model-runs/", {"dataset": dataset.pk}, format="json").status_code == 403
    api.force_authenticate(make_user("admin1", "admin"))
    assert api.get("/api/reward-model-runs/").status_code == 200  # admins view
    assert api.post("/api/reward-model-runs/", {"dataset": dataset.pk}, format="json").status_code == 403
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.post("/api/reward-model-runs/", {"dataset": dataset.pk, "adapter_rank": 8, "max_steps": 5},
                        format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["adapter_rank"] == 8 and body["version"] is None
    bad = api.post("/api/reward-model-runs/", {"dataset": dataset.pk, "learning_rate": 5}, format="json")
    assert bad.status_code == 400 and "learning_rate" in bad.json()
    run = RewardModelRun.objects.get(pk=body["id"])
    assert api.post(f"/api/reward-model-runs/{run.pk}/cancel/").json()["status"] == "cancelled"
    assert api.post(f"/api/reward-model-runs/{run.pk}/resume/").json()["status"] == "queued"


def test_command_refuses_unknown_datasets_and_bad_json(dataset):
    with pytest.raises(CommandError, match="no preference dataset 'nothing'"):
        call_command("train_reward_model", "--dataset", "nothing")
    with pytest.raises(CommandError, match="JSON object"):
        call_command("train_reward_model", "--dataset", "prefs", "--extra", "{oops")
    out = io.StringIO()
    call_command("train_reward_model", "--dataset", "prefs:v1", "--max-steps", "3", stdout=out)
    assert "on prefs v1" in out.getvalue() and RewardModelRun.objects.get().max_steps == 3


def registered_version(dataset, scores: list[tuple[int, float, float]]) -> RewardModelVersion:
    """A finished run's files as the trainer leaves them: here only the test scores matter."""
    run = RewardModelRun.objects.create(dataset=dataset, status="done")
    run.output_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"candidate_set_id": [s[0] for s in scores], "p_forward": [s[1] for s in scores],
                             "p_reversed": [s[2] for s in scores]}), run.output_dir / "test_scores.parquet")
    return RewardModelVersion.objects.create(run=run, name=f"judge-{run.pk}", model_path=str(run.output_dir / "model"),
                                             base_model="tiny", template_version=1)


def test_send_back_picks_the_sets_the_judge_doubts(dataset, make_user):
    sets = list(AnnotationTask.objects.order_by("pk").values_list("candidate_set_id", flat=True))
    version = registered_version(dataset, [
        (sets[0], 0.9, 0.1), (sets[0], 0.8, 0.2),   # agrees: 0.9, 0.8 -> 0.85
        (sets[1], 0.2, 0.7),                        # disagrees: 0.25
        (sets[2], 0.55, 0.5),                       # unsure: agreement 0.525, certainty 0.05
        (sets[3], 0.1, 0.95),                       # disagrees strongly: 0.075, certainty 0.85
    ])
    assert [s for s, _ in ranked_sets(version, "disagreement")] == [sets[3], sets[1], sets[2], sets[0]]
    assert [s for s, _ in ranked_sets(version, "uncertainty")][0] == sets[2]
    engineer = make_user("eve", "ml_engineer")
    open_before = {t.candidate_set_id: t.slots.filter(state="open").count() for t in AnnotationTask.objects.all()}
    request = send_back(version, reason="disagreement", count=2, extra_judgments=2, user=engineer)
    tasks = {task.candidate_set_id: task for task in request.tasks.all()}
    assert set(tasks) == {sets[3], sets[1]}
    assert all(task.required_judgments == 3 for task in tasks.values())
    assert all(task.slots.filter(state="open").count() == open_before[set_id] + 2 for set_id, task in tasks.items())
    # They are in the pool again, for someone who has not judged them.
    bob = make_user("bob", "annotator")
    handed = []
    while (slot := next_slot(bob)) is not None:
        handed.append(slot.task.candidate_set_id)
        slot.state = "done"
        slot.save()
    assert sorted(handed) == sorted(tasks)
    with pytest.raises(Exception, match="choose one of"):
        send_back(version, reason="whim", count=1)


def test_api_and_admin_send_back(dataset, make_user, client):
    sets = list(AnnotationTask.objects.order_by("pk").values_list("candidate_set_id", flat=True))
    version = registered_version(dataset, [(s, 0.5, 0.5) for s in sets])
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.post(f"/api/reward-models/{version.pk}/send-back/", {"reason": "uncertainty", "count": 1},
                        format="json")
    assert response.status_code == 201 and len(response.json()["tasks"]) == 1
    assert api.get(f"/api/reward-models/{version.pk}/").json()["dataset"] == dataset.pk
    client.force_login(make_user("eve2", "ml_engineer"))
    page = client.get(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/change/").content.decode()
    assert "Send candidate sets back to annotation" in page and "more judgment(s) each" in page
    response = client.post(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/send-back/",
                           {"reason": "disagreement", "count": 2, "extra_judgments": 1})
    assert response.status_code == 302 and ReannotationRequest.objects.count() == 2


def test_admin_start_form_and_progress(dataset, make_user, client):
    client.force_login(make_user("eve", "ml_engineer"))
    assert "Train a reward model" in client.get("/admin/rewardmodel/rewardmodelrun/add/").content.decode()
    response = client.post("/admin/rewardmodel/rewardmodelrun/add/", {
        "dataset": dataset.pk, "base_model": "tiny-dir", "learning_rate": 1e-6, "batch_size": 16, "epochs": 1,
        "warmup_steps": 0, "mixed_precision": "auto", "seed": 0, "save_every": 200, "processes": 1,
        "accelerate_config": "", "zero_shot_eval": "on", "extra": "{}"})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = RewardModelRun.objects.get()
    RewardModelRun.objects.filter(pk=run.pk).update(step=40, total_steps=100, loss=0.61, eta_seconds=75,
                                                    loss_history=[[10, 0.69], [20, 0.66], [40, 0.61]],
                                                    status="running")
    poll = client.get(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/progress/", HTTP_HX_REQUEST="true")
    progress = poll.content.decode()
    assert "step 40 of 100" in progress and "loss 0.6100" in progress and "ETA 0:01:15" in progress
    assert "<polyline" in progress and "hx-get" in progress and "HX-Refresh" not in poll
    RewardModelRun.objects.filter(pk=run.pk).update(status="failed", error="the trainer exited with code 1")
    poll = client.get(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/progress/", HTTP_HX_REQUEST="true")
    assert poll["HX-Refresh"] == "true"  # the whole record reloads once, showing the end everywhere


def test_evaluation_table_and_plot_render():
    evaluation = {"rows": [{"task": "image_fill", "dimension": "structure", "pairs": 12, "forward_accuracy": 75.0,
                            "reversed_accuracy": 50.0, "accuracy": 62.5, "paper_accuracy": 74.63,
                            "human_ceiling": 90.0, "vote_agreement": None}]}
    zero = {"rows": [{"task": "image_fill", "dimension": "structure", "accuracy": 50.0}]}
    html = evaluation_table(evaluation, zero)
    assert ("<td>75.0</td><td>50.0</td><td><strong>62.5</strong></td><td>50.0</td><td>74.6</td><td>90.0</td>"
            "<td>–</td>") in html
    assert loss_plot([[0, 1.0]]) == "" and "<polyline" in loss_plot([[0, 1.0], [5, 0.5]])
    # A version trained on a dataset without test pairs says it was not evaluated (no 0-pair table).
    reason = "not evaluated: the dataset version has no test pairs; build a version whose test split has inputs"
    assert reason in evaluation_table({"split": "test", "pairs": 0, "rows": [], "not_evaluated": reason})


def test_extra_options_are_checked_by_the_trainers_config(dataset, make_user, client):
    with pytest.raises(ValidationError) as refused:
        start_run(dataset=dataset, extra={"learning_rate": 3, "log_every": 0})
    assert refused.value.message_dict == {"extra": [
        'learning_rate is set by its own field, "learning rate"; it cannot be an extra option',
        "log_every: must be at least 1, got 0"]}
    with pytest.raises(ValidationError, match="unknown training option"):
        start_run(dataset=dataset, extra={"warmup": 3})
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    bad = api.post("/api/reward-model-runs/", {"dataset": dataset.pk, "extra": {"adapter_rank": 0}}, format="json")
    assert bad.status_code == 400 and bad.json()["extra"] == [
        'adapter_rank is set by its own field, "adapter rank"; it cannot be an extra option']
    client.force_login(make_user("eve2", "ml_engineer"))
    page = client.post("/admin/rewardmodel/rewardmodelrun/add/", {
        "dataset": dataset.pk, "base_model": "tiny-dir", "learning_rate": 1e-6, "batch_size": 16, "epochs": 1,
        "warmup_steps": 0, "mixed_precision": "auto", "seed": 0, "save_every": 200, "processes": 1,
        "accelerate_config": "", "extra": '{"max_grad_norm": -1}'})
    assert page.status_code == 200 and "max_grad_norm: must be positive" in page.content.decode()
    assert not RewardModelRun.objects.exists()


def test_a_cancel_is_never_overwritten_and_only_a_stopped_run_resumes(dataset, make_user, client):
    run = start_run(dataset=dataset)
    assert not run.resume()  # queued: nothing to resume
    run.mark_running()
    assert run.cancel()
    # The trainer ended just as the run was cancelled: neither its result nor its failure is recorded.
    RewardModelTraining(run).finish({"steps": 3, "template_version": 1})
    assert run.status == "cancelled" and not RewardModelVersion.objects.exists()
    assert not run.fail("the trainer exited with code -15") and run.status == "cancelled"
    client.force_login(make_user("eve", "ml_engineer"))
    page = client.get(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/change/").content.decode()
    assert f"/admin/rewardmodel/rewardmodelrun/{run.pk}/resume/" in page and "Cancelled" in page
    response = client.post(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/resume/")
    assert response.status_code == 302 and RewardModelRun.objects.get(pk=run.pk).status == "queued"
    run.refresh_from_db()
    run.mark_running()
    RewardModelTraining(run).finish({"steps": 3, "template_version": 1})
    assert run.status == "done" and run.version.steps == 3


def test_a_failed_run_shows_its_cause_first_and_offers_resume_only_with_a_checkpoint(dataset, make_user, client,
                                                                                     tmp_path):
    """The trainer runs for real in a child process and cannot load its base model: the run's page
    leads with the one sentence that says what to change, the log below, and since no checkpoint
    was saved it offers to run again from the start, not to resume."""
    missing = tmp_path / "no-such-model"
    run = start_run(dataset=dataset, base_model=str(missing), max_steps=2, zero_shot_eval=False)
    RewardModelTraining(run, worker="here").execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error_cause == (f"the judge model '{missing}' could not be loaded: there is no such directory; "
                               "give a local directory or use the demo judge"), run.error
    assert "Traceback" in run.error_details and "ModelLoadError" in run.error_details
    client.force_login(make_user("eve", "ml_engineer"))
    page = client.get(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/change/").content.decode()
    cause, log = page.find("Why it stopped:"), page.find("The end of the trainer&#x27;s log")
    assert 0 < cause < log, page[:2000]
    assert "Run again from the start (no checkpoint was saved)" in page and "Resume from the checkpoint" not in page

    # With a checkpoint in its directory, the same run offers to resume from its step.
    (run.output_dir / "checkpoints" / "step-4").mkdir(parents=True)
    (run.output_dir / "checkpoints" / "step-4" / "trainer_state.json").write_text('{"step": 4}')
    (run.output_dir / "checkpoints" / "latest").write_text("step-4")
    progress = client.get(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/progress/").content.decode()
    assert "Resume from the checkpoint at step 4" in progress and "Run again" not in progress
    response = client.post(f"/admin/rewardmodel/rewardmodelrun/{run.pk}/resume/", follow=True)
    assert "it continues from its checkpoint at step 4" in response.content.decode()
