"""Reranking generators: the judge keeps the best of M candidates of another generator.

The judge whose preference is known is the tiny judge trained to prefer the brighter image
(synthetic_pairs.trained_brightness_judge, > 95 % held-out accuracy); the wrapped generator is the
CPU baseline, whose candidates differ in brightness from seed to seed. The ground truth is the
brightness of each inner candidate under the mask, computed here from its pixels (oracle_world),
and the round robin of the rule is recomputed here from single judge calls, one ordered pair at a
time.
"""
import numpy as np
import pytest
from rest_framework.test import APIClient

from generation.core.backends.base import CandidateSettings, GenerationRequest, load_backend
from generation.models import Generator
from preferences.models import PreferenceDataset
from rewardmodel.core.judge import Judge
from rewardmodel.core.query import build_query
from rewardmodel.models import RewardModelRun, RewardModelVersion
from tests.conftest import box_mask, photo
from tests.rl.oracle_world import brightness

from .synthetic_pairs import taxonomy, trained_brightness_judge

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture

PROMPT = "a red cup on a wooden table"


@pytest.fixture
def brightness_judge(tmp_path_factory):
    output, _ = trained_brightness_judge(tmp_path_factory)
    return output / "model"


_reversed: dict = {}


@pytest.fixture
def reversed_judge(brightness_judge, tmp_path_factory):
    """The same weights asked the other way round: its "Yes" is the trained judge's "No", so it
    prefers the darker image (renormalised, its P(Yes) is exactly 1 - the trained judge's)."""
    if "dir" not in _reversed:
        judge = Judge.from_pretrained(str(brightness_judge), device="cpu", yes_token="No", no_token="Yes")
        _reversed["dir"] = judge.save_pretrained(tmp_path_factory.mktemp("reversed") / "judge")
    return _reversed["dir"]


@pytest.fixture
def baseline(db):
    generator = Generator(name="CPU baseline", backend="cpu_baseline", settings={})
    generator.full_clean()
    generator.save()
    return generator


def registered_judge(name: str, model_path) -> RewardModelVersion:
    """A reward model version as a finished run registers it, pointing at `model_path`."""
    dataset, _ = PreferenceDataset.objects.get_or_create(name="prefs", version=1, defaults={"status": "done"})
    run = RewardModelRun.objects.create(dataset=dataset, status="done")
    return RewardModelVersion.objects.create(run=run, name=name, model_path=str(model_path), base_model="tiny",
                                             template_version=1)


def reranking(name: str, **settings) -> Generator:
    generator = Generator(name=name, backend="rerank", settings=settings)
    generator.full_clean()
    generator.save()
    return generator


def request(seed: int, task: str = "image_fill", prompt: str = PROMPT, prompt_given: bool | None = True):
    return GenerationRequest(image=photo(64, 48, seed=seed), mask=box_mask(), prompt=prompt, task=task,
                             settings=CandidateSettings(seed=seed, steps=28), prompt_given=prompt_given)


def inner_images(req: GenerationRequest, m: int) -> tuple[list[int], list[np.ndarray]]:
    """The wrapped generator's M candidates, made here by the documented seed rule (seed * M + k)."""
    seeds = [req.settings.seed * m + k for k in range(m)]
    backend = load_backend("cpu_baseline", {})
    images = backend.generate([GenerationRequest(image=req.image, mask=req.mask, prompt=req.prompt, task=req.task,
                                                 settings=CandidateSettings(seed=s, steps=req.settings.steps))
                               for s in seeds])
    return seeds, [np.asarray(image.convert("RGB")) for image in images]


def tensor(pixels: np.ndarray):
    import torch

    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)


# --- the choice ------------------------------------------------------------------------------------


def test_a_judge_that_prefers_brighter_fills_keeps_the_brightest_candidate(baseline, brightness_judge,
                                                                           reversed_judge):
    registered_judge("brightness", brightness_judge)
    brighter = load_backend("rerank", reranking("Best of 4", generator="CPU baseline", candidates=4,
                                                reward_model="brightness").settings)
    darker = load_backend("rerank", reranking("Worst of 4", generator="CPU baseline", candidates=4,
                                              judge=str(reversed_judge)).settings)
    requests = [request(seed) for seed in (0, 1, 2)]
    kept_bright = brighter.generate_recorded(requests)  # several requests in one call
    kept_dark = darker.generate_recorded(requests)
    mask = np.asarray(box_mask())

    for req, bright, dark in zip(requests, kept_bright, kept_dark):
        seeds, images = inner_images(req, 4)
        levels = [brightness(image, mask) for image in images]
        order = sorted(range(4), key=lambda k: -levels[k])
        assert levels[order[0]] - levels[order[1]] > 0.03, "the candidates must differ visibly for this check"

        record = bright.record
        assert [c["seed"] for c in record["candidates"]] == seeds
        assert record["kept"] == order[0] and record["kept_seed"] == seeds[order[0]]
        assert np.array_equal(np.asarray(bright.image.convert("RGB")), images[order[0]])
        assert record["generator"] == "CPU baseline" and record["reward_model"] == "brightness"
        assert record["judge"] == str(brightness_judge)

        # The judge that prefers darker fills: every score mirrored, another candidate kept.
        assert dark.record["kept"] != order[0]
        scores = [c["score"] for c in record["candidates"]]
        assert [c["score"] for c in dark.record["candidates"]] == pytest.approx([1 - s for s in scores], abs=1e-5)
        assert dark.record["kept"] == min(range(4), key=lambda k: scores[k])
        assert np.array_equal(np.asarray(dark.image.convert("RGB")), images[dark.record["kept"]])


def test_the_kept_candidate_is_the_best_of_an_independent_weighted_round_robin(baseline, brightness_judge):
    weights = {"aesthetics": 3.0, "consistency": 1.0}
    generator = reranking("Best of 3", generator="CPU baseline", candidates=3, judge=str(brightness_judge),
                          weights={"image_fill": weights})
    req = request(3)
    made = load_backend("rerank", generator.settings).generate_recorded([req])[0]

    judge = Judge.from_pretrained(str(brightness_judge), device="cpu")
    seeds, images = inner_images(req, 3)
    tensors = [tensor(image) for image in images]
    p = {}  # P(Yes | first = i, second = j) renormalised, one judge call per ordered pair
    for dimension in weights:
        query = build_query(taxonomy(), "image_fill", dimension, PROMPT)
        p[dimension] = {(i, j): float(judge.score([tensors[i]], [tensors[j]], [query])["p_yes_renormalised"][0])
                        for i in range(3) for j in range(3) if i != j}
    total = sum(weights.values())
    expected = []
    for i in range(3):
        score = 0.0
        for dimension, weight in weights.items():
            wins = [(p[dimension][i, j] + 1 - p[dimension][j, i]) / 2 for j in range(3) if j != i]
            score += weight / total * sum(wins) / len(wins)
        expected.append(score)
    best = int(np.argmax(expected))
    assert sorted(expected)[-1] - sorted(expected)[-2] > 1e-3, "the round robin must have a clear winner"

    record = made.record
    assert record["weights"] == {"aesthetics": 0.75, "consistency": 0.25}
    assert [c["score"] for c in record["candidates"]] == pytest.approx(expected, abs=1e-4)
    assert record["kept"] == best and record["kept_seed"] == seeds[best]
    assert np.array_equal(np.asarray(made.image.convert("RGB")), images[best])
    for dimension in weights:
        matrix = record["p_yes"][dimension]
        assert [matrix[i][i] for i in range(3)] == [None] * 3
        assert {(i, j): matrix[i][j] for i in range(3) for j in range(3) if i != j} == pytest.approx(
            p[dimension], abs=1e-4)
        per_dimension = [c["dimensions"][dimension] for c in record["candidates"]]
        assert per_dimension == pytest.approx(
            [sum((p[dimension][i, j] + 1 - p[dimension][j, i]) / 2 for j in range(3) if j != i) / 2
             for i in range(3)], abs=1e-4)


def test_the_dimensions_judged_follow_the_input_prompt(baseline, brightness_judge):
    backend = load_backend("rerank", reranking("Best of 2", generator="CPU baseline", candidates=2,
                                               judge=str(brightness_judge)).settings)
    without, given, inferred = backend.generate_recorded([
        request(3, task="image_extend", prompt="high-definition, perfect composition", prompt_given=False),
        request(3, task="image_extend", prompt="a launch pad at night", prompt_given=True),
        # A caller that does not say: the task's default prompt is no prompt of the user's.
        request(3, task="image_extend", prompt="high-definition, perfect composition", prompt_given=None),
    ])
    third, quarter = pytest.approx(1 / 3), pytest.approx(1 / 4)
    assert without.record["weights"] == {"consistency": third, "structure": third, "aesthetics": third}
    assert inferred.record["weights"] == without.record["weights"]
    assert given.record["weights"] == {"text_alignment": quarter, "consistency": quarter, "structure": quarter,
                                       "aesthetics": quarter}
    assert set(given.record["p_yes"]) == set(given.record["weights"])


# --- the settings ----------------------------------------------------------------------------------


@pytest.fixture
def judge_dir(tmp_path):
    from rewardmodel.core.demo_judge import save_tiny_qwen

    return save_tiny_qwen(tmp_path / "judge", seed=0)


BAD_SETTINGS = [
    ({"generator": "FLUX Fill 12B"}, "no such generator"),
    ({"candidates": 1}, "candidates: M must be a whole number from 2"),
    ({"weights": {"object_removal": {"aesthetics": 1.0}}}, "task &#x27;object_removal&#x27; is not judged on"),
    ({"weights": {"image_fill": {"colourfulness": 1.0}}}, "is not judged on &#x27;colourfulness&#x27;"),
    ({"weights": {"image_extend": {"text_alignment": 1.0, "aesthetics": 0}}}, "nothing to be judged on"),
    ({"weights": {"image_fill": {"aesthetics": -1}}}, "must be a number &gt;= 0"),
    ({"judge": "/nowhere/judge"}, "no such directory"),
    ({"judge": "", "reward_model": "judge-404"}, "no such reward model version"),
    ({"reward_model": "judge-1"}, "give exactly one of judge"),
    ({"fast": True}, "unknown setting &#x27;fast&#x27;"),
]


@pytest.mark.parametrize("change, message", BAD_SETTINGS)
def test_the_admin_refuses_bad_reranking_settings(client, make_user, baseline, judge_dir, change, message):
    import json

    registered_judge("judge-1", judge_dir)
    settings = {"generator": "CPU baseline", "candidates": 4, "judge": str(judge_dir), **change}
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/generation/generator/add/", {"name": "reranked", "backend": "rerank",
                                                                "settings": json.dumps(settings), "active": "on"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Generator.objects.filter(name="reranked").exists()


def test_the_api_checks_reranking_settings_against_the_records(make_user, baseline, judge_dir, tmp_path):
    client = APIClient()
    client.force_authenticate(make_user("boss", "admin"))
    registered_judge("judge-1", judge_dir)
    registered_judge("judge-gone", tmp_path / "deleted")
    stale = tmp_path / "old-template"
    stale.mkdir()
    (stale / "judge.json").write_text('{"template_version": 0}')

    def post(name, **settings):
        body = {"name": name, "backend": "rerank", "settings": settings}
        return client.post("/api/generators/", body, format="json")

    response = post("gone", generator="CPU baseline", reward_model="judge-gone")
    assert response.status_code == 400 and "its judge" in str(response.json()) and "no such directory" in str(
        response.json())
    response = post("stale", generator="CPU baseline", judge=str(stale))
    assert response.status_code == 400 and "query template version 0" in str(response.json())

    response = post("Best of 4", generator="CPU baseline", reward_model="judge-1",
                    weights={"image_fill": {"aesthetics": 2, "consistency": 1}})
    assert response.status_code == 201, response.json()
    assert response.json()["settings"] == {
        "generator": "CPU baseline", "candidates": 4, "judge": "", "reward_model": "judge-1",
        "weights": {"image_fill": {"aesthetics": 2.0, "consistency": 1.0}}, "device": "auto", "dtype": "auto",
        "batch_size": 16}
    # A reranking generator is not wrapped again: more candidates are the way to a stricter pick.
    response = post("Best of best", generator="Best of 4", judge=str(judge_dir))
    assert response.status_code == 400 and "reranks already" in str(response.json())


# --- a worker's loaded reranker -----------------------------------------------------------------------


def test_a_worker_loads_the_reranker_again_when_the_generator_it_wraps_or_its_judge_is_edited(baseline, judge_dir,
                                                                                            tmp_path):
    import shutil

    from generation.core.backends.cpu_baseline import METHODS
    from generation.execution import backend_for

    version = registered_judge("judge-1", judge_dir)
    generator = reranking("best of 2", generator="CPU baseline", candidates=2, reward_model="judge-1", device="cpu")
    first = backend_for(generator)
    assert first.generator.config.methods == METHODS and first.about["judge"] == str(judge_dir)
    assert backend_for(Generator.objects.get(pk=generator.pk)) is first  # kept while nothing changes

    baseline.settings = {"methods": ["patch"]}
    baseline.full_clean()
    baseline.save()
    second = backend_for(Generator.objects.get(pk=generator.pk))
    assert second is not first and second.generator.config.methods == ("patch",)
    # What it paints now is the edited generator's: the patch fill for every inner seed.
    req = request(seed=5)
    expected = load_backend("cpu_baseline", {"methods": ["patch"]}).generate(second.inner_requests(req))
    assert any(np.array_equal(np.asarray(second.generate([req])[0]), np.asarray(image)) for image in expected)

    moved = shutil.copytree(judge_dir, tmp_path / "judge-moved")
    RewardModelVersion.objects.filter(pk=version.pk).update(model_path=str(moved))
    third = backend_for(Generator.objects.get(pk=generator.pk))
    assert third is not second and third.about["judge"] == str(moved)


# --- on S3 --------------------------------------------------------------------------------------------------


def test_a_reranking_batch_stores_its_kept_candidates_and_scores_in_s3(s3_settings, baseline, judge_dir):
    import io

    from PIL import Image

    from generation.execution import requests_for, run_batch_here
    from generation.models import CandidateSet, GenerationBatch
    from tests.annotation.world import make_inputs
    from tests.conftest import stored_files

    generator = reranking("best of 3 on s3", generator="CPU baseline", candidates=3, judge=str(judge_dir),
                          device="cpu")
    inputs = make_inputs(2)  # their files go to the bucket, and are read from it to generate
    assert all(item.source.name in s3_settings.keys("inputs/") for item in inputs)
    batch = GenerationBatch.launch(generator=generator, inputs=inputs, candidates_per_input=2, seed=4)
    run_batch_here(batch)
    batch.refresh_from_db()
    assert (batch.status, batch.progress_done, batch.progress_failed) == ("done", 2, 0), batch.error
    wrapped = load_backend("cpu_baseline", {})
    candidates = [c for s in CandidateSet.objects.filter(batch=batch) for c in s.candidates.all()]
    assert len(candidates) == 4
    assert s3_settings.keys("candidates/") == sorted(n for c in candidates for n in (c.image.name, c.thumbnail.name))
    for candidate in candidates:
        record = candidate.settings["record"]
        assert len(record["candidates"]) == 3 and record["kept_seed"] == record["candidates"][record["kept"]]["seed"]
        request = requests_for(candidate.candidate_set, [candidate.index])[0]
        request.settings = CandidateSettings.from_dict({**request.settings.as_dict(), "seed": record["kept_seed"]})
        again = np.asarray(wrapped.generate([request])[0].convert("RGB"))
        stored = np.asarray(Image.open(io.BytesIO(s3_settings.read(candidate.image.name))).convert("RGB"))
        assert np.array_equal(again, stored)
    assert stored_files() == []
