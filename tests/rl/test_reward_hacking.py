"""The reward-hacking alarm of a policy checkpoint: the judge's win rate against the base beside the
human study's, per task x dimension, with the rows where the judge wins far more often flagged on
the checkpoint's page and in the API. Hand-worked figures: the human rate is counted here from the
picks the test makes, not read from the code under test."""
import uuid

import pytest
from rest_framework.test import APIClient

from evaluation.models import StudyCandidate, StudyJudgment, StudyPick, StudySlot, StudySlotState
from inputs.models import Dimension, Tag
from rl.execution import register_checkpoint, start_human_study
from rl.models import PolicyCheckpoint, RLRun
from rl.reward_hacking import alarm
from tests.annotation.world import make_inputs
from tests.rl.test_runs import finish_batch, tiny_flux_dir, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

ITEMS = 12
# Of the 12 items, humans pick the policy best on this many (the base best on the rest).
POLICY_WINS = {"aesthetics": 2, "structure": 10}
JUDGE = {"aesthetics": 0.9, "structure": 0.85, "consistency": 0.6}  # no human picks on consistency


def judge_rows(rates: dict) -> dict:
    rows = [{"task": "image_fill", "dimension": d, "comparisons": 24, "win_rate": r} for d, r in rates.items()]
    rows.append({"task": "all", "dimension": "all", "comparisons": 72, "win_rate": sum(rates.values()) / len(rates)})
    return {"rows": rows}


def checkpoint_with_study(world, make_user, policy_wins=POLICY_WINS, judge=JUDGE) -> PolicyCheckpoint:  # noqa: F811
    generator, reward_model = world
    held_out = make_inputs(ITEMS)
    tag = Tag.objects.create(name="held-out")
    for item in held_out:
        item.tags.add(tag)
    run = RLRun.objects.create(base_generator=generator, reward_model=reward_model, status="done")
    checkpoint = register_checkpoint(run, {"steps": 5, "generator_settings": generator.settings,
                                           "evaluation": judge_rows(judge)})
    for batch in start_human_study(checkpoint, inputs=held_out):
        finish_batch(batch)
    study = PolicyCheckpoint.objects.get(pk=checkpoint.pk).study
    arms = {arm.label: arm for arm in study.arms.all()}
    annotator = make_user("rater", "annotator")
    for number, item in enumerate(study.items.order_by("pk")):
        shown = {c.arm.label: c for c in StudyCandidate.objects.filter(item=item).select_related("arm")}
        order = [c.pk for c in shown.values()]
        slot = StudySlot.objects.create(item=item, annotator=annotator, state=StudySlotState.DONE, shown_order=order)
        judgment = StudyJudgment.objects.create(slot=slot, item=item, annotator=annotator, shown_order=order,
                                                submission_id=uuid.uuid4(), dwell_ms=3000)
        for slug, wins in policy_wins.items():
            best, worst = ("policy", "base") if number < wins else ("base", "policy")
            StudyPick.objects.create(judgment=judgment, dimension=Dimension.objects.get(slug=slug),
                                     best=shown[best], worst=shown[worst])
    assert set(arms) == {"policy", "base"}
    return PolicyCheckpoint.objects.get(pk=checkpoint.pk)


def by_dimension(check: dict) -> dict:
    return {row["dimension"]: row for row in check["rows"]}


def test_the_judge_winning_where_people_do_not_is_flagged(world, make_user):  # noqa: F811
    check = alarm(checkpoint_with_study(world, make_user), threshold=0.15)
    rows = by_dimension(check)
    assert rows["aesthetics"]["human_win_rate"] == pytest.approx(2 / 12)
    assert rows["structure"]["human_win_rate"] == pytest.approx(10 / 12)
    assert rows["aesthetics"]["gap"] == pytest.approx(0.9 - 2 / 12)
    assert rows["aesthetics"]["flagged"] and not rows["structure"]["flagged"]
    # No human pick on consistency: figures shown, never flagged.
    assert rows["consistency"]["human_judgments"] == 0 and rows["consistency"]["human_win_rate"] is None
    assert not rows["consistency"]["flagged"]
    # Pooled over the rows people judged: 12 of 24.
    assert rows["all"]["human_win_rate"] == pytest.approx(12 / 24) and rows["all"]["human_judgments"] == 24
    assert check["state"] == "flagged" and check["flagged"] == ["image_fill / aesthetics", "all / all"]
    # A wide threshold flags nothing.
    assert alarm(PolicyCheckpoint.objects.get(), threshold=0.8)["state"] == "clear"


def test_people_preferring_the_policy_flag_the_other_dimension(world, make_user):  # noqa: F811
    # The same picks with policy and base swapped: now structure is where the judge and people part.
    swapped = {slug: ITEMS - wins for slug, wins in POLICY_WINS.items()}
    rows = by_dimension(alarm(checkpoint_with_study(world, make_user, policy_wins=swapped), threshold=0.15))
    assert rows["structure"]["flagged"] and not rows["aesthetics"]["flagged"]


def test_few_human_judgments_do_not_raise_the_alarm(world, make_user):  # noqa: F811
    checkpoint = checkpoint_with_study(world, make_user, policy_wins={"aesthetics": 0})
    StudyJudgment.objects.filter(item__study=checkpoint.study).exclude(
        pk=StudyJudgment.objects.filter(item__study=checkpoint.study).order_by("pk").first().pk).delete()
    rows = by_dimension(alarm(checkpoint, threshold=0.15))
    assert rows["aesthetics"]["human_judgments"] == 1 and rows["aesthetics"]["human_win_rate"] == 0
    assert not rows["aesthetics"]["flagged"]


def test_the_checkpoint_page_and_the_api_show_the_alarm(world, make_user, client):  # noqa: F811
    checkpoint = checkpoint_with_study(world, make_user)
    engineer = make_user("eve", "ml_engineer")
    client.force_login(engineer)
    page = client.get(f"/admin/rl/policycheckpoint/{checkpoint.pk}/change/").content.decode()
    assert "Possible reward hacking" in page and "image_fill / aesthetics" in page
    assert page.count('data-flagged="yes"') == 2 and 'data-state="flagged"' in page
    api = APIClient()
    api.force_authenticate(engineer)
    body = api.get(f"/api/policy-checkpoints/{checkpoint.pk}/").json()
    assert body["reward_hacking"]["state"] == "flagged"
    assert "image_fill / aesthetics" in body["reward_hacking"]["flagged"]


def test_a_checkpoint_without_a_study_says_so(world, make_user, client):  # noqa: F811
    generator, reward_model = world
    run = RLRun.objects.create(base_generator=generator, reward_model=reward_model, status="done")
    checkpoint = register_checkpoint(run, {"steps": 5, "generator_settings": generator.settings,
                                           "evaluation": judge_rows(JUDGE)})
    check = alarm(checkpoint)
    assert check["state"] == "no human study yet" and not check["flagged"]
    client.force_login(make_user("eve", "ml_engineer"))
    page = client.get(f"/admin/rl/policycheckpoint/{checkpoint.pk}/change/").content.decode()
    assert "no human study yet" in page and "Possible reward hacking" not in page
