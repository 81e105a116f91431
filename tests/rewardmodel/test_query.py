"""The reward query is worded from the taxonomy (data) and quotes the prompt only where the
dimension says so."""
import pytest

from inputs import taxonomy_seed
from rewardmodel.core.query import TEMPLATE_VERSION, build_query


def seeded_taxonomy() -> dict:
    """The taxonomy the platform starts with, in the shape of a preference dataset manifest."""
    return {
        "tasks": {
            spec["slug"]: {"name": spec["name"], "description": spec["description"],
                           "default_prompt": spec["default_prompt"], "prompt_mode": spec["prompt_mode"]}
            for spec in taxonomy_seed.TASKS
        },
        "dimensions": {
            slug: {"name": name, "definition": definition, "uses_prompt": slug in taxonomy_seed.QUERY_WITH_PROMPT}
            for slug, name, definition in taxonomy_seed.DIMENSIONS
        },
    }


def test_template_version_is_an_integer():
    assert isinstance(TEMPLATE_VERSION, int) and TEMPLATE_VERSION >= 1


@pytest.mark.parametrize("task", [spec["slug"] for spec in taxonomy_seed.TASKS])
def test_every_seeded_task_and_dimension_is_worded_from_the_taxonomy(task):
    taxonomy = seeded_taxonomy()
    spec = next(s for s in taxonomy_seed.TASKS if s["slug"] == task)
    for dimension, _ in spec["dimensions"]:
        query = build_query(taxonomy, task, dimension, "a red cup on a wooden table")
        task_spec, dimension_spec = taxonomy["tasks"][task], taxonomy["dimensions"][dimension]
        assert task_spec["name"] in query
        assert task_spec["description"] in query
        assert dimension_spec["name"] in query
        assert dimension_spec["definition"] in query
        assert "first image better than the second image" in query
        assert query.endswith("Answer Yes or No.")


def test_prompt_is_quoted_only_for_dimensions_that_use_it():
    taxonomy = seeded_taxonomy()
    prompt = "a sign that says OPEN in neon letters"
    assert f'"{prompt}"' in build_query(taxonomy, "image_fill", "text_alignment", prompt)
    assert f'"{prompt}"' in build_query(taxonomy, "text_rendering", "text_rendering", prompt)
    for dimension in ("consistency", "structure", "aesthetics"):
        query = build_query(taxonomy, "image_fill", dimension, prompt)
        assert prompt not in query and "Prompt:" not in query


def test_the_task_prompt_rules_decide_which_prompt_is_quoted():
    taxonomy = seeded_taxonomy()
    taxonomy["dimensions"]["removal_quality"]["uses_prompt"] = True  # data, not code
    # A fixed-prompt task always shows its default prompt, whatever the row carries.
    assert '"remove"' in build_query(taxonomy, "object_removal", "removal_quality", "something else")
    # An optional prompt falls back to the task's default prompt.
    assert '"high-definition, perfect composition"' in build_query(taxonomy, "image_extend", "text_alignment", "  ")
    assert '"a castle"' in build_query(taxonomy, "image_extend", "text_alignment", "a castle")
    with pytest.raises(ValueError, match="no prompt"):
        build_query(taxonomy, "image_fill", "text_alignment", "")


def test_unknown_task_or_dimension_is_a_clear_key_error():
    taxonomy = seeded_taxonomy()
    with pytest.raises(KeyError, match="unknown task 'sketch_fill'"):
        build_query(taxonomy, "sketch_fill", "aesthetics", "")
    with pytest.raises(KeyError, match="unknown dimension 'sharpness'.*aesthetics"):
        build_query(taxonomy, "image_fill", "sharpness", "")


def test_a_new_task_and_dimension_need_no_code():
    taxonomy = {
        "tasks": {"sketch_fill": {"name": "Sketch fill", "description": "Fill the mask following a sketch",
                                  "default_prompt": "", "prompt_mode": "required"}},
        "dimensions": {"sketch_fidelity": {"name": "Sketch fidelity", "definition": "Follows the strokes",
                                           "uses_prompt": True}},
    }
    query = build_query(taxonomy, "sketch_fill", "sketch_fidelity", "a kite")
    assert query.splitlines() == [
        "You compare two results of the same image editing task.",
        "Task: Sketch fill. Fill the mask following a sketch.",
        'Prompt: "a kite"',
        "Dimension: Sketch fidelity. Follows the strokes.",
        "Judge only this dimension. Is the first image better than the second image on sketch fidelity? "
        "Answer Yes or No.",
    ]


def test_the_query_does_not_depend_on_anything_but_its_arguments():
    taxonomy = seeded_taxonomy()
    assert build_query(taxonomy, "image_fill", "aesthetics", "x") == build_query(
        taxonomy, "image_fill", "aesthetics", "y"
    )
