"""An RL run started from the admin is trained by a real GPU-queue worker (here on the CPU); its
checkpoint is registered as a generator, and a generation batch with that generator makes candidates."""
import json

import pytest

from generation.core.demo_flux import save_tiny_flux_fill
from generation.models import Candidate, GenerationBatch, Generator
from inputs.models import Tag
from preferences.models import PreferenceDataset
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.models import RewardModelRun, RewardModelVersion
from rl.models import RLRun
from tests.annotation.world import make_inputs
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_rl_run_from_the_admin_registers_a_generator_that_generates(celery_worker_process, client, make_user,
                                                                        tmp_path):
    base = Generator.objects.create(name="tiny flux", backend="flux_fill",
                                    settings={"base": str(save_tiny_flux_fill(tmp_path / "flux"))})
    dataset = PreferenceDataset.objects.create(name="d", version=1, status="done")
    judge = RewardModelVersion.objects.create(
        run=RewardModelRun.objects.create(dataset=dataset, status="done"), name="tiny judge",
        model_path=str(save_tiny_qwen(tmp_path / "judge")), base_model="tiny", template_version=1)
    pool, held_out = Tag.objects.create(name="rl-pool"), Tag.objects.create(name="held-out")
    inputs = make_inputs(4)
    for item in inputs[:3]:
        item.tags.add(pool)
    inputs[3].tags.add(held_out)
    client.force_login(make_user("eve", "ml_engineer"))
    response = client.post("/admin/rl/rlrun/add/", {
        "name": "tiny rl", "base_generator": base.pk, "reward_model": judge.pk, "algorithm": "dynamic",
        "task_probabilities": "{}", "train_tags": [pool.pk], "eval_tags": [held_out.pk], "reward_cap": 0.9,
        "t_start": 0.5, "t_end": 0.75, "ema_decay": 0.9, "learning_rate": 1e-3, "batch_size": 1, "max_steps": 2,
        "lora_rank": 4, "seed": 0, "save_every": 1, "processes": 1, "accelerate_config": "",
        "extra": json.dumps({"log_every": 1,
                             "rollout": {"steps": 2, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""}})})
    assert response.status_code == 302, response.content.decode()[:3000]
    run = RLRun.objects.get()
    run = wait_for(lambda: RLRun.objects.filter(pk=run.pk, status__in=["done", "failed"]).first(),
                   timeout=400, what="the RL run")
    assert run.status == "done", (run.error, celery_worker_process.log()[-3000:])
    assert run.step == 2 and run.reward_history
    assert [row[0] for row in run.training_history] == [1, 2]
    assert all(row[3] is not None for row in run.training_history)
    checkpoint = run.checkpoint
    assert checkpoint.generator.backend == "flux_fill" and checkpoint.steps == 2
    assert checkpoint.evaluation.get("rows"), checkpoint.evaluation
    page = client.get(f"/admin/rl/rlrun/{run.pk}/change/").content.decode()
    assert checkpoint.generator.name in page and "Loss, hinge share and gradient norm by step" in page
    batch = GenerationBatch.launch(generator=checkpoint.generator, inputs=[inputs[3]], candidates_per_input=2,
                                   ranges={"steps": [2, 2], "true_cfg": [1.0, 1.0], "negative_prompts": [""]}, seed=1)
    batch = wait_for(lambda: GenerationBatch.objects.filter(pk=batch.pk, status__in=["done", "failed"]).first(),
                     timeout=300, what="the generation batch")
    assert batch.status == "done" and not batch.progress_failed, (batch.error, celery_worker_process.log()[-3000:])
    assert Candidate.objects.filter(candidate_set__batch=batch).count() == 2
