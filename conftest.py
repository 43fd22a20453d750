"""Doctest collection for ``src/n3net`` (``--doctest-modules``, see pyproject.toml).

A module that imports an optional extra at module level (``n3net[eval]``, ``n3net[train]``) cannot
be imported where that extra is not installed; it is left out of doctest collection there instead
of failing it. Any other import error still fails collection.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

_SRC = Path(__file__).resolve().parent / "src"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or _SRC not in collection_path.parents:
        return None
    parts = collection_path.relative_to(_SRC).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] != parts[0]:
            return True  # a package outside n3net (an optional extra) is missing
    return None
