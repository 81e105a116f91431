"""The judge's win rate of a policy against its base, on cases whose answer is known by hand."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from generation.core.backends.base import CandidateSettings, GenerationRequest
from generation.core.backends.flux_fill import FluxFillBackend
from generation.core.demo_flux import save_tiny_flux_fill, save_tiny_lora
from rewardmodel.core.demo_judge import save_tiny_qwen
from rewardmodel.core.query import build_query
from rl.core.conditions import ConditionPool
from rl.core.evaluate import composite, evaluate_policy
from rl.core.onereward import OneRewardTrainer

from . import base_generator, rl_config, write_default_conditions

REPO = Path(__file__).resolve().parents[2]
ROLLOUT = {"steps": 2, "guidance": 30.0, "true_cfg": 1.0, "negative_prompt": ""}
# Per input of the default conditions: the dimensions judged (extend-1 has no prompt: no text alignment).
DIMENSIONS = {"fill-1": 4, "fill-2": 4, "extend-1": 3, "removal-1": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-evaluate")
    flux = save_tiny_flux_fill(root / "flux")
    judge = save_tiny_qwen(root / "judge", seed=0)
    conditions = write_default_conditions(root / "conditions")
    lora = save_tiny_lora(flux, root / "lora", seed=11)
    return flux, judge, conditions, lora


class BrightnessJudge:
    """Prefers the brighter first image: P(Yes) 0.4 and P(No) 0.1 when the first image's mean is
    higher (renormalised 0.8), else P(Yes) 0.05 and P(No) 0.2 (renormalised 0.2). The raw P(Yes) is
    under 0.5 either way, so only the renormalised reading (the rule of reward-model evaluation)
    tells wins from losses."""

    def query(self, taxonomy, task, dimension, prompt):
        return build_query(taxonomy, task, dimension, prompt)

    def score(self, first, second, queries, both_orders=False, batch_size=16):
        def reading(brighter):
            raw = torch.tensor([0.4 if b else 0.05 for b in brighter])
            return raw, torch.tensor([0.8 if b else 0.2 for b in brighter])

        forward, forward_renormalised = reading([a.mean() > b.mean() for a, b in zip(first, second)])
        reversed_, reversed_renormalised = reading([b.mean() > a.mean() for a, b in zip(first, second)])
        return {"p_yes": forward, "p_yes_renormalised": forward_renormalised, "p_yes_reversed": reversed_,
                "p_yes_reversed_renormalised": reversed_renormalised}


def test_a_policy_equal_to_its_base_wins_exactly_half(world, tmp_path):
    flux, judge, conditions, _ = world
    output = tmp_path / "evaluation.json"
    result = evaluate_policy(
        base_generator(flux),
        base_generator(flux),
        judge,
        conditions,
        samples_per_input=2,
        seed=3,
        rollout=ROLLOUT,
        output=output,
    )
    assert result["inputs"] == 4 and result["samples"] == 8 and result["comparisons"] == 2 * sum(DIMENSIONS.values())
    rows = {(row["task"], row["dimension"]): row for row in result["rows"]}
    assert rows[("image_fill", "text_alignment")]["comparisons"] == 4  # 2 inputs x 2 samples
    assert rows[("image_extend", "consistency")]["comparisons"] == 2
    assert ("image_extend", "text_alignment") not in rows
    assert rows[("object_removal", "removal_quality")]["comparisons"] == 2
    assert rows[("all", "all")]["comparisons"] == 24
    for row in result["rows"]:
        # The same image in both places: P(Yes | a, a) is the same number in both orders, so the
        # policy wins exactly one of the two comparisons (the judge's lean decides which).
        assert row["win_rate"] == 0.5
        assert row["forward_wins"] + row["reversed_wins"] == row["comparisons"]
        assert row["mean_p_yes"] == pytest.approx(row["mean_p_yes_reversed"])
    assert json.loads(output.read_text()) == result


def test_win_rates_count_the_judges_verdicts(world, tmp_path):
    flux, _, conditions, lora = world
    policy = base_generator(flux, loras=[{"path": str(lora), "weight": 1.0}])
    result = evaluate_policy(policy, base_generator(flux), BrightnessJudge(), conditions, samples_per_input=2, seed=0,
                             rollout=ROLLOUT)

    # By hand: generate each sample with each generator, composite, and compare mean brightness.
    pool = ConditionPool(conditions)
    brighter = {}
    generators = {name: FluxFillBackend.from_config(settings) for name, settings in
                  (("policy", policy), ("base", base_generator(flux)))}
    for position, condition in enumerate(pool.inputs):
        image, mask = condition.load()
        wins = 0
        for k in range(2):
            settings = CandidateSettings(seed=position * 2 + k, steps=2, guidance=30.0)
            request = GenerationRequest(image=image, mask=mask, prompt=pool.prompt(condition), task=condition.task,
                                        settings=settings)
            means = {name: composite(backend.generate_arrays([request])[0], image, mask).mean()
                     for name, backend in generators.items()}
            wins += int(means["policy"] > means["base"])
        brighter[condition.id] = wins
    expected_all = sum(wins * DIMENSIONS[i] for i, wins in brighter.items())
    rows = {(row["task"], row["dimension"]): row for row in result["rows"]}
    overall = rows[("all", "all")]
    assert overall["forward_wins"] == overall["reversed_wins"] == expected_all
    assert overall["win_rate"] == pytest.approx(expected_all / 24)
    fill_wins = brighter["fill-1"] + brighter["fill-2"]
    assert rows[("image_fill", "structure")]["forward_wins"] == fill_wins
    assert rows[("image_fill", "structure")]["win_rate"] == pytest.approx(fill_wins / 4)
    assert rows[("object_removal", "removal_quality")]["win_rate"] == pytest.approx(brighter["removal-1"] / 2)
    assert rows[("object_removal", "removal_quality")]["mean_p_yes"] == pytest.approx(
        (0.4 * brighter["removal-1"] + 0.05 * (2 - brighter["removal-1"])) / 2)
    assert rows[("object_removal", "removal_quality")]["mean_p_yes_renormalised"] == pytest.approx(
        (0.8 * brighter["removal-1"] + 0.2 * (2 - brighter["removal-1"])) / 2)
    assert 0 < expected_all < 24  # the case tells wins from losses


def test_composite_keeps_the_source_outside_the_mask():
    from PIL import Image

    source = Image.fromarray(np.full((4, 4, 3), 51, np.uint8))
    mask = Image.fromarray(np.array([[0, 0, 255, 255]] * 4, np.uint8))
    result = composite(np.ones((4, 4, 3), np.float32), source, mask)
    np.testing.assert_allclose(result[:, :2], 0.2)
    np.testing.assert_array_equal(result[:, 2:], 1.0)


def test_training_evaluates_on_the_held_out_inputs(world, tmp_path):
    flux, judge, conditions, _ = world
    held_out = write_default_conditions(tmp_path / "held-out")
    config = rl_config(flux, judge, conditions, tmp_path / "run", max_steps=1, eval_inputs=str(held_out),
                       rollout=ROLLOUT)
    result = OneRewardTrainer(config).train()
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert result["evaluation"] == saved == json.loads((tmp_path / "run" / "result.json").read_text())["evaluation"]
    assert saved["comparisons"] == sum(DIMENSIONS.values())
    assert saved["settings"]["rollout"] == ROLLOUT
    assert json.loads((tmp_path / "run" / "progress.json").read_text())["phase"] == "done"

    # The command line reads the run's result.json for the policy, the base, the judge and the rollout.
    done = subprocess.run([sys.executable, "-m", "rl.core.evaluate", "--policy", str(tmp_path / "run" / "result.json"),
                           "--conditions", str(held_out), "--output", str(tmp_path / "cli.json")],
                          cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "win %" in done.stdout
    cli = json.loads((tmp_path / "cli.json").read_text())["rows"]
    counts = ("task", "dimension", "comparisons", "forward_wins", "reversed_wins", "win_rate")
    assert [[row[k] for k in counts] for row in cli] == [[row[k] for k in counts] for row in saved["rows"]]
    assert [row["mean_p_yes"] for row in cli] == pytest.approx([row["mean_p_yes"] for row in saved["rows"]], rel=1e-4)
    done = subprocess.run([sys.executable, "-m", "rl.core.evaluate", "--policy", str(tmp_path / "nothing.json"),
                           "--conditions", str(held_out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error:" in done.stderr
