"""Generic machinery for dataclass configs: field docstrings, YAML files and ``--field value`` overrides.

A config is a plain dataclass whose fields each carry a docstring (a string literal right after the
field, cleanrl style). ``field_docs`` reads those docstrings from the source with ``ast``, so the
same text documents the code, the YAML files and ``--help``.

Layering: dataclass defaults < YAML file < command-line overrides. Values are coerced to the field's
annotated type here; *range* checks live in each config's ``validate()``. Every error is a
``ConfigError`` that names the field and says what is allowed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message starts with the field's name."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> the docstring written after it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # pragma: no cover - source unavailable
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _short(value: Any) -> str:
    """repr() for messages; huge integers (whose repr can itself fail) are summarised."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to type ``tp``, or raise ConfigError."""
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(name, f"must not be empty (expected {getattr(base, '__name__', base)})")
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        allowed = typing.get_args(base)
        if value not in allowed:
            raise ConfigError(name, f"must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(base) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"must be a list, got {value!r}")
        return [coerce(name, v, item_tp) for v in value]
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        try:
            as_float = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(name, f"must be an integer, got {_short(value)}") from None
        if not as_float.is_integer():
            raise ConfigError(name, f"must be an integer, got {value!r}")
        return int(as_float)
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(name, f"must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(name, f"must be a number, got {_short(value)}") from None
    if base is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(name, f"must be a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, values: dict[str, Any], *, source: str = "config") -> Any:
    """Build ``cls`` from a mapping; unknown keys are an error that lists the valid ones."""
    hints = _resolved_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(str(key), f"field names must be strings, got {key!r} ({type(key).__name__}) in {source}")
        name = key.replace("-", "_")
        if name not in names:
            close = [n for n in sorted(names) if name[:4] in n]
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(key, f"unknown field in {source}{hint} (valid fields: {sorted(names)})")
        kwargs[name] = coerce(name, value, hints[name])
        allowed = table_choices(cls).get(name)
        if allowed is not None and kwargs[name] not in allowed:
            raise ConfigError(name, f"must be one of {list(allowed)}, got {kwargs[name]!r}")
    return cls(**kwargs)


def table_choices(cls: type) -> dict[str, dict[str, str]]:
    """Fields whose allowed values come from a registry rather than a ``Literal`` (such as
    ``algorithm``, from the algorithm table): ``{field: {value: one-line description}}``, from the
    class's ``field_choices()`` when it has one."""
    hook = getattr(cls, "field_choices", None)
    return hook() if hook is not None else {}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError("config", f"{path} is not a readable UTF-8 text file ({exc})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of field: value, got {type(data).__name__}")
    return data


def to_yaml(config: Any) -> str:
    """The config as YAML, each field preceded by its docstring as a comment."""
    docs = field_docs(config.__class__)
    lines = []
    for f in dataclasses.fields(config):
        for doc_line in textwrap.wrap(docs.get(f.name, ""), 96):
            lines.append(f"# {doc_line}")
        lines.append(yaml.safe_dump({f.name: getattr(config, f.name)}, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def _flag_values(tp: Any) -> tuple[str, str] | None:
    """(value of the bare flag, value of its ``--no-`` form) for a switch-like field, else None.

    bool fields, and Literal fields offering 'yes' and 'no' (such as ``chat``), are switches.
    """
    if tp is bool:
        return "true", "false"
    if typing.get_origin(tp) is typing.Literal and {"yes", "no"} <= set(typing.get_args(tp)):
        return "yes", "no"
    return None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field value`` (and ``--field-name``) options for every field of ``cls``.

    Switches (bool fields, and yes/no choices) also work as bare flags: ``--resume`` is
    ``--resume true`` and ``--no-resume`` is ``--resume false``. Defaults are suppressed so that
    only what the user typed overrides the YAML file.
    """
    docs = field_docs(cls)
    hints = _resolved_types(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields (also settable in the YAML file)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base, _ = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        choices = ""
        if typing.get_origin(base) is typing.Literal:
            choices = f" One of: {', '.join(map(str, typing.get_args(base)))}."
        table = table_choices(cls).get(f.name)
        if table:
            choices = " One of: " + "; ".join(f"{k} ({v})" for k, v in table.items()) + "."
        help_text = f"{docs.get(f.name, '')}{choices} (default: {default!r})".replace("%", "%%")
        names = {f.name.replace("_", "-"), f.name}
        flags = sorted((f"--{n}" for n in names), key=lambda flag: "_" in flag)
        dest = f"cfg__{f.name}"
        switch = _flag_values(base)
        if switch is None:
            group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, metavar="VALUE", help=help_text)
            continue
        on, off = switch
        group.add_argument(
            *flags,
            dest=dest,
            default=argparse.SUPPRESS,
            nargs="?",
            const=on,
            metavar=on.upper(),
            help=f"{help_text}; the bare flag means {on}",
        )
        negated = sorted({f"--no-{f.name.replace('_', '-')}", f"--no_{f.name}"}, key=lambda flag: "_" in flag)
        group.add_argument(
            *negated,
            dest=dest,
            action="store_const",
            const=off,
            default=argparse.SUPPRESS,
            help=f"same as --{f.name.replace('_', '-')} {off}",
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--field value`` options the user gave, as a dict of raw strings."""
    return {k[len("cfg__") :]: v for k, v in vars(args).items() if k.startswith("cfg__")}
