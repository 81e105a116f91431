"""What every trainer config shares: the error that names its field, reading a config from a JSON
object, and the type rules of the field annotations.

A trainer's config is a dataclass whose fields carry `metadata={"help": ...}` (the command line's
help, mlcore/cli.py) and whose one `check()` method, called from `__post_init__`, holds every rule.
Standard library only: the web side validates forms with these classes, without torch.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing

# torch/accelerate's mixed precision, plus "auto": bf16 on a CUDA device that has it, else none.
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


class ConfigError(ValueError):
    """A configuration that cannot run. field: the config field at fault (None when the problem is
    not one field's, e.g. an unreadable file); message: why, in the words a form shows next to it.
    errors: every (field, message) found, first one first, so a form can mark all of them."""

    def __init__(self, field: str | None, message: str, errors: list[tuple[str | None, str]] | None = None,
                 summary: str | None = None):
        self.field = field
        self.message = message
        self.errors = list(errors) if errors else [(field, message)]
        # summary: one sentence about several fields, where "field: message" per field would repeat it.
        super().__init__(summary or "; ".join(f"{name}: {text}" if name else text for name, text in self.errors))


class Problems:
    """Collects (field, message) while a config is checked, so one error lists every problem."""

    def __init__(self):
        self.found: list[tuple[str | None, str]] = []

    def add(self, field: str | None, message: str) -> None:
        self.found.append((field, message))

    def __contains__(self, field: str) -> bool:
        return any(name == field for name, _ in self.found)

    def raise_any(self) -> None:
        if self.found:
            field, message = self.found[0]
            raise ConfigError(field, message, self.found)


def help_text(cls, name: str) -> str:
    """The `help` metadata of field `name` of dataclass `cls` ("" when it has none)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("help", "")


def from_dict(cls, values, what: str):
    """An instance of config dataclass `cls` from a JSON object; unknown or missing options are
    errors. what: how the messages name the config ("training", "RL")."""
    if not isinstance(values, dict):
        raise ConfigError(None, f"a {what} config is a JSON object, got {type(values).__name__}")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown {what} option(s): {', '.join(unknown)}; "
                                      f"known options: {', '.join(sorted(known))}")
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if values.get(name) in (None, "", {})]
    if missing:
        raise ConfigError(missing[0], f"missing {what} option(s): {', '.join(missing)}")
    return cls(**values)


def check_types(config, problems: Problems) -> None:
    """Adds a problem for every field whose value does not have its annotated type (int, float,
    str, bool, dict, tuple, list, a dataclass, or a union of them with None). Paths pass as str."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        problem = type_problem(getattr(config, f.name), hints[f.name])
        if problem:
            problems.add(f.name, problem)


def options(hint) -> tuple:
    """The types a field annotation allows: (int, NoneType) for `int | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def type_problem(value, hint) -> str | None:
    allowed = options(hint)
    if value is None:
        return None if type(None) in allowed else "must be set"
    for option in allowed:
        if option is type(None):
            continue
        if option is bool and isinstance(value, bool):
            return None
        if option is int and is_int(value):
            return None
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        if option is str and isinstance(value, (str, os.PathLike)):
            return None
        if option in (dict, tuple, list) and isinstance(value, (dict,) if option is dict else (tuple, list)):
            return None
        if dataclasses.is_dataclass(option) and isinstance(value, (option, dict)):
            return None
    names = " or ".join("null" if option is type(None) else option.__name__ for option in allowed)
    return f"must be {names}, got {value!r}"


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
