"""Typed dataclass fields: the one source of config values, TOML keys, CLI flags and their help.

A config section is a dataclass. Its type hints convert and check values from TOML files,
``--set`` and checkpoints (:func:`convert`); the ``Attributes:`` section of its docstring is the
help text (:func:`field_help`); :func:`add_flags` turns every field into an ``argparse`` flag
(``train.batch_size`` -> ``--batch-size``; a field's ``metadata={"flag": "out"}`` renames it).
Adding a field to a section therefore adds its TOML key, its flag and its help at once.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Section:
    ...     '''A section.
    ...
    ...     Attributes:
    ...         size: side of a crop, in
    ...             pixels.
    ...     '''
    ...     size: int = 8
    >>> field_help(Section)
    {'size': 'side of a crop, in pixels.'}
    >>> convert("section.size", 12.0, int)
    12
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

__all__ = ["add_flags", "convert", "field_help", "flag_name", "section_hints"]

_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def section_hints(cls: type) -> dict[str, Any]:
    """Return the resolved type hints of a dataclass's fields (not string annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return None


def convert(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint and convert what is safe (TOML 3 -> 3.0 for a float).

    Args:
        name: the field's dotted name, for messages (``train.lr``).
        value: a value read from TOML, ``--set``, a flag or a checkpoint.
        hint: the field's type hint: bool, int, float, str, ``Literal[...]``, ``list[T]``,
            ``dict[str, T]``, ``T | None`` or ``Any``.
    Returns:
        The converted value.
    Raises:
        ValueError: one line naming the field, what it must be and the value.
    """
    if hint is Any:
        return value
    options = _union_args(hint)
    if options is not None:
        if value is None:
            if type(None) not in options:
                raise ValueError(f"{name} must not be empty")
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return convert(name, value, inner)
    if value is None:
        raise ValueError(f"{name} must not be empty")
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name} must be a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [convert(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a table, got {value!r}")
        return dict(value)
    is_bool = isinstance(value, bool)
    if hint is float and isinstance(value, int) and not is_bool:
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, hint) or (hint is not bool and is_bool):
        raise ValueError(f"{name} must be {_DESCRIPTIONS.get(hint, hint)}, got {value!r}")
    return value


def field_help(cls: type) -> dict[str, str]:
    """Read each field's help from the ``Attributes:`` sections of a dataclass and its bases.

    An entry ``lr, lr_final: text`` documents both fields; continuation lines are joined.
    """
    entries: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = klass.__dict__.get("__doc__") or ""
        match = re.search(r"^([ \t]*)Attributes:\n(.*?)(?:\n[ \t]*\n|\Z)", doc, re.S | re.M)
        if not match:
            continue
        names: list[str] = []
        for line in match.group(2).splitlines():
            entry = re.match(r"\s*([\w, ]+?):\s(.*)", line)
            if entry and not line.startswith(match.group(1) + " " * 8):
                names = [n.strip() for n in entry.group(1).split(",")]
                for each in names:
                    entries[each] = entry.group(2).strip()
            elif line.strip():
                for each in names:
                    entries[each] += " " + line.strip()
    return entries


def flag_name(field: dataclasses.Field) -> str:
    """The flag of a field: ``--`` plus its ``metadata["flag"]`` or its name with dashes."""
    return "--" + field.metadata.get("flag", field.name.replace("_", "-"))


def add_flags(
    group: argparse._ActionsContainer, section: str, cls: type, taken: dict[str, Any]
) -> None:
    """Add one flag per field of a dataclass section; ``dest`` is ``"section.key"``.

    Table fields (``dict``) get no flag (``--set section.key.name=value`` sets them). A flag
    absent from the command line is absent from the parsed namespace, so only what the user
    typed overrides the config.

    Args:
        group: a parser or argument group.
        section: the config section (``"train"``).
        cls: its dataclass.
        taken: flags added so far mapped to their type hints; a flag already there with the same
            hint and ``dest`` is shared (two tasks with one option), anything else is an error.
    """
    helps, hints = field_help(cls), section_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        options = _union_args(hint)
        if options is not None:
            hint = next(option for option in options if option is not type(None))
        origin = typing.get_origin(hint)
        if origin is dict:
            continue
        flag, dest = flag_name(field), f"{section}.{field.name}"
        if flag in taken:
            if taken[flag] != (dest, hint):
                raise ValueError(f"flag {flag} of {dest} clashes with {taken[flag][0]}")
            continue
        taken[flag] = (dest, hint)
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs["choices"] = typing.get_args(hint)
        elif origin is list:
            (item,) = typing.get_args(hint)
            kwargs.update(nargs="+", type=item, metavar=item.__name__.upper())
        else:
            kwargs["type"] = hint
            kwargs["metavar"] = hint.__name__.upper()
        text = helps.get(field.name, "")
        group.add_argument(flag, help=f"{text} [{dest}]".replace("%", "%%"), **kwargs)
