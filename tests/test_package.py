import tomllib
from pathlib import Path

import n3net


def test_version_matches_pyproject() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with pyproject.open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert n3net.__version__ == version
