"""A judge ablation started from the admin is run by a real GPU-queue worker (here on the CPU): its
page polls until the job ends and then shows the side-by-side tables; the API starts another one
and reads both."""
import pytest
from rest_framework.test import APIClient

from rewardmodel.ablation import dataset_copy
from rewardmodel.core.ablation import read_rows, read_scores
from rewardmodel.core.evaluation import score_pairs
from rewardmodel.core.judge import Judge
from rewardmodel.core.pairs import PreferencePairs
from rewardmodel.models import JudgeAblation
from tests.conftest import wait_for
from tests.rewardmodel.ablation_world import (
    CEILING,
    WITH_OTHERS,
    expected_agreement,
    judged_dataset,
    registered_version,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(pk):
    return wait_for(lambda: JudgeAblation.objects.filter(pk=pk, status__in=["done", "failed", "cancelled"]).first(),
                    timeout=300, what="the judge ablation")


def method_scores(model_path, directory) -> dict:
    """The judge's scores of the test split by the evaluation's own code: the method's query, two images."""
    rows = score_pairs(Judge.from_pretrained(model_path), PreferencePairs(directory, "test"), batch_size=8)
    return {row["pair_id"]: (row["p_forward"], row["p_reversed"]) for row in rows}


def flat(scores: dict) -> list[float]:
    return [p for pair_id in sorted(scores) for p in scores[pair_id]]


def test_an_ablation_from_the_admin_and_the_api(celery_worker_process, client, make_user, tmp_path):
    dataset = judged_dataset(make_user, sets=3)
    version = registered_version(dataset, tmp_path / "base", tmp_path / "model-a", seed=1)
    engineer = make_user("eve", "ml_engineer")
    client.force_login(engineer)
    add = client.get(f"/admin/rewardmodel/judgeablation/add/?versions={version.pk}").content.decode()
    assert 'name="templates"' in add and "the source image with its mask tinted red" in add
    response = client.post("/admin/rewardmodel/judgeablation/add/", {
        "name": "wordings", "versions": [version.pk], "dataset": "", "base_model": "", "zero_shot": "on",
        "templates": ["1", "2"], "prompt": ["with"], "images": ["two", "source"], "batch_size": 8})
    assert response.status_code == 302, response.content.decode()[:3000]
    ablation = JudgeAblation.objects.get(name="wordings")
    assert ablation.variants == ["v1", "v1+source", "v2", "v2+source"] and ablation.dataset == dataset
    page = client.get(f"/admin/rewardmodel/judgeablation/{ablation.pk}/change/").content.decode()
    assert 'id="ablation-progress"' in page
    ablation = finished(ablation.pk)
    assert ablation.status == "done", (ablation.error, celery_worker_process.log()[-3000:])
    assert ablation.progress_done == ablation.progress_total == 8 * 12  # 2 judges x 4 variants x 12 pairs
    assert ablation.worker and ablation.celery_task_id

    # The poll that sees the end asks for the whole page, which now shows the tables.
    poll = client.get(f"/admin/rewardmodel/judgeablation/{ablation.pk}/progress/", HTTP_HX_REQUEST="true")
    assert poll.status_code == 200 and poll["HX-Refresh"] == "true" and "hx-get" not in poll.content.decode()
    page = client.get(f"/admin/rewardmodel/judgeablation/{ablation.pk}/change/").content.decode()
    keys = [f"version-{version.pk}/{v}" for v in ablation.variants] + [f"base/{v}" for v in ablation.variants]
    assert [column["key"] for column in ablation.results["columns"]] == keys
    for key in keys:
        assert f'<th data-column="{key}">' in page
    assert 'data-ceiling="83.3"' in page and 'data-ceiling="33.3"' in page  # all; structure
    assert 'data-annotator="carol"' in page and 'data-with-others="75.0"' in page

    # The method's variant is the evaluation's figure: the same scores as the evaluation code gives.
    directory = dataset_copy(version)
    rows = {row["pair_id"]: row for row in read_rows(directory)}
    expected = {f"version-{version.pk}": method_scores(version.model_path, directory),
                "base": method_scores(version.base_model, directory)}
    for judge, scores in expected.items():
        for username in ("alice", "bob", "carol"):
            agreement = next(row for row in ablation.results["annotators"] if row["name"] == username)
            assert agreement["cells"][f"{judge}/v1"]["rate"] == pytest.approx(
                expected_agreement(list(rows.values()), scores, username), abs=1e-9), (judge, username)
            assert agreement["with_others"]["rate"] == pytest.approx(WITH_OTHERS[username])
        overall = next(row for row in ablation.results["rows"] if row["task"] == "all")["cells"][f"{judge}/v1"]
        assert overall["forward"]["successes"] == sum(f > 0.5 for f, _ in scores.values())
        assert overall["reversed"]["successes"] == sum(r < 0.5 for _, r in scores.values())
    assert flat(expected[f"version-{version.pk}"]) != pytest.approx(flat(expected["base"]))  # two judges
    for row in ablation.results["rows"]:
        dimension = row["dimension"]
        assert row["human_ceiling"]["rate"] == pytest.approx(CEILING[dimension])

    # The API: read it, and start another (without the prompt) that a worker runs too.
    api = APIClient()
    api.force_authenticate(engineer)
    body = api.get(f"/api/judge-ablations/{ablation.pk}/").json()
    assert body["status"] == "done" and body["results"]["columns"][0]["key"] == keys[0]
    assert body["versions"] == [version.pk] and body["dataset"] == dataset.pk
    response = api.post("/api/judge-ablations/", {"name": "no prompt", "versions": [version.pk],
                                                  "variants": ["v1+no-prompt", "v1"], "batch_size": 8}, format="json")
    assert response.status_code == 202, response.content
    second = finished(response.json()["id"])
    assert second.status == "done", second.error
    cells = {row["dimension"]: row["cells"] for row in second.results["rows"]}
    without, method = f"version-{version.pk}/v1+no-prompt", f"version-{version.pk}/v1"
    # Only text alignment quotes the prompt, so only its figures may move; the rest are the first run's.
    first = {row["dimension"]: row["cells"] for row in ablation.results["rows"]}
    for dimension in ("structure", "aesthetics"):
        assert cells[dimension][without] == cells[dimension][method] == first[dimension][method]
    assert cells["text_alignment"][method] == first["text_alignment"][method]
    scores_without = read_scores(second.output_dir / f"scores-version-{version.pk}-v1+no-prompt.parquet")
    scores_with = read_scores(second.output_dir / f"scores-version-{version.pk}-v1.parquet")
    assert flat(scores_with) == pytest.approx(flat(expected[f"version-{version.pk}"]), abs=1e-5)
    for pair_id, row in rows.items():
        same = scores_without[pair_id] == pytest.approx(scores_with[pair_id], abs=1e-6)
        assert same == (row["dimension"] != "text_alignment"), row["dimension"]
    listing = api.get("/api/judge-ablations/").json()
    assert {item["id"] for item in listing["results"]} == {ablation.pk, second.pk}
