"""One command-line parser for every trainer, built from its config dataclass (TRL's TrlParser,
on the standard library): `--config FILE.json` gives fields, and each field has an option that
overrides it.

For a field `learning_rate` the option is `--learning-rate`, plus the names in
`metadata["flags"]` (e.g. `--lr`); its help is `metadata["help"]`. By the field's annotation:
- int, float, str: the text, converted; `null` sets an optional field to None;
- bool: `--name` sets it, `--no-name` clears it;
- dict, tuple, list: JSON (`--t-range "[0.5, 0.7]"`), or for a tuple/list comma-separated items;
- a nested config dataclass: a JSON object, and `--field.sub` per field of it (`--rollout.steps 4`);
- `metadata["const"]`: {flag: value} switches that set the field to a fixed value.

The config file is read first, the options override it, then the dataclass checks the whole: a
bad value is a ConfigError naming its field. Standard library only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError, options
from .failures import cause_of
from .rundir import RunDirectory

NULL = ("null", "none")


def build_parser(config_class, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser with --config and one option (or switch pair) per field of config_class.
    Options left out are absent from the parsed namespace (argparse.SUPPRESS), so that only what
    was given overrides the file."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE.json",
                        help=f"JSON object of {config_class.__name__} fields; the options below override it")
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        _add_field(parser, f, hints[f.name], prefix="")
    return parser


def parse_config(config_class, argv=None, prog: str | None = None, description: str | None = None):
    """config_class built from argv (sys.argv[1:] when None): the --config file's fields, then the
    options. Raises ConfigError (with .field) for an unreadable file or a bad value; argparse
    exits with code 2 on an unknown option, as usual."""
    args = build_parser(config_class, prog, description).parse_args(argv)
    return config_class.from_dict(config_values(config_class, args))


def run_trainer(config_class, train: Callable, report: Callable, argv=None, prog: str | None = None,
                doc: str | None = None) -> int:
    """The main of a trainer's command: logging on, the config read from argv and its inputs
    checked, `train(config)` run and `report(result)` shown. Exit code 2 on a bad config (before or
    during training, the message on stderr), 0 when training ended; other failures propagate (1).
    A failure during training leaves its cause in the run directory's failure.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(config_class, argv, prog=prog, description=(doc or "").split("\n\n")[0] or None)
        config.check_inputs()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(config)
    except ConfigError as exc:
        RunDirectory(config.output_dir).write_failure(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # The cause goes where the run's page reads it first; the traceback stays in the log.
        RunDirectory(config.output_dir).write_failure(cause_of(exc))
        raise
    report(result)
    return 0


def config_values(config_class, args: argparse.Namespace) -> dict:
    """The field values of a parsed namespace: the --config file's, overridden by the options."""
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    hints = typing.get_type_hints(config_class)
    for dest, raw in vars(args).items():
        if dest == "config":
            continue
        name, _, sub = dest.partition(".")
        if not sub:
            values[name] = _convert(name, raw, hints[name])
            continue
        nested = _dataclass_of(hints[name])
        current = values.get(name)
        merged = dataclasses.asdict(current) if dataclasses.is_dataclass(current) else dict(current or {})
        merged[sub] = _convert(dest, raw, typing.get_type_hints(nested)[sub])
        values[name] = merged
    return values


def read_config_file(path) -> dict:
    """The JSON object in a --config file; ConfigError when it cannot be read or is not one."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(None, f"cannot read --config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(None, f"--config {path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(None, f"--config {path} must hold a JSON object")
    return values


# --- building the options ---------------------------------------------------------------------------------


class _Const:
    """A switch's value, kept apart from text so that it is not converted."""

    def __init__(self, value):
        self.value = value


def _add_field(parser, f: dataclasses.Field, hint, prefix: str) -> None:
    dest = prefix + f.name
    flag = "--" + dest.replace("_", "-")
    help_text = f.metadata.get("help", "").replace("%", "%%")
    allowed = [option for option in options(hint) if option is not type(None)]
    has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    if allowed == [bool]:
        default = " (the default)"
        parser.add_argument(flag, *f.metadata.get("flags", []), dest=dest, action="store_const", const=_Const(True),
                            default=argparse.SUPPRESS, help=help_text + (default if f.default is True else ""))
        parser.add_argument("--no-" + flag[2:], dest=dest, action="store_const", const=_Const(False),
                            default=argparse.SUPPRESS, help=f"unset {flag}" + (default if f.default is False else ""))
    else:
        if has_default and f.default is not dataclasses.MISSING:
            help_text += f" (default: {_shown(f.default)})"
        elif not has_default:
            help_text += " (required)"
        parser.add_argument(flag, *f.metadata.get("flags", []), dest=dest, default=argparse.SUPPRESS,
                            metavar=_metavar(allowed), help=help_text)
    for const_flag, value in f.metadata.get("const", {}).items():
        parser.add_argument(const_flag, dest=dest, action="store_const", const=_Const(value),
                            default=argparse.SUPPRESS, help=f"set {f.name} to {_shown(value)}")
    nested = _dataclass_of(hint)
    if nested is not None and not prefix:
        hints = typing.get_type_hints(nested)
        for sub in dataclasses.fields(nested):
            _add_field(parser, sub, hints[sub.name], prefix=f"{f.name}.")


def _dataclass_of(hint):
    return next((option for option in options(hint) if dataclasses.is_dataclass(option)), None)


def _metavar(allowed: list) -> str:
    if not allowed:
        return "VALUE"
    option = allowed[0]
    if dataclasses.is_dataclass(option) or option is dict:
        return "JSON"
    if option in (tuple, list):
        return "LIST"
    return {int: "INT", float: "FLOAT", str: "TEXT"}.get(option, "VALUE")


def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    return str(value)


# --- converting the text ------------------------------------------------------------------------------------


def _convert(name: str, raw, hint):
    if isinstance(raw, _Const):
        return raw.value
    allowed = options(hint)
    text = raw.strip()
    if type(None) in allowed and text.lower() in NULL:
        return None
    kinds = [option for option in allowed if option is not type(None)]
    kind = kinds[0] if kinds else str
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind in (dict, tuple, list) or dataclasses.is_dataclass(kind):
            return _structured(text, kind)
    except ValueError:
        expected = {int: "an integer", float: "a number"}.get(kind, "JSON")
        raise ConfigError(name, f"--{name.replace('_', '-')} {raw!r} is not {expected}") from None
    return text


def _structured(text: str, kind):
    try:
        return json.loads(text)
    except ValueError:
        if kind not in (tuple, list) or "," not in text:
            raise
    items = []
    for item in text.split(","):
        try:
            items.append(json.loads(item))
        except ValueError:
            items.append(item.strip())
    return items
