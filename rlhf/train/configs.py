"""Stage configs from plain values: a config file, the research API's JSON, the command line.

    build_config(RewardConfig, {"data": "train.jsonl", "policy": "models/v3", "out": "runs/rm",
                                "batch-size": 16, "lr": "1e-5"})

Field names may use dashes or underscores. Values are converted to the field's type (paths and
numbers from strings too: YAML reads `1e-5` as a string) and anything else is refused with a
`ConfigError` that names the field and says why, a message fit to show a researcher as it is.
`config_fields` describes the fields (name, type, default, help) for forms and API docs.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot be built; `field` names the offending field (None for a file that
    is no mapping at all) and `message` says why."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def build_config(config_class: type[C], values: Mapping[str, Any]) -> C:
    """A `config_class` from `values` (field name -> value), defaults for the fields left out."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(config_class)
    given: dict[str, Any] = {}
    for name, value in _with_underscores(values).items():
        if name not in fields:
            raise ConfigError(name, _unknown(name, fields))
        try:
            given[name] = _convert(hints[name], value)
        except ValueError as error:
            raise ConfigError(name, str(error)) from None
    for name, field in fields.items():
        if name not in given and _required(field):
            raise ConfigError(name, "required field is missing")
    return config_class(**given)


def config_fields(config_class: type) -> list[dict[str, Any]]:
    """Each field of `config_class` in order: name, type (as `build_config` reads it, e.g.
    "integer", "path or null", "list of paths"), required, default (JSON-ready; None when
    required) and help."""
    hints = typing.get_type_hints(config_class)
    described = []
    for field in dataclasses.fields(config_class):
        required = _required(field)
        default = None if required else _json_ready(_default(field))
        described.append(
            {
                "name": field.name,
                "type": _describe(hints[field.name]),
                "required": required,
                "default": default,
                "help": field.metadata.get("help", ""),
            }
        )
    return described


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping of field names (with underscores) to values in a JSON file (.json) or a YAML
    file (any other name)."""
    path = Path(path)
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(None, f"{path}: not valid {kind}: {error}") from None
    if values is None:  # an empty YAML file
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(
            None, f"{path}: expected a mapping of field names to values, got {_kind(values)}"
        )
    return _with_underscores(values)


def _with_underscores(values: Mapping[Any, Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in named:
            raise ConfigError(name, "given twice (with dashes and with underscores)")
        named[name] = value
    return named


def _convert(kind: Any, value: Any) -> Any:
    """`value` as a `kind`, or ValueError saying what was expected."""
    if isinstance(kind, types.UnionType):  # X | None: the only unions the configs have
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULLS):
            return None
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _convert(inner, value)
    if typing.get_origin(kind) is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a {_describe(kind)}, got {_kind(value)}")
        (inner,) = typing.get_args(kind)
        return [_convert(inner, item) for item in value]
    converter = _CONVERTERS.get(kind)
    if converter is None:
        raise TypeError(f"configs have no fields of type {kind}")
    converted = converter(value)
    if converted is None:
        raise ValueError(f"expected {_article(_describe(kind))}, got {_kind(value)}")
    return converted


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):  # a bool is an int to Python, never to a researcher
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _to_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _to_path(value: Any) -> Path | None:
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return Path(value)
    return None


_NULLS = ("null", "none")  # how the command line says None
_CONVERTERS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str, Path: _to_path}
_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}


def _describe(kind: Any) -> str:
    if isinstance(kind, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return f"{_describe(inner)} or null"
    if typing.get_origin(kind) is list:
        (inner,) = typing.get_args(kind)
        return f"list of {_describe(inner)}s"
    return _NAMES[kind]


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _kind(value: Any) -> str:
    """How a wrong value is shown: itself when short, else its type."""
    shown = repr(value)
    if value is None:
        return "null"
    return shown if len(shown) <= 40 else f"a {type(value).__name__}"


def _unknown(name: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field{hint} (fields: {', '.join(fields)})"


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # paths as strings
