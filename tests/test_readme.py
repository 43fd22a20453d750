"""README and docs: the Python example runs, commands stay in the repository, links resolve."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [
    README,
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "src" / "n3net" / "models" / "weights").glob("*.md")),
    ROOT / "src" / "n3net" / "assets" / "README.md",
]
# Words about how the project is made, not about the software.
_DEVELOPMENT_WORDS = re.compile(r"\bsessions?\b|\bissue\s*#?\d+|\bhelpers?\b|\bagents?\b", re.I)
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.slow
def test_readme_python_example_runs() -> None:
    blocks = _blocks(README.read_text(), "python")
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_readme_is_at_most_150_lines() -> None:
    assert len(README.read_text().splitlines()) <= 150


def test_ci_runs_the_readme_test_command() -> None:
    """The README's second set-up command is what `.ci/run` does: dev extras, then pytest."""
    setup = _blocks(README.read_text().split("## Set-up", 1)[1], "bash")[:2]
    assert len(setup) == 2, "the set-up section has two commands"
    assert setup[1].rstrip().endswith('pip install -e ".[dev]" && python -m pytest -q')
    ci = (ROOT / ".ci" / "run").read_text()
    assert '-e ".[dev]"' in ci and "python -m pytest -q" in ci


def test_readme_main_command_writes_to_an_ignored_folder() -> None:
    first = _blocks(README.read_text().split("## Set-up", 1)[1], "bash")[0]
    output = re.search(r"-o (\S+)", first)
    assert output, "the first set-up command names its output"
    folder = output.group(1).split("/")[0]
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"/{folder}/" in ignored, f"{folder}/ is not git-ignored"


@pytest.mark.parametrize("path", DOCS, ids=_doc_id)
def test_doc_commands_stay_in_the_repository(path: Path) -> None:
    for block in _blocks(path.read_text(), "bash"):
        assert "../" not in block, f"{_doc_id(path)}: a command refers outside the repository"


@pytest.mark.parametrize("path", DOCS, ids=_doc_id)
def test_doc_speaks_of_the_software_only(path: Path) -> None:
    found = _DEVELOPMENT_WORDS.findall(path.read_text())
    assert not found, f"{_doc_id(path)}: {found}"


@pytest.mark.parametrize("path", DOCS, ids=_doc_id)
def test_doc_links_resolve(path: Path) -> None:
    for target in _LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        assert (path.parent / target).exists(), f"{_doc_id(path)}: broken link {target}"
