"""The reward query: the one place where the question put to the judge is worded.

The paper does not publish its wording (METHOD.md §3), so this is ours. Any change to the text
changes what a trained judge has learned to answer, hence the versions: the wordings are data, one
`QueryTemplate` per version in `TEMPLATES`, and a new wording is a new version, never an edit of an
old one. `TEMPLATE_VERSION` is the one the trainer uses; it is recorded with every trained reward
model, and a judge trained on one version is queried with the same one (ablations ask others on
purpose, rewardmodel/core/ablation.py).

Besides the method's query (two images, the prompt for the dimensions that use it), a template
words two ablation variants: without the prompt, and with the source image shown first, its area
to edit tinted red (`mark_mask` in rewardmodel/core/ablation.py draws it), so that the query says
which image is which.

Tasks and dimensions are data (the taxonomy exported in every preference dataset manifest); nothing
here branches on a particular slug.
"""
from __future__ import annotations

from dataclasses import dataclass

from inputs.core import taxonomy


@dataclass(frozen=True)
class QueryTemplate:
    """One wording of the query. The answer is read as the next token after the assistant turn
    opens, so every question ends by naming the only two answers.

    task_line: {name}, {description}; prompt_line: {prompt}; dimension_line: {name}, {definition};
    question and source_question: {name} (the dimension's name, lower case). source_line introduces
    the source image shown before the two results; source_question replaces the question then.
    """

    version: int
    intro: str
    task_line: str
    prompt_line: str
    dimension_line: str
    question: str
    source_line: str
    source_question: str


TEMPLATES = {
    # The method's wording since the first trained judge; unchanged byte for byte.
    1: QueryTemplate(
        version=1,
        intro="You compare two results of the same image editing task.",
        task_line="Task: {name}. {description}",
        prompt_line='Prompt: "{prompt}"',
        dimension_line="Dimension: {name}. {definition}",
        question=("Judge only this dimension. Is the first image better than the second image on {name}? "
                  "Answer Yes or No."),
        source_line=("The first image is the source image, its area to edit tinted red; the second and third "
                     "images are the two results."),
        source_question=("Judge only this dimension. Is the first result better than the second result on "
                         "{name}? Answer Yes or No."),
    ),
    # An alternative wording, for ablations: the same facts in other words and another order of
    # the question's parts.
    2: QueryTemplate(
        version=2,
        intro="Two edited versions of one picture are shown, made by the same kind of edit.",
        task_line="The edit: {name}. {description}",
        prompt_line='The user asked for: "{prompt}"',
        dimension_line="Criterion: {name}. {definition}",
        question=("Considering {name} alone, is the first picture better than the second picture? "
                  "Reply Yes or No."),
        source_line=("The first picture is the original, with the region to edit tinted red; the second and "
                     "third pictures are the two edited versions."),
        source_question=("Considering {name} alone, is the first edited version better than the second edited "
                         "version? Reply Yes or No."),
    ),
}

TEMPLATE_VERSION = 1


def template(version: int = TEMPLATE_VERSION) -> QueryTemplate:
    """The wording of `version`; ValueError naming the known versions for any other."""
    try:
        return TEMPLATES[int(version)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"unknown query template version {version!r}; the versions are "
                         f"{', '.join(map(str, sorted(TEMPLATES)))}") from None


def effective_prompt(task: dict, prompt: str) -> str:
    """The prompt a task's result is judged against: a fixed-prompt task always uses its default
    prompt; otherwise the user's prompt, or the default one when the user gave none."""
    return taxonomy.entry_effective_prompt(task, prompt)


def build_query(taxonomy: dict, task: str, dimension: str, prompt: str, *, version: int = TEMPLATE_VERSION,
                include_prompt: bool = True, source: bool = False) -> str:
    """The question for the judge: is the FIRST image better than the SECOND on `dimension`?

    taxonomy: {"tasks": {slug: {"name", "description", "default_prompt", "prompt_mode"}},
               "dimensions": {slug: {"name", "definition", "uses_prompt"}}}.
    The prompt is quoted only when the dimension's `uses_prompt` is true (never with
    include_prompt=False). version: the wording (`TEMPLATES`). source=True words the query for
    three images, the marked source first and then the two results. Raises KeyError for a task or
    dimension the taxonomy does not hold, ValueError for an unknown version or when a prompt is
    needed and there is none.
    """
    wording = template(version)
    tasks = taxonomy.get("tasks") or {}
    dimensions = taxonomy.get("dimensions") or {}
    if task not in tasks:
        raise KeyError(f"unknown task {task!r}: the taxonomy has {sorted(tasks)}")
    if dimension not in dimensions:
        raise KeyError(f"unknown dimension {dimension!r}: the taxonomy has {sorted(dimensions)}")
    task_spec, dimension_spec = tasks[task], dimensions[dimension]

    dimension_name = dimension_spec["name"].strip()
    lines = [wording.intro]
    if source:
        lines.append(wording.source_line)
    lines.append(wording.task_line.format(name=task_spec["name"].strip(),
                                          description=_sentence(task_spec.get("description"))))
    if include_prompt and dimension_spec.get("uses_prompt"):
        text = effective_prompt(task_spec, prompt)
        if not text:
            raise ValueError(
                f"dimension {dimension!r} judges the result against the prompt, but task {task!r} "
                "got no prompt and has no default prompt"
            )
        lines.append(wording.prompt_line.format(prompt=text))
    lines.append(wording.dimension_line.format(name=dimension_name,
                                               definition=_sentence(dimension_spec.get("definition"))))
    question = wording.source_question if source else wording.question
    lines.append(question.format(name=dimension_name.lower()))
    return "\n".join(line.strip() for line in lines)


def _sentence(text: str) -> str:
    text = " ".join((text or "").split())
    if text and text[-1] not in ".!?":
        text += "."
    return text
