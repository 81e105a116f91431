"""What went wrong, in one sentence a person can act on: the first line a run's page shows, above
the trainer's log. Standard library only."""
from __future__ import annotations

from pathlib import Path


class ModelLoadError(Exception):
    """A model could not be loaded from where its config points; the message says what to do."""


def model_load_error(what: str, location: str, error: Exception, instead: str) -> ModelLoadError:
    """The ModelLoadError for `what` (e.g. "the judge model") at `location` that raised `error`;
    `instead` says what else to give (e.g. "use the demo judge")."""
    path = Path(location).expanduser()
    if path.exists():
        why = first_line(error)
    elif location.startswith(("/", ".", "~")) or location.count("/") != 1:
        why = "there is no such directory"
    else:
        why = ("it is not a local directory, and no copy of it is in the model cache (the hub cannot be reached "
               "from here or does not have it)")
    return ModelLoadError(f"{what} {location!r} could not be loaded: {why}; give a local directory or {instead}")


def cause_of(error: BaseException) -> str:
    """One sentence for a trainer's error: its own message for the errors written for people, a
    hint for the common resource failures, else the exception's type and first line."""
    if isinstance(error, ModelLoadError):
        return str(error)
    text = first_line(error)
    if "out of memory" in text.lower():
        return ("the device ran out of memory; lower the per-device batch size, turn gradient checkpointing on, "
                f"or use a smaller model ({text})")
    if isinstance(error, OSError) and getattr(error, "errno", None) == 28:
        return f"the disk is full ({text}); free space where the run writes its output"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else ""
