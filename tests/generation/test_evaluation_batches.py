"""Batches launched for a human evaluation study: from the admin, the command line and the API; one
candidate per input is allowed for them only, and their finished sets make no annotation task."""
import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import AnnotationTask
from generation.execution import generate_set
from generation.models import Candidate, GenerationBatch, Generator
from inputs.demo_inputs import demo_specs
from inputs.importing import import_inputs
from onereward.jobs import JobStatus
from tests.generation.test_batch_launch import launch_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    return import_inputs(demo_specs()[:3])


@pytest.fixture
def baseline(db):
    return Generator.objects.create(name="CPU baseline", backend="cpu_baseline", settings={})


def test_admin_launches_an_evaluation_batch_of_one_candidate(client, make_user, demo, baseline):
    client.force_login(make_user("boss", "admin"))
    form = client.get("/admin/generation/generationbatch/add/").content.decode()
    assert 'name="evaluation"' in form
    refused = client.post("/admin/generation/generationbatch/add/",
                          launch_data(generator=baseline.pk, candidates_per_input=1))
    assert "at least 2 candidates" in refused.content.decode() and not GenerationBatch.objects.exists()
    response = client.post("/admin/generation/generationbatch/add/",
                           launch_data(generator=baseline.pk, candidates_per_input=1, evaluation="on"))
    assert response.status_code == 302, response.content.decode()[:3000]
    batch = GenerationBatch.objects.get()
    assert not batch.for_annotation and batch.candidates_per_input == 1
    page = client.get(response["Location"]).content.decode()
    assert "evaluation" in page
    assert "evaluation" in client.get("/admin/generation/generationbatch/").content.decode()


def test_an_annotation_batch_is_the_default(client, make_user, demo, baseline):
    client.force_login(make_user("boss", "admin"))
    client.post("/admin/generation/generationbatch/add/", launch_data(generator=baseline.pk))
    assert GenerationBatch.objects.get().for_annotation


def test_command_launches_an_evaluation_batch(demo, baseline, capsys):
    call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "-n", "1", "--evaluation")
    batch = GenerationBatch.objects.get()
    assert not batch.for_annotation and batch.candidates_per_input == 1
    assert "for evaluation" in capsys.readouterr().out
    with pytest.raises(CommandError, match="at least 2 candidates"):
        call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "-n", "1")
    with pytest.raises(CommandError, match="at least 1 candidate"):
        call_command("generate", "--generator", "CPU baseline", "--task", "image_fill", "-n", "0", "--evaluation")


def test_api_launches_an_evaluation_batch(make_user, demo, baseline):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('boss', 'admin')).key}")
    response = client.post(
        "/api/generation-batches/",
        {"generator": "CPU baseline", "task": "image_fill", "candidates_per_input": 1, "for_annotation": False},
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["for_annotation"] is False
    assert client.get(f"/api/generation-batches/{response.json()['id']}/").json()["for_annotation"] is False
    refused = client.post("/api/generation-batches/", {"generator": "CPU baseline", "task": "image_fill",
                                                       "candidates_per_input": 1}, format="json")
    assert refused.status_code == 400 and "at least 2 candidates" in str(refused.json())


def test_finished_sets_of_an_evaluation_batch_make_no_annotation_task(demo, baseline):
    fill = [item for item in demo if item.task.slug == "image_fill"]
    evaluation = GenerationBatch.launch(generator=baseline, inputs=fill, candidates_per_input=1, for_annotation=False)
    annotation = GenerationBatch.launch(generator=baseline, inputs=fill, candidates_per_input=2)
    for batch in (evaluation, annotation):
        GenerationBatch.objects.filter(pk=batch.pk).update(status=JobStatus.RUNNING)
        for candidate_set in batch.candidate_sets.all():
            generate_set(candidate_set.pk, worker="test")
        batch.refresh_from_db()
        assert batch.status == JobStatus.DONE and batch.progress_done == len(fill)
    assert Candidate.objects.filter(candidate_set__batch=evaluation).count() == len(fill)
    assert not AnnotationTask.objects.filter(candidate_set__batch=evaluation).exists()
    assert AnnotationTask.objects.filter(candidate_set__batch=annotation).count() == len(fill)
