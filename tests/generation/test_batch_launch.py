"""Launching a batch from the admin, the command line and the API: one rule set, clear errors."""
import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from generation.models import CandidateSet, GenerationBatch, Generator
from inputs.demo_inputs import demo_specs
from inputs.importing import import_inputs

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    return import_inputs(demo_specs()[:3])


@pytest.fixture
def baseline(db):
    generator = Generator(name="CPU baseline", backend="cpu_baseline", settings={})
    generator.full_clean()
    generator.save()
    return generator


def launch_data(**overrides):
    data = {
        "name": "", "generator": "", "task": "image_fill", "tag": "", "input_ids": "", "candidates_per_input": 4,
        "steps_min": 28, "steps_max": 50, "guidance_min": 20, "guidance_max": 40, "true_cfg_min": 1, "true_cfg_max": 4,
        "strength_min": 0.85, "strength_max": 1.0, "negative_prompts": "(none)\nnsfw", "vary": "candidate", "seed": 5,
    }
    data.update(overrides)
    return data


def test_admin_launches_a_batch(client, make_user, demo, baseline):
    client.force_login(make_user("boss", "admin"))
    assert client.get("/admin/generation/generationbatch/add/").status_code == 200
    response = client.post("/admin/generation/generationbatch/add/", launch_data(generator=baseline.pk))
    assert response.status_code == 302, response.content.decode()[:3000]
    batch = GenerationBatch.objects.get()
    assert response["Location"] == f"/admin/generation/generationbatch/{batch.pk}/change/"
    assert batch.candidates_per_input == 4 and batch.seed == 5
    assert batch.ranges["negative_prompts"] == ["", "nsfw"]
    assert CandidateSet.objects.filter(batch=batch).count() == len([d for d in demo if d.task.slug == "image_fill"])
    page = client.get(response["Location"]).content.decode()
    assert "batch-progress" in page and "Browse the candidates" in page


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"candidates_per_input": 1}, "at least 2 candidates"),
        ({"steps_min": 50, "steps_max": 28}, "steps range is inverted: 50 &gt; 28"),
        ({"steps_min": 0}, "steps must be at least 1"),
        ({"guidance_min": 9, "guidance_max": 3}, "guidance range is inverted"),
        ({"strength_max": 1.5}, "strength must lie in (0, 1]"),
        ({"task": "", "input_ids": ""}, "choose inputs by task, tag or a list of ids"),
        ({"task": "", "input_ids": "99999"}, "no input with id 99999"),
        ({"task": "text_rendering", "tag": "nothing"}, "Select a valid choice"),
    ],
)
def test_admin_refuses_a_bad_launch(client, make_user, demo, baseline, overrides, message):
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/generation/generationbatch/add/", launch_data(generator=baseline.pk, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert GenerationBatch.objects.count() == 0 and CandidateSet.objects.count() == 0


def test_ml_engineer_cannot_launch(client, make_user, baseline):
    client.force_login(make_user("ml", "ml_engineer"))
    assert client.get("/admin/generation/generationbatch/add/").status_code == 403
    assert client.get("/admin/generation/generationbatch/").status_code == 200


def test_command_launches_and_refuses(demo, baseline, capsys):
    call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "-n", "3", "--steps", "10-20",
                 "--negative-prompt", "", "--negative-prompt", "blurry", "--seed", "9")
    batch = GenerationBatch.objects.get()
    assert batch.candidates_per_input == 3 and batch.ranges["steps"] == [10, 20]
    assert batch.ranges["negative_prompts"] == ["", "blurry"]
    with pytest.raises(CommandError, match="at least 2 candidates"):
        call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "-n", "1")
    with pytest.raises(CommandError, match="no generator named 'nope'"):
        call_command("generate", "--generator", "nope", "--task", "image_fill")
    with pytest.raises(CommandError, match="inverted"):
        call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "--guidance", "9-3")
    assert GenerationBatch.objects.count() == 1


def test_api_launches_lists_and_refuses(make_user, demo, baseline):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('boss', 'admin')).key}")
    response = client.post(
        "/api/generation-batches/",
        {
            "generator": "CPU baseline",
            "inputs": [demo[0].pk, demo[1].pk],
            "candidates_per_input": 2,
            "ranges": {"vary": "input"},
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    batch_id = response.json()["id"]
    assert client.get(f"/api/generation-batches/{batch_id}/").json()["candidate_sets"][0]["status"] == "pending"
    bad = client.post("/api/generation-batches/", {"generator": "CPU baseline", "task": "image_fill",
                                                   "ranges": {"steps": [0, 3]}}, format="json")
    assert bad.status_code == 400 and "steps must be at least 1" in str(bad.json())
    assert client.post(f"/api/generation-batches/{batch_id}/cancel/").json()["status"] == "cancelled"
    annotator = APIClient()
    annotator.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('ann', 'annotator')).key}")
    assert annotator.get("/api/generation-batches/").status_code == 403
    assert annotator.post(f"/api/generation-batches/{batch_id}/resume/").status_code == 403


def test_generator_settings_are_checked(client, make_user):
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/generation/generator/add/", {"name": "bad", "backend": "cpu_baseline",
                                                                "settings": '{"methods": ["magic"]}', "active": "on"})
    assert response.status_code == 200
    assert "magic" in response.content.decode()
    assert Generator.objects.count() == 0


def test_unknown_lora_file_is_named_when_the_generator_is_saved(client, make_user, tmp_path):
    base = tmp_path / "flux-fill"
    base.mkdir()
    (base / "model_index.json").write_text("{}")
    client.force_login(make_user("boss", "admin"))
    settings = '{"base": "%s", "loras": [{"path": "%s/removal.safetensors", "weight": 1.0}]}' % (base, tmp_path)
    response = client.post("/admin/generation/generator/add/", {"name": "FLUX removal", "backend": "flux_fill",
                                                                "settings": settings, "active": "on"})
    assert response.status_code == 200
    assert "removal.safetensors" in response.content.decode() and "no such file" in response.content.decode()
    assert Generator.objects.count() == 0
