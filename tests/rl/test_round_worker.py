"""A collection round started with one click runs on a real Celery worker (Redis, PostgreSQL): the
worker generates the candidates with the CPU baseline, the round holds the finished sets, the
worker's scoring job asks the judge about every pair in both orders, and the tasks of the top K
open in the strategy's order, which is the order annotators are then handed them."""
import pytest
from rest_framework.test import APIClient

from annotation.models import AnnotationTask
from annotation.simulation import simulate, simulated_annotators
from rewardmodel.core.judge import Judge
from rl.models import CollectionRound
from tests.conftest import wait_for

from .round_world import asked_pair_by_pair, assert_ranked_by, baseline, judge_dir, register_judge, removal_inputs
from .round_world import uncertainty as uncertainty_of

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_uncertainty_round_runs_on_the_worker_and_opens_the_most_uncertain_sets_first(
        celery_worker_process, make_user, tmp_path_factory):
    path = judge_dir(tmp_path_factory)
    removal_inputs(5)
    baseline()
    version = register_judge(path)
    api = APIClient()
    api.force_authenticate(make_user("boss", "admin"))
    response = api.post("/api/collection-rounds/", {
        "name": "uncertain first", "strategy": "uncertainty", "reward_model": version.name,
        "generator": "CPU baseline", "candidates_per_input": 3, "top_k": 3, "seed": 7}, format="json")
    assert response.status_code == 202, response.json()
    round_ = wait_for(lambda: CollectionRound.objects.filter(pk=response.json()["id"],
                                                             status__in=["done", "failed", "cancelled"]).first(),
                      timeout=300, interval=1.0, what="the collection round")
    assert round_.status == "done", (round_.error, celery_worker_process.log()[-4000:])
    assert round_.stage == "opened" and round_.results["opened"] == 3
    assert round_.worker  # the scoring job ran on the worker, not here
    assert round_.batches.get().status == "done"

    judge = Judge.from_pretrained(str(path))
    figures = {row.candidate_set_id: uncertainty_of(asked_pair_by_pair(judge, row.candidate_set))
               for row in round_.sets.select_related("candidate_set__input__task")}
    order = list(round_.sets.order_by("rank").values_list("candidate_set_id", flat=True))
    assert sorted(order) == sorted(figures) and len(order) == 5
    assert_ranked_by(order, figures)
    tasks = list(AnnotationTask.objects.order_by("pk").values_list("candidate_set_id", flat=True))
    assert tasks == order[:3]

    body = api.get(f"/api/collection-rounds/{round_.pk}/").json()
    assert body["where"] == "opened 3 task(s): 0/3 judgments made"
    simulate(simulated_annotators("brightness", 1, 0.0), max_tasks=2)
    judged = set(AnnotationTask.objects.filter(judgments_done=1).values_list("candidate_set_id", flat=True))
    assert judged == set(order[:2])
    assert api.get(f"/api/collection-rounds/{round_.pk}/").json()["annotation"] == {"tasks": 3, "done": 2,
                                                                                    "wanted": 3}
