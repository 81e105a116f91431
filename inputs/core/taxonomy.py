"""The taxonomy's rules over plain values: which prompt an input keeps (and how long it may be), which
prompt its results are generated and judged with, and which dimensions they are judged on.

The models (inputs.models), the taxonomy exported in every preference dataset manifest and the ML
core that reads that manifest with no database (the reward query) all apply these functions, so the
rules cannot drift apart. The manifest's shape, per task:
{"name", "description", "default_prompt", "prompt_mode", "rl_probability",
 "dimensions": [slug, ...] (in order), "dimensions_with_prompt_only": [slug, ...]}.
"""
from collections.abc import Collection, Iterable, Sequence
from typing import TypeVar

REQUIRED, OPTIONAL, FIXED = "required", "optional", "fixed"
PROMPT_MODES = (REQUIRED, OPTIONAL, FIXED)

T = TypeVar("T")


class PromptMissing(ValueError):
    """A task that needs the user's prompt got none."""


class PromptTooLong(ValueError):
    """A prompt over the platform's length limit; the message says both lengths and the setting."""


def check_prompt_length(prompt: str, max_chars: int) -> None:
    """Refuse a prompt of more than `max_chars` characters, counted as given (before stripping): the
    generator's text encoders read a few hundred tokens, and every stored copy costs space."""
    length = len(prompt or "")
    if length > max_chars:
        raise PromptTooLong(f"prompt is {length:,} characters long, over the limit of {max_chars:,} "
                            "(ONEREWARD_MAX_PROMPT_CHARS)")


def input_prompt(prompt_mode: str, prompt: str) -> str:
    """The prompt an input stores: the user's, stripped. A fixed-prompt task stores none, since its
    default applies whatever was given and a user prompt would only split duplicates. Raises
    PromptMissing when the task requires a prompt and it is empty."""
    prompt = (prompt or "").strip()
    if prompt_mode == REQUIRED and not prompt:
        raise PromptMissing("the task needs a prompt and none was given")
    return "" if prompt_mode == FIXED else prompt


def effective_prompt(prompt_mode: str, default_prompt: str, prompt: str) -> str:
    """The prompt the generator and the reward query see: a fixed-prompt task always its default;
    otherwise the user's prompt, or the default when the user gave none."""
    default = (default_prompt or "").strip()
    if prompt_mode == FIXED:
        return default
    return (prompt or "").strip() or default


def prompt_given(prompt: str) -> bool:
    """Whether the user gave a prompt of their own (what prompt-only dimensions depend on)."""
    return bool((prompt or "").strip())


def judged_dimensions(dimensions: Iterable[T], prompt_only: Collection[T], given: bool) -> list[T]:
    """The dimensions judged, in the given order: those in `prompt_only` only when a prompt was given."""
    return [d for d in dimensions if given or d not in prompt_only]


def task_entry(*, name: str, description: str, default_prompt: str, prompt_mode: str, rl_probability: float,
               dimensions: Sequence[tuple[str, bool]]) -> dict:
    """One task as the manifest holds it; dimensions: (slug, only_with_prompt) in judging order."""
    return {"name": name, "description": description, "default_prompt": default_prompt, "prompt_mode": prompt_mode,
            "rl_probability": rl_probability, "dimensions": [slug for slug, _ in dimensions],
            "dimensions_with_prompt_only": [slug for slug, only in dimensions if only]}


def entry_judged_dimensions(entry: dict, prompt: str) -> list[str]:
    """The dimension slugs a manifest task entry judges for an input with this user prompt."""
    return judged_dimensions(entry["dimensions"], set(entry.get("dimensions_with_prompt_only") or ()),
                             prompt_given(prompt))


def entry_effective_prompt(entry: dict, prompt: str) -> str:
    """effective_prompt for a manifest task entry."""
    return effective_prompt(entry.get("prompt_mode"), entry.get("default_prompt"), prompt)
