"""The taxonomy the platform starts with (METHOD.md §1). Seeded once by a data migration; after
that it is data, edited in the admin. Kept in its own module so the migration and tests share it."""

DIMENSIONS = [
    # slug, name, definition; the reward query quotes the prompt for the slugs in QUERY_WITH_PROMPT
    ("text_alignment", "Text alignment",
     "The generated content matches the prompt: the object, its attributes, its position, and any spelled text."),
    ("consistency", "Consistency",
     "The edit blends with its surroundings in colour, texture and light; no visible seam at the mask border."),
    ("structure", "Structure",
     "Geometry and layout agree with the rest of the image: contours, perspective and scene logic are right."),
    ("aesthetics", "Aesthetics",
     "Overall visual appeal: composition, realism and image quality."),
    ("removal_quality", "Removal quality",
     "The object is fully gone, the hole is filled cleanly, and nothing new appears in its place."),
    ("text_rendering", "Text rendering",
     "The requested words are spelled exactly, legible, and drawn in a style that fits the scene."),
]

QUERY_WITH_PROMPT = {"text_alignment", "text_rendering"}

EXTEND_DEFAULT_PROMPT = "high-definition, perfect composition"
REMOVAL_PROMPT = "remove"

TASKS = [
    {
        "slug": "image_fill", "name": "Image fill", "order": 1, "input_kind": "masked",
        "prompt_mode": "required", "default_prompt": "", "rl_probability": 0.5,
        "description": "Inpainting: generate the masked area from the prompt.",
        "dimensions": [("text_alignment", False), ("consistency", False), ("structure", False), ("aesthetics", False)],
    },
    {
        "slug": "image_extend", "name": "Image extend", "order": 2, "input_kind": "canvas",
        "prompt_mode": "optional", "default_prompt": EXTEND_DEFAULT_PROMPT, "rl_probability": 0.25,
        "description": "Outpainting: the source sits on a larger canvas and the new border is generated, "
                       "with or without a prompt.",
        # Text alignment is judged only when the user gave a prompt.
        "dimensions": [("text_alignment", True), ("consistency", False), ("structure", False), ("aesthetics", False)],
    },
    {
        "slug": "object_removal", "name": "Object removal", "order": 3, "input_kind": "masked",
        "prompt_mode": "fixed", "default_prompt": REMOVAL_PROMPT, "rl_probability": 0.25,
        "description": "Remove the masked object and fill the hole with plausible background.",
        "dimensions": [("removal_quality", False)],
    },
    {
        "slug": "text_rendering", "name": "Text rendering", "order": 4, "input_kind": "masked",
        "prompt_mode": "required", "default_prompt": "", "rl_probability": 0.0,
        "description": "A fill whose prompt asks for words to be written in the masked area. In the paper "
                       "it is sampled as part of image fill during RL, hence probability 0 here.",
        "dimensions": [("text_rendering", False), ("text_alignment", False), ("consistency", False),
                       ("structure", False), ("aesthetics", False)],
    },
]


def seed(Task, Dimension, TaskDimension) -> None:
    """Create what is missing; never overwrite what an admin has edited."""
    dimensions = {}
    # The early data migration sees a Dimension without this field; a later migration sets it.
    has_query_flag = any(field.name == "query_includes_prompt" for field in Dimension._meta.get_fields())
    for order, (slug, name, definition) in enumerate(DIMENSIONS, start=1):
        defaults = {"name": name, "definition": definition, "order": order}
        if has_query_flag:
            defaults["query_includes_prompt"] = slug in QUERY_WITH_PROMPT
        dimensions[slug], _ = Dimension.objects.get_or_create(slug=slug, defaults=defaults)
    for spec in TASKS:
        fields = {k: v for k, v in spec.items() if k not in {"slug", "dimensions"}}
        task, _ = Task.objects.get_or_create(slug=spec["slug"], defaults=fields)
        for order, (dimension_slug, only_with_prompt) in enumerate(spec["dimensions"], start=1):
            TaskDimension.objects.get_or_create(
                task=task, dimension=dimensions[dimension_slug],
                defaults={"order": order, "only_with_prompt": only_with_prompt},
            )
