"""The reward query: the one place where the question put to the judge is worded.

The paper does not publish its wording (METHOD.md §3), so this is ours. Any change to the text
changes what a trained judge has learned to answer, hence the version: bump it with every change
of wording; it is recorded with every trained reward model, and a judge trained on one version
must be queried with the same one.

Tasks and dimensions are data (the taxonomy exported in every preference dataset manifest); nothing
here branches on a particular slug.
"""
from __future__ import annotations

from inputs.core import taxonomy

TEMPLATE_VERSION = 1

# The answer is read as the next token after the assistant turn opens, so the question ends by
# naming the only two answers.
_INTRO = "You compare two results of the same image editing task."
_TASK_LINE = "Task: {name}. {description}"
_PROMPT_LINE = 'Prompt: "{prompt}"'
_DIMENSION_LINE = "Dimension: {name}. {definition}"
_QUESTION = (
    "Judge only this dimension. Is the first image better than the second image on {name}? "
    "Answer Yes or No."
)


def effective_prompt(task: dict, prompt: str) -> str:
    """The prompt a task's result is judged against: a fixed-prompt task always uses its default
    prompt; otherwise the user's prompt, or the default one when the user gave none."""
    return taxonomy.entry_effective_prompt(task, prompt)


def build_query(taxonomy: dict, task: str, dimension: str, prompt: str) -> str:
    """The question for the judge: is the FIRST image better than the SECOND on `dimension`?

    taxonomy: {"tasks": {slug: {"name", "description", "default_prompt", "prompt_mode"}},
               "dimensions": {slug: {"name", "definition", "uses_prompt"}}}.
    The prompt is quoted only when the dimension's `uses_prompt` is true. Raises KeyError for a
    task or dimension the taxonomy does not hold, ValueError when a prompt is needed and there is none.
    """
    tasks = taxonomy.get("tasks") or {}
    dimensions = taxonomy.get("dimensions") or {}
    if task not in tasks:
        raise KeyError(f"unknown task {task!r}: the taxonomy has {sorted(tasks)}")
    if dimension not in dimensions:
        raise KeyError(f"unknown dimension {dimension!r}: the taxonomy has {sorted(dimensions)}")
    task_spec, dimension_spec = tasks[task], dimensions[dimension]

    dimension_name = dimension_spec["name"].strip()
    lines = [
        _INTRO,
        _TASK_LINE.format(name=task_spec["name"].strip(), description=_sentence(task_spec.get("description"))),
    ]
    if dimension_spec.get("uses_prompt"):
        text = effective_prompt(task_spec, prompt)
        if not text:
            raise ValueError(
                f"dimension {dimension!r} judges the result against the prompt, but task {task!r} "
                "got no prompt and has no default prompt"
            )
        lines.append(_PROMPT_LINE.format(prompt=text))
    lines.append(_DIMENSION_LINE.format(name=dimension_name, definition=_sentence(dimension_spec.get("definition"))))
    lines.append(_QUESTION.format(name=dimension_name.lower()))
    return "\n".join(line.strip() for line in lines)


def _sentence(text: str) -> str:
    text = " ".join((text or "").split())
    if text and text[-1] not in ".!?":
        text += "."
    return text
