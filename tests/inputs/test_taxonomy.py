"""The taxonomy is seeded as METHOD.md §1 says and stays data the admin edits."""
import pytest

from inputs.core import taxonomy
from inputs.models import Dimension, Task, TaskDimension
from inputs.taxonomy_seed import seed

pytestmark = pytest.mark.django_db


def dimension_slugs(task_slug, prompt_given=True):
    return [d.slug for d in Task.objects.get(slug=task_slug).judged_dimensions(prompt_given)]


def test_tasks_and_their_dimensions():
    slugs = list(Task.objects.values_list("slug", flat=True))
    assert slugs == ["image_fill", "image_extend", "object_removal", "text_rendering"]
    assert dimension_slugs("image_fill") == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert dimension_slugs("image_extend") == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert dimension_slugs("image_extend", prompt_given=False) == ["consistency", "structure", "aesthetics"]
    assert dimension_slugs("object_removal") == ["removal_quality"]
    assert "text_rendering" in dimension_slugs("text_rendering")


def test_prompts_and_sampling_probabilities():
    tasks = {t.slug: t for t in Task.objects.all()}
    assert tasks["object_removal"].effective_prompt("ignored") == "remove"
    assert tasks["image_extend"].effective_prompt("") == "high-definition, perfect composition"
    assert tasks["image_extend"].effective_prompt("a beach") == "a beach"
    assert tasks["image_fill"].prompt_mode == "required"
    probabilities = {slug: t.rl_probability for slug, t in tasks.items()}
    assert probabilities == {"image_fill": 0.5, "image_extend": 0.25, "object_removal": 0.25, "text_rendering": 0.0}


def test_every_dimension_has_a_definition():
    assert Dimension.objects.count() == 6
    assert all(len(d.definition) > 30 for d in Dimension.objects.all())


def test_seed_never_overwrites_admin_edits():
    Dimension.objects.filter(slug="aesthetics").update(definition="Edited by an admin.")
    seed(Task, Dimension, TaskDimension)
    assert Dimension.objects.get(slug="aesthetics").definition == "Edited by an admin."
    assert Dimension.objects.count() == 6


def test_admin_edits_a_task_and_adds_a_dimension(client, make_user):
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/inputs/dimension/add/", {
        "slug": "realism", "name": "Realism", "definition": "Looks like a photograph.", "order": 7,
    })
    assert response.status_code == 302, response.content[:2000]
    task = Task.objects.get(slug="object_removal")
    realism = Dimension.objects.get(slug="realism")
    links = list(task.task_dimensions.all())
    data = {
        "slug": task.slug, "name": task.name, "description": task.description, "input_kind": task.input_kind,
        "prompt_mode": task.prompt_mode, "default_prompt": task.default_prompt, "rl_probability": "0.3",
        "order": task.order, "active": "on",
        "task_dimensions-TOTAL_FORMS": str(len(links) + 1), "task_dimensions-INITIAL_FORMS": str(len(links)),
        "task_dimensions-MIN_NUM_FORMS": "0", "task_dimensions-MAX_NUM_FORMS": "1000",
    }
    for i, link in enumerate(links):
        data.update({f"task_dimensions-{i}-id": link.pk, f"task_dimensions-{i}-task": task.pk,
                     f"task_dimensions-{i}-dimension": link.dimension_id, f"task_dimensions-{i}-order": link.order})
    n = len(links)
    data.update({f"task_dimensions-{n}-task": task.pk, f"task_dimensions-{n}-dimension": realism.pk,
                 f"task_dimensions-{n}-order": 2})
    response = client.post(f"/admin/inputs/task/{task.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    task.refresh_from_db()
    assert task.rl_probability == 0.3
    assert [d.slug for d in task.judged_dimensions(prompt_given=False)] == ["removal_quality", "realism"]


def test_fixed_prompt_task_needs_its_prompt():
    from django.core.exceptions import ValidationError

    task = Task(slug="x", name="X", prompt_mode="fixed", default_prompt=" ")
    with pytest.raises(ValidationError, match="needs its default prompt"):
        task.full_clean()


def test_prompt_rules_over_plain_values():
    assert taxonomy.effective_prompt("fixed", "remove", "a cat") == "remove"
    assert taxonomy.effective_prompt("optional", " high-definition ", "  ") == "high-definition"
    assert taxonomy.effective_prompt("optional", "high-definition", " a beach ") == "a beach"
    assert taxonomy.effective_prompt("required", "", "a red car") == "a red car"
    assert taxonomy.input_prompt("fixed", "a cat") == ""  # the fixed prompt applies anyway
    assert taxonomy.input_prompt("optional", "  ") == "" and taxonomy.input_prompt("required", " a car ") == "a car"
    with pytest.raises(taxonomy.PromptMissing):
        taxonomy.input_prompt("required", "  ")
    assert taxonomy.judged_dimensions(["text", "structure", "looks"], {"text"}, False) == ["structure", "looks"]
    assert taxonomy.judged_dimensions(["text", "structure", "looks"], {"text"}, True) == ["text", "structure", "looks"]


def test_the_exported_taxonomy_judges_and_prompts_as_the_models_do():
    from preferences.export import taxonomy as exported
    from rewardmodel.core.query import effective_prompt as query_prompt

    manifest = exported()["tasks"]
    extend = manifest["image_extend"]
    assert extend["dimensions"] == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert extend["dimensions_with_prompt_only"] == ["text_alignment"]
    assert taxonomy.entry_judged_dimensions(extend, " ") == ["consistency", "structure", "aesthetics"]
    assert query_prompt(extend, "") == "high-definition, perfect composition"
    assert query_prompt(manifest["object_removal"], "a cat") == "remove"
    for task in Task.objects.all():
        for prompt in ("", "a lake at dawn"):
            judged = taxonomy.entry_judged_dimensions(manifest[task.slug], prompt)
            assert judged == dimension_slugs(task.slug, bool(prompt))
            assert query_prompt(manifest[task.slug], prompt) == task.effective_prompt(prompt)
