"""Starting a judge ablation: bad input refused with a message that says what to do (admin, API and
command line share the rules), and `manage.py judge_ablation --here` scoring a version with the
annotators' votes read back from their judgments."""
import io
import shutil

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from rewardmodel.ablation import dataset_copy, start_ablation
from rewardmodel.core.ablation import read_rows, read_scores
from rewardmodel.models import JudgeAblation
from tests.rewardmodel.ablation_world import (
    CEILING,
    WITH_OTHERS,
    expected_agreement,
    judged_dataset,
    registered_version,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_user, tmp_path, settings):
    settings.ONEREWARD_TRAINING_DIR = tmp_path / "training"
    dataset = judged_dataset(make_user, sets=3)
    version = registered_version(dataset, tmp_path / "base", tmp_path / "model-a")
    return dataset, version


@pytest.fixture
def api(make_user):
    client = APIClient()
    client.force_authenticate(make_user("eve", "ml_engineer"))
    return client


def test_a_version_without_its_dataset_copy_is_refused_everywhere(world, api, client, make_user):
    dataset, version = world
    shutil.rmtree(dataset_copy(version))
    message = "has no complete copy of its dataset on this host"
    with pytest.raises(Exception, match=message):
        start_ablation(versions=[version])
    response = api.post("/api/judge-ablations/", {"versions": [version.pk], "variants": ["v1"]}, format="json")
    assert response.status_code == 400 and message in response.json()["versions"][0], response.content
    with pytest.raises(CommandError, match=message):
        call_command("judge_ablation", "--version", version.name)
    client.force_login(make_user("frank", "ml_engineer"))
    page = client.post("/admin/rewardmodel/judgeablation/add/", {
        "versions": [version.pk], "templates": ["1"], "prompt": ["with"], "images": ["two"], "batch_size": 8})
    assert page.status_code == 200 and message in page.content.decode()
    assert not JudgeAblation.objects.exists()


def test_unknown_variants_and_empty_choices_are_refused(world, api):
    dataset, version = world
    response = api.post("/api/judge-ablations/", {"versions": [version.pk], "variants": ["v1", "v1+mask"]},
                        format="json")
    assert response.status_code == 400
    assert "unknown variant 'v1+mask': write v<template>[+no-prompt][+source]" in response.json()["variants"][0]
    response = api.post("/api/judge-ablations/", {"versions": [version.pk], "variants": ["v3"]}, format="json")
    assert "no query template version 3" in response.json()["variants"][0]
    response = api.post("/api/judge-ablations/", {"variants": ["v1"]}, format="json")
    assert "choose at least one reward-model version" in response.json()["versions"][0]
    with pytest.raises(CommandError, match="unknown variant 'v2\\+prompt'"):
        call_command("judge_ablation", "--version", version.name, "--variant", "v2+prompt")
    with pytest.raises(CommandError, match="no reward-model version named or numbered 'nope'"):
        call_command("judge_ablation", "--version", "nope")
    assert not JudgeAblation.objects.exists()


def test_versions_of_other_datasets_and_unbuilt_datasets_are_refused(world, api, make_user, tmp_path):
    dataset, version = world
    other = judged_dataset(make_user_once(make_user), sets=1, name="other-prefs", first_seed=50)
    stranger = registered_version(other, tmp_path / "base", tmp_path / "model-b", name="judge-b")
    response = api.post("/api/judge-ablations/", {"versions": [version.pk, stranger.pk]}, format="json")
    assert response.status_code == 400 and "trained on different dataset versions" in response.json()["versions"][0]
    response = api.post("/api/judge-ablations/", {"versions": [version.pk], "dataset": other.pk}, format="json")
    assert "the versions were trained on ablation-prefs v1, not other-prefs v1" in response.json()["dataset"][0]
    other.status = "running"
    other.save()
    response = api.post("/api/judge-ablations/", {"base_model": "/models/tiny", "dataset": other.pk}, format="json")
    assert "is not built (running)" in response.json()["dataset"][0]
    response = api.post("/api/judge-ablations/", {"zero_shot": True}, format="json")
    assert "zero-shot needs a base model" in response.json()["base_model"][0]


def make_user_once(make_user):
    """make_user for a second world: the annotators exist already, so take them instead."""
    from django.contrib.auth.models import User

    def make(username, role=None, password="pass-for-tests-1"):
        found = User.objects.filter(username=username).first()
        return found or make_user(username, role, password)

    return make


def test_the_command_scores_a_version_here_with_each_annotators_vote(world):
    dataset, version = world
    out = io.StringIO()
    call_command("judge_ablation", "--version", version.name, "--zero-shot", "--variant", "v1", "--variant",
                 "v2+source", "--here", "--name", "here", stdout=out)
    ablation = JudgeAblation.objects.get(name="here")
    assert ablation.status == "done", ablation.error
    assert ablation.variants == ["v1", "v2+source"] and ablation.base_model == version.base_model
    results = ablation.results
    assert [column["key"] for column in results["columns"]] == [
        f"version-{version.pk}/v1", f"version-{version.pk}/v2+source", "base/v1", "base/v2+source"]
    assert results["pairs"] == 12 and results["judged_pairs"] == 12 and not any(
        "not known" in warning for warning in results["warnings"])
    rows = {row["dimension"]: row for row in results["rows"]}
    for dimension, ceiling in CEILING.items():
        assert rows[dimension]["human_ceiling"]["rate"] == pytest.approx(ceiling), dimension
    assert rows["structure"]["votes"] == 9 and rows["all"]["votes"] == 36
    # Carol's vote against the structure winner is in no exported row: it came from her judgments.
    annotators = {row["name"]: row for row in results["annotators"]}
    assert set(annotators) == {"alice", "bob", "carol"} and annotators["carol"]["pairs"] == 12
    test_rows = read_rows(dataset_copy(version))
    for column in results["columns"]:
        scores = read_scores(ablation.output_dir / f"scores-{column['key'].replace('/', '-')}.parquet")
        for username in ("alice", "carol"):
            assert annotators[username]["cells"][column["key"]]["rate"] == pytest.approx(
                expected_agreement(test_rows, scores, username)), (username, column["key"])
    for username, share in WITH_OTHERS.items():
        assert annotators[username]["with_others"]["rate"] == pytest.approx(share)
    text = out.getvalue()
    assert "human ceiling 33.3 %" in text and "judge-a / v2+source" in text
    assert "with the others (leave-one-out): alice 87.5, bob 87.5, carol 75.0" in text


def test_a_base_model_alone_is_scored_on_a_copy_of_the_dataset_from_storage(world):
    dataset, version = world
    out = io.StringIO()
    call_command("judge_ablation", "--base-model", version.base_model, "--dataset", f"{dataset.name}:v1",
                 "--variant", "v1+no-prompt", "--here", "--json", stdout=out)
    ablation = JudgeAblation.objects.get()
    assert ablation.status == "done", ablation.error
    assert (ablation.output_dir / "dataset" / ".complete").read_text() == dataset.content_hash
    assert [column["key"] for column in ablation.results["columns"]] == ["base/v1+no-prompt"]
    assert ablation.results["columns"][0]["trained_template_version"] is None
    assert '"judged_pairs": 12' in out.getvalue()
