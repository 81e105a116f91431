"""A small world for collection rounds: object-removal inputs (one judged dimension, removal quality),
the CPU baseline generator, and the demo judge with its random weights, whose P(Yes) differs a
little from pair to pair (about 0.567 to 0.572), which is all a ranking needs: the figures of the
strategies are checked here, their meaning on hand-worked numbers (test_strategies.py). What the round
decides is checked against the judge asked here, one ordered pair per call, and the strategies'
formulas written out here (not imported from the code under test)."""
import numpy as np
import torch
from PIL import Image

from generation.models import Generator
from preferences.export import taxonomy
from preferences.models import PreferenceDataset
from rewardmodel.core.query import build_query
from rewardmodel.models import RewardModelRun, RewardModelVersion
from tests.annotation.world import make_inputs

TASK = "object_removal"
# The judge's figures of different sets differ by 1e-5 and more (its random weights barely tell the
# candidates apart); batched and single forwards differ by float rounding, 1e-8 as measured,
# hence the tolerance of the order checks.
TOLERANCE = 1e-6
_judge: dict = {}


def removal_inputs(count: int, first_seed: int = 0):
    return make_inputs(count, task=TASK, first_seed=first_seed)


def baseline() -> Generator:
    generator, _ = Generator.objects.get_or_create(name="CPU baseline",
                                                   defaults={"backend": "cpu_baseline", "settings": {}})
    return generator


def judge_dir(tmp_path_factory):
    """The demo judge (random weights), saved once per session."""
    from rewardmodel.core.demo_judge import save_tiny_qwen

    if "dir" not in _judge:
        _judge["dir"] = save_tiny_qwen(tmp_path_factory.mktemp("round-judge") / "judge", seed=0)
    return _judge["dir"]


def register_judge(path, name: str = "round judge") -> RewardModelVersion:
    dataset, _ = PreferenceDataset.objects.get_or_create(name="prefs", version=1, defaults={"status": "done"})
    return RewardModelVersion.objects.create(run=RewardModelRun.objects.create(dataset=dataset, status="done"),
                                             name=name, model_path=str(path), base_model="tiny", template_version=1)


def pixels(field) -> np.ndarray:
    with field.open("rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def tensor(array: np.ndarray):
    return torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1)


def asked_pair_by_pair(judge, candidate_set) -> dict:
    """{(dimension, i, j): (P(Yes | i first), P(Yes | j first))} for i < j, one call per order."""
    item = candidate_set.input
    images = [tensor(pixels(c.image)) for c in candidate_set.candidates.order_by("index")]
    manifest = taxonomy()
    answers = {}
    for dimension in item.judged_dimensions():
        query = build_query(manifest, item.task.slug, dimension.slug, item.effective_prompt)
        for i in range(len(images)):
            for j in range(i + 1, len(images)):
                forward = float(judge.score([images[i]], [images[j]], [query])["p_yes_renormalised"][0])
                reversed_ = float(judge.score([images[j]], [images[i]], [query])["p_yes_renormalised"][0])
                answers[(dimension.slug, i, j)] = (forward, reversed_)
    return answers


def uncertainty(answers: dict) -> float:
    return float(np.mean([1 - (abs(f - 0.5) + abs(r - 0.5)) for f, r in answers.values()]))


def order_disagreement(answers: dict) -> float:
    return float(np.mean([abs(f - (1 - r)) for f, r in answers.values()]))


def assert_ranked_by(ranked_ids: list, figures: dict) -> None:
    """`ranked_ids` run from the highest figure to the lowest (ties within the tolerance)."""
    values = [figures[key] for key in ranked_ids]
    assert all(a >= b - TOLERANCE for a, b in zip(values, values[1:])), list(zip(ranked_ids, values))
    assert max(values) - min(values) > 20 * TOLERANCE, values  # the order is not decided by rounding
