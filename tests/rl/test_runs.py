"""RL runs from where ML engineers work: validation, API, command line, admin, the condition pool,
checkpoints registered as generators, and the one-click human study against the base."""
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from evaluation.models import Study
from generation.core.demo_flux import save_tiny_flux_fill
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator
from inputs.models import Tag
from rewardmodel.models import RewardModelRun, RewardModelVersion
from rl.admin import reward_curves
from rl.execution import register_checkpoint, start_human_study, write_conditions
from rl.forms import start_run
from rl.models import PolicyCheckpoint, RLRun
from tests.annotation.world import make_inputs

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory):
    return save_tiny_flux_fill(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture
def world(tiny_flux_dir):
    from preferences.models import PreferenceDataset

    generator = Generator.objects.create(name="flux base", backend="flux_fill", settings={"base": str(tiny_flux_dir)})
    dataset = PreferenceDataset.objects.create(name="d", version=1, status="done")
    run = RewardModelRun.objects.create(dataset=dataset, status="done")
    judge = RewardModelVersion.objects.create(run=run, name="judge-1", model_path="/models/judge", base_model="tiny",
                                              template_version=1)
    return generator, judge


def test_a_run_needs_a_flux_generator_and_sane_settings(world):
    generator, judge = world
    cpu = Generator.objects.create(name="cpu", backend="cpu_baseline", settings={})
    with pytest.raises(ValidationError, match="FLUX Fill"):
        start_run(base_generator=cpu, reward_model=judge)
    with pytest.raises(ValidationError, match="t1 <= t2"):
        start_run(base_generator=generator, reward_model=judge, t_start=0.9, t_end=0.5)
    with pytest.raises(ValidationError, match="non-negative"):
        start_run(base_generator=generator, reward_model=judge, task_probabilities={"image_fill": -1})
    with pytest.raises(ValidationError, match="lambda"):
        start_run(base_generator=generator, reward_model=judge, reward_cap=1.5)
    run = start_run(base_generator=generator, reward_model=judge, task_probabilities={"image_fill": 1})
    config = run.training_config()
    assert config["judge"] == "/models/judge" and config["base_generator"] == {"base": generator.settings["base"]}
    assert config["t_range"] == [0.6, 0.75] and config["algorithm"] == "dynamic" and config["lora_rank"] == 32
    assert config["task_probabilities"] == {"image_fill": 1} and "eval_inputs" not in config


def test_condition_pool_holds_the_images_and_the_taxonomy(world, tmp_path):
    inputs = make_inputs(3)
    write_conditions(tmp_path / "conditions", inputs)
    manifest = json.loads((tmp_path / "conditions/manifest.json").read_text())
    assert [entry["id"] for entry in manifest["inputs"]] == [item.pk for item in inputs]
    entry = manifest["inputs"][0]
    assert (tmp_path / "conditions" / entry["source"]).read_bytes() == inputs[0].source.open("rb").read()
    assert entry["task"] == "image_fill" and entry["prompt"] == inputs[0].prompt
    fill = manifest["taxonomy"]["tasks"]["image_fill"]
    assert fill["rl_probability"] == 0.5
    assert fill["dimensions"] == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert manifest["taxonomy"]["tasks"]["image_extend"]["dimensions_with_prompt_only"] == ["text_alignment"]
    assert manifest["taxonomy"]["dimensions"]["text_alignment"]["uses_prompt"] is True


def test_api_and_command_start_runs(world, make_user):
    generator, judge = world
    Tag.objects.create(name="rl-pool")
    api = APIClient()
    api.force_authenticate(make_user("ann", "annotator"))
    assert api.get("/api/rl-runs/").status_code == 403
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.post("/api/rl-runs/", {"base_generator": generator.pk, "reward_model": judge.pk,
                                          "algorithm": "fixed", "train_tags": ["rl-pool"], "max_steps": 10},
                        format="json")
    assert response.status_code == 202, response.content
    assert response.json()["train_tags"] == ["rl-pool"] and response.json()["checkpoint"] is None
    bad = api.post("/api/rl-runs/", {"base_generator": generator.pk, "reward_model": judge.pk, "ema_decay": 1.5},
                   format="json")
    assert bad.status_code == 400 and "ema_decay" in bad.json()
    run_id = response.json()["id"]
    assert api.post(f"/api/rl-runs/{run_id}/cancel/").json()["status"] == "cancelled"
    assert api.post(f"/api/rl-runs/{run_id}/resume/").json()["status"] == "queued"
    with pytest.raises(CommandError, match="no reward model version 'nope'"):
        call_command("train_policy", "--generator", "flux base", "--reward-model", "nope")
    with pytest.raises(CommandError, match="t-range"):
        call_command("train_policy", "--generator", "flux base", "--reward-model", "judge-1", "--t-range", "x")
    out = io.StringIO()
    call_command("train_policy", "--generator", "flux base", "--reward-model", "judge-1", "--tag", "rl-pool",
                 "--lora-rank", "0", stdout=out)
    assert RLRun.objects.latest("pk").lora_rank is None and "output in" in out.getvalue()


def test_a_finished_run_registers_a_generator_once(world):
    generator, judge = world
    run = RLRun.objects.create(base_generator=generator, reward_model=judge, status="running", step=12)
    result = {"steps": 12, "final_reward": 0.71, "generator_settings": {**generator.settings, "loras": []},
              "evaluation": {"rows": [{"task": "image_fill", "dimension": "structure", "comparisons": 4,
                                       "win_rate_forward": 1.0, "win_rate_reversed": 0.5, "win_rate": 0.75}]}}
    checkpoint = register_checkpoint(run, result)
    assert checkpoint.generator.backend == "flux_fill" and checkpoint.generator.active
    assert checkpoint.generator.name == f"flux base + OneReward run {run.pk}" and checkpoint.final_reward == 0.71
    assert register_checkpoint(run, result) == checkpoint and Generator.objects.count() == 2
    from rl.admin import win_rate_table

    table = win_rate_table(checkpoint.evaluation)
    assert "<td>4</td><td>100.0</td><td>50.0</td><td><strong>75.0</strong></td>" in table
    with pytest.raises(ValidationError):
        register_checkpoint(RLRun.objects.create(base_generator=generator, reward_model=judge),
                            {"generator_settings": {"base": "/no/such/model"}})


def finish_batch(batch: GenerationBatch) -> None:
    """What a GPU worker leaves for an evaluation batch: one candidate per set, then the batch done."""
    GenerationBatch.objects.filter(pk=batch.pk).update(status="running")
    for candidate_set in batch.candidate_sets.all():
        Candidate.objects.create(candidate_set=candidate_set, index=0, image=f"c/{candidate_set.pk}.png",
                                 thumbnail=f"c/{candidate_set.pk}.jpg", settings={"seed": 0}, seconds=0.1)
        CandidateSet.objects.filter(pk=candidate_set.pk).update(status="done")
    batch.refresh_from_db()
    batch.refresh_progress()


def test_one_click_human_study_against_the_base(world, make_user, client):
    generator, judge = world
    held_out = make_inputs(3)
    tag = Tag.objects.create(name="held-out")
    for item in held_out:
        item.tags.add(tag)
    run = RLRun.objects.create(base_generator=generator, reward_model=judge, status="done")
    checkpoint = register_checkpoint(run, {"steps": 5, "generator_settings": generator.settings})
    client.force_login(make_user("boss", "admin"))
    page = client.get(f"/admin/rl/policycheckpoint/{checkpoint.pk}/change/").content.decode()
    assert "Start the human study" in page
    response = client.post(f"/admin/rl/policycheckpoint/{checkpoint.pk}/human-study/",
                           {"tags": [tag.pk], "judgments_per_item": 2})
    assert response.status_code == 302
    batches = list(checkpoint.study_batches.order_by("pk"))
    assert [b.generator for b in batches] == [checkpoint.generator, generator]
    assert all(not b.for_annotation and b.candidates_per_input == 1 and b.candidate_sets.count() == 3 for b in batches)
    with pytest.raises(ValidationError, match="already started"):
        start_human_study(checkpoint, inputs=held_out)
    finish_batch(batches[0])
    assert PolicyCheckpoint.objects.get(pk=checkpoint.pk).study is None  # waits for the base's batch
    finish_batch(batches[1])
    study = PolicyCheckpoint.objects.get(pk=checkpoint.pk).study
    assert study is not None and study.judgments_per_item == 2 and study.items.count() == 3
    assert sorted(study.arms.values_list("label", flat=True)) == ["base", "policy"]
    assert Study.objects.count() == 1
    page = client.get(f"/admin/rl/policycheckpoint/{checkpoint.pk}/change/").content.decode()
    assert "report" in page and "Start the human study" not in page


def test_admin_run_page_shows_progress_and_reward_curves(world, make_user, client):
    generator, judge = world
    client.force_login(make_user("eve", "ml_engineer"))
    assert "Start an RL run" in client.get("/admin/rl/rlrun/add/").content.decode()
    run = RLRun.objects.create(base_generator=generator, reward_model=judge, status="running", step=20,
                               total_steps=100, loss=0.2, reward_mean=0.61,
                               reward_history=[
                                   [10, {"image_fill/structure": 0.5, "object_removal/removal_quality": 0.52}],
                                   [20, {"image_fill/structure": 0.6, "object_removal/removal_quality": 0.63}]])
    progress = client.get(f"/admin/rl/rlrun/{run.pk}/progress/").content.decode()
    assert "step 20 of 100" in progress and "mean reward 0.610" in progress
    assert progress.count("<polyline") == 2 and "image_fill/structure" in progress
    assert reward_curves([]) == ""


def test_the_trainers_config_refuses_bad_values_where_they_are_typed(world, make_user, client):
    """The rules are OneRewardConfig's own; a value set through the extra options is checked too,
    and each error names the field at fault. An extra option may not set what a field sets."""
    generator, judge = world
    with pytest.raises(ValidationError) as refused:
        start_run(base_generator=generator, reward_model=judge, ema_decay=1.0)
    assert list(refused.value.message_dict) == ["ema_decay"]
    with pytest.raises(ValidationError) as refused:
        start_run(base_generator=generator, reward_model=judge, extra={"reward_cap": 1.5, "rollout": {"steps": 0}})
    assert refused.value.message_dict["extra"] == [
        'reward_cap is set by its own field, "reward cap"; it cannot be an extra option',
        "rollout.steps: a positive integer, got 0"]
    with pytest.raises(ValidationError) as refused:
        start_run(base_generator=generator, reward_model=judge, extra={"output_dir": "/elsewhere", "judge": "x"})
    assert refused.value.message_dict["extra"] == [
        'judge is set by its own field, "reward model"; it cannot be an extra option',
        "output_dir is set by the platform; it cannot be an extra option"]
    with pytest.raises(ValidationError, match="unknown RL option"):
        start_run(base_generator=generator, reward_model=judge, extra={"reward_cup": 0.5})
    assert not RLRun.objects.exists()

    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    bad = api.post("/api/rl-runs/", {"base_generator": generator.pk, "reward_model": judge.pk,
                                     "extra": {"reward_cap": 2}}, format="json")
    assert bad.status_code == 400 and "reward_cap" in bad.json()["extra"][0], bad.content

    client.force_login(make_user("eve2", "ml_engineer"))
    fields = {"base_generator": generator.pk, "reward_model": judge.pk, "algorithm": "dynamic",
              "task_probabilities": "{}", "reward_cap": 0.9, "t_start": 0.6, "t_end": 0.75, "ema_decay": 0.99,
              "learning_rate": 1e-5, "batch_size": 8, "max_steps": 10, "lora_rank": 4, "seed": 0, "save_every": 5,
              "processes": 1, "accelerate_config": ""}
    page = client.post("/admin/rl/rlrun/add/", {**fields, "extra": '{"mixed_precision": "fp8"}'})
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["extra"][0].startswith("mixed_precision: one of "), page.context[
        "adminform"].form.errors
    page = client.post("/admin/rl/rlrun/add/", {**fields, "t_start": 0.8, "t_end": 0.7, "extra": "{}"})
    assert list(page.context["adminform"].form.errors) == ["t_end"]
    assert not RLRun.objects.exists()
    assert client.post("/admin/rl/rlrun/add/", {**fields, "extra": "{}"}).status_code == 302
    assert RLRun.objects.get().created_by.username == "eve2"
