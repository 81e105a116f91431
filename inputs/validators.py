"""Field validators shared by the admin forms and the API serializers (DRF runs Django's validators
and reports their errors on the field)."""
from django.core.exceptions import ValidationError

from .importing import prompt_problem


def validate_prompt_length(value: str) -> None:
    """A prompt, or an import's default prompt, within ONEREWARD_MAX_PROMPT_CHARS."""
    problem = prompt_problem(value)
    if problem:
        raise ValidationError(problem, code="prompt_too_long")
