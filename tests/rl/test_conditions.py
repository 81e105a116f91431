"""The condition pool: reading a conditions directory, the dimensions and prompt of an input, and
multi-task sampling. No models, no database."""
import json
from collections import Counter

import numpy as np
import pytest

from rl.core.conditions import ConditionPool, ConditionsError, write_conditions

from . import box_mask, canvas, default_inputs, rl_taxonomy, write_default_conditions


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> ConditionPool:
    return ConditionPool(write_default_conditions(tmp_path_factory.mktemp("conditions")))


def test_written_conditions_read_back_grouped_by_task(pool):
    assert [c.id for c in pool.inputs] == ["fill-1", "fill-2", "extend-1", "removal-1"]
    assert {task: [c.id for c in conditions] for task, conditions in pool.by_task.items()} == {
        "image_fill": ["fill-1", "fill-2"], "image_extend": ["extend-1"], "object_removal": ["removal-1"]}
    source, mask = pool.inputs[1].load()
    assert source.mode == "RGB" and mask.mode == "L" and source.size == mask.size == (40, 24)
    np.testing.assert_array_equal(np.asarray(source), default_inputs()[1]["source"])
    manifest = json.loads((pool.directory / "manifest.json").read_text())
    assert manifest["inputs"][0]["source"] == "inputs/fill-1-source.png"  # relative to the directory


def test_dimensions_follow_the_task_and_prompt_only_rule(pool):
    fill, _, extend, removal = pool.inputs
    assert pool.dimensions(fill) == ["text_alignment", "consistency", "structure", "aesthetics"]
    # Image extend judges text alignment only when the input has a prompt of its own.
    assert pool.dimensions(extend) == ["consistency", "structure", "aesthetics"]
    with_prompt = type(extend)(id="x", task="image_extend", prompt="a lake", source=extend.source, mask=extend.mask)
    assert pool.dimensions(with_prompt) == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert pool.dimensions(removal) == ["removal_quality"]


def test_the_generation_prompt_applies_task_defaults(pool):
    fill, _, extend, removal = pool.inputs
    assert pool.prompt(fill) == "a red cup on a wooden table"
    assert pool.prompt(extend) == "high-definition, perfect composition"  # optional prompt, none given
    assert pool.prompt(removal) == "remove"  # fixed prompt


def test_default_probabilities_come_from_the_taxonomy(tmp_path, pool):
    assert pool.probabilities() == pytest.approx({"image_fill": 0.5, "image_extend": 0.25, "object_removal": 0.25})
    # Tasks without inputs are left out and the rest renormalised.
    only_fill = ConditionPool(write_default_conditions(tmp_path / "fill", inputs=default_inputs()[:2]))
    assert only_fill.probabilities() == {"image_fill": 1.0}
    assert pool.probabilities({"image_fill": 3, "object_removal": 1}) == {"image_fill": 0.75, "object_removal": 0.25}


@pytest.mark.parametrize("overrides, message", [
    ({"painting": 1.0}, "unknown task 'painting'"),
    ({"text_rendering": 1.0}, "no input of that task"),
    ({"image_fill": -1}, "non-negative"),
    ({"image_fill": 0}, "no task with inputs has a positive RL probability"),
])
def test_bad_probabilities_are_refused(pool, overrides, message):
    with pytest.raises(ConditionsError, match=message):
        pool.probabilities(overrides)


def test_sampling_is_seeded_and_follows_the_probabilities(pool):
    probabilities = pool.probabilities()
    first = pool.sample(np.random.default_rng(7), probabilities, 50)
    again = pool.sample(np.random.default_rng(7), probabilities, 50)
    assert [c.id for c in first] == [c.id for c in again]
    draws = pool.sample(np.random.default_rng(0), probabilities, 8000)
    tasks = Counter(c.task for c in draws)
    for task, p in probabilities.items():
        assert abs(tasks[task] / len(draws) - p) < 0.02
    fills = Counter(c.id for c in draws if c.task == "image_fill")
    assert abs(fills["fill-1"] / tasks["image_fill"] - 0.5) < 0.03  # uniform within the task's pool


def test_broken_directories_name_the_fault(tmp_path):
    with pytest.raises(ConditionsError, match="cannot read"):
        ConditionPool(tmp_path / "missing")
    bad = rl_taxonomy({"image_fill": {"dimensions": ["sharpness"]}})
    with pytest.raises(ConditionsError, match="'sharpness' is not in taxonomy.dimensions"):
        write_conditions(tmp_path / "bad", bad, default_inputs())
    with pytest.raises(ConditionsError, match="dimensions_with_prompt_only"):
        write_conditions(tmp_path / "bad2", rl_taxonomy(
            {"image_fill": {"dimensions_with_prompt_only": ["removal_quality"]}}), default_inputs())
    directory = write_default_conditions(tmp_path / "ok")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["inputs"][0]["task"] = "painting"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConditionsError, match="task 'painting' is not in the taxonomy"):
        ConditionPool(directory)
    manifest["inputs"][0]["task"] = "image_fill"
    manifest["inputs"][0]["mask"] = "inputs/nothing.png"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConditionsError, match="mask 'inputs/nothing.png' is not a file"):
        ConditionPool(directory)
    with pytest.raises(ConditionsError, match="source is"):
        write_conditions(tmp_path / "sizes", rl_taxonomy(), [{
            "id": "a", "task": "image_fill", "prompt": "x", "source": canvas(32, 32, 0),
            "mask": box_mask(16, 16, (0, 0, 8, 8))}])
