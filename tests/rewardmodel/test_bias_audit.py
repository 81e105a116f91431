"""The bias audit of a trained judge: its agreement with people per task and input tag, and people's
and the judge's preference for the higher value of each generation setting, flagged where they part.
The figures below are worked out by hand from the pairs the test writes."""
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from inputs.models import Tag
from preferences.models import PreferenceDataset
from rewardmodel.core.bias_audit import ScoredPair, audit
from rewardmodel.models import RewardModelRun, RewardModelVersion
from tests.annotation.world import make_inputs

pytestmark = pytest.mark.django_db

# 20 pairs whose candidates differ in guidance only (inputs tagged "portrait"): people prefer the
# higher guidance in 6; the judge always sides with the higher guidance.
# 20 pairs whose candidates differ in steps only ("landscape"): people prefer more steps in 10; the
# judge always sides with people.
SURE = 0.9  # the judge's renormalised P(Yes) for the image it prefers first


def settings_of(steps=28, guidance=30.0):
    return {"seed": 1, "steps": steps, "guidance": guidance, "true_cfg": 1.0, "strength": 1.0, "negative_prompt": ""}


def hand_pairs():
    """(winner settings, loser settings, judge agrees with people, tag) per pair."""
    pairs = []
    for i in range(20):
        winner_higher = i < 6
        high, low = settings_of(guidance=40.0), settings_of(guidance=20.0)
        pairs.append((high, low, True, "portrait") if winner_higher else (low, high, False, "portrait"))
    for i in range(20):
        high, low = settings_of(steps=50), settings_of(steps=20)
        pairs.append((high, low, True, "landscape") if i < 10 else (low, high, True, "landscape"))
    return pairs


def scores(agrees: bool) -> tuple[float, float]:
    # (P(Yes | winner first), P(Yes | loser first)): agreeing puts the winner ahead in both orders.
    return (SURE, 1 - SURE) if agrees else (1 - SURE, SURE)


@pytest.fixture
def version(tmp_path, settings):
    settings.ONEREWARD_TRAINING_DIR = tmp_path / "training"
    portrait, landscape = Tag.objects.create(name="portrait"), Tag.objects.create(name="landscape")
    inputs = make_inputs(2)
    inputs[0].tags.add(portrait)
    inputs[1].tags.add(landscape)
    dataset = PreferenceDataset.objects.create(name="d", version=1, status="done")
    run = RewardModelRun.objects.create(dataset=dataset, status="done")
    version = RewardModelVersion.objects.create(run=run, name="judge-1", model_path="/m", base_model="tiny",
                                                template_version=1)
    rows, score_rows = [], []
    for number, (winner, loser, agrees, tag) in enumerate(hand_pairs()):
        pair_id = f"pair{number}"
        rows.append({"pair_id": pair_id, "input_id": (inputs[0] if tag == "portrait" else inputs[1]).pk,
                     "task": "image_fill", "dimension": "aesthetics", "winner_settings": json.dumps(winner),
                     "loser_settings": json.dumps(loser)})
        forward, reversed_ = scores(agrees)
        score_rows.append({"pair_id": pair_id, "p_forward": forward, "p_reversed": reversed_})
    data = run.output_dir / "dataset" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), data / "test-00000.parquet")
    pq.write_table(pa.Table.from_pylist(score_rows), run.output_dir / "test_scores.parquet")
    return version


def rows_by(result, key):
    return {row[key] if key == "setting" else f"{row['kind']}:{row['group']}": row for row in result[
        "settings" if key == "setting" else "groups"]}


def test_the_audit_finds_the_judge_preferring_high_guidance_where_people_do_not(version, make_user):
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.get(f"/api/reward-models/{version.pk}/bias-audit/", {"threshold": 0.1})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["pairs"] == 40 and result["overall_agreement"]["rate"] == pytest.approx(26 / 40)
    settings = rows_by(result, "setting")
    assert settings["guidance"]["pairs"] == 20
    assert settings["guidance"]["human_prefers_higher"]["rate"] == pytest.approx(6 / 20)
    assert settings["guidance"]["judge_prefers_higher"]["rate"] == pytest.approx(1.0)
    assert settings["guidance"]["flagged"]
    assert settings["steps"]["human_prefers_higher"]["rate"] == pytest.approx(0.5)
    assert settings["steps"]["judge_prefers_higher"]["rate"] == pytest.approx(0.5)
    assert not settings["steps"]["flagged"]
    assert settings["negative_prompt"]["pairs"] == 0 and not settings["negative_prompt"]["flagged"]
    groups = rows_by(result, "group")
    assert groups["tag:portrait"]["judge_agreement"]["rate"] == pytest.approx(6 / 20)
    assert groups["tag:landscape"]["judge_agreement"]["rate"] == pytest.approx(1.0)
    assert groups["tag:portrait"]["flagged"] and groups["tag:portrait"]["gap"] == pytest.approx(6 / 20 - 26 / 40)
    assert groups["task:image_fill"]["judge_agreement"]["total"] == 40 and not groups["task:image_fill"]["flagged"]
    assert api.get(f"/api/reward-models/{version.pk}/bias-audit/", {"threshold": 5}).status_code == 400


def test_a_tie_counts_half_and_reversing_the_scores_reverses_the_judge():
    high, low = settings_of(guidance=40.0), settings_of(guidance=20.0)
    pair = ScoredPair("image_fill", "aesthetics", (), high, low, p_forward=0.9, p_reversed=0.1)
    assert audit([pair])["settings"][1]["judge_prefers_higher"]["rate"] == 1.0
    flipped = ScoredPair("image_fill", "aesthetics", (), high, low, p_forward=0.1, p_reversed=0.9)
    assert audit([flipped])["settings"][1]["judge_prefers_higher"]["rate"] == 0.0
    tie = ScoredPair("image_fill", "aesthetics", (), high, low, p_forward=0.5, p_reversed=0.5)
    assert audit([tie])["settings"][1]["judge_prefers_higher"]["rate"] == 0.5


def test_the_admin_page_and_the_command_show_the_audit(version, make_user, client):
    client.force_login(make_user("eve", "ml_engineer"))
    assert "/bias-audit/" in client.get(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/change/").content.decode()
    page = client.get(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/bias-audit/").content.decode()
    assert 'data-setting="guidance" data-flagged="yes"' in page and 'data-setting="steps" data-flagged="no"' in page
    assert 'data-group="tag:portrait" data-flagged="yes"' in page and page.count('<svg class="audit-chart"') == 2
    out = io.StringIO()
    call_command("bias_audit", "judge-1", stdout=out)
    text = out.getvalue()
    assert "40 test pairs" in text and "guidance" in text and "FLAGGED" in text
    with pytest.raises(CommandError, match="no reward-model version"):
        call_command("bias_audit", "nope")


def test_a_version_without_test_scores_is_refused_clearly(version, make_user, client):
    version.scores_path.unlink()
    with pytest.raises(CommandError, match="has no test scores"):
        call_command("bias_audit", str(version.pk))
    client.force_login(make_user("eve", "ml_engineer"))
    page = client.get(f"/admin/rewardmodel/rewardmodelversion/{version.pk}/bias-audit/").content.decode()
    assert "has no test scores" in page
