"""Runs the code in README.md and docs/**/*.md, so the documentation cannot drift from the code.

- ```python blocks of one file run in order, in one namespace, in a fresh interpreter (cwd: the repo).
- ```console blocks run each ``$ command`` line with bash (cwd: the repo); the lines after a command are
  expected output: each must appear, in order, within the lines the command printed (stdout + stderr;
  a printed line may be longer, e.g. start with a temporary path), ``...`` matches anything, and a
  line ``[exit N]`` states the expected exit status (default 0).
- Other blocks (```bash, ```toml, ```yaml, ```text) are shown, not run; ```bash is for set-up steps
  that install software, which CI performs itself.
These need the repository's plugins and the docs example installed: run by ``nox -s tests_all`` / ``docs``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)


@dataclass
class Block:
    lang: str
    code: str
    line: int


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


PYTHON_DOCS = [p for p in DOCS if any(b.lang == "python" for b in blocks(p))]
CONSOLE = [(p, b) for p in DOCS for b in blocks(p) if b.lang == "console"]


@pytest.mark.parametrize("path", PYTHON_DOCS, ids=[rel(p) for p in PYTHON_DOCS])
def test_python_blocks_run(path: Path, tmp_path: Path) -> None:
    parts = []
    for block in blocks(path):
        if block.lang == "python":
            parts.append(f"# --- {rel(path)}:{block.line}\n{block.code}")
    script = tmp_path / "doc_blocks.py"
    script.write_text("\n".join(parts))
    out = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, f"{rel(path)}: a python block failed\n{out.stdout}\n{out.stderr}"


def parse_console(code: str) -> list[tuple[str, list[str], int]]:
    steps: list[tuple[str, list[str], int]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], [], 0))
        elif steps:
            command, expected, _status = steps[-1]
            match = re.fullmatch(r"\[exit (\d+)\]", line.strip())
            if match:
                steps[-1] = (command, expected, int(match.group(1)))
            elif line.strip():
                expected.append(line.rstrip())
    return steps


@pytest.mark.parametrize(("path", "block"), CONSOLE, ids=[f"{rel(p)}:{b.line}" for p, b in CONSOLE])
def test_console_blocks_run(path: Path, block: Block) -> None:
    steps = parse_console(block.code)
    assert steps, f"{rel(path)}:{block.line}: a console block without '$ ' commands"
    # the commands of this interpreter's environment (`omlcore`) come first on PATH
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    for command, expected, status in steps:
        out = subprocess.run(
            ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env
        )
        printed = [line.rstrip() for line in (out.stdout + out.stderr).splitlines()]
        where = f"{rel(path)}:{block.line}: `{command}`"
        assert out.returncode == status, f"{where} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
        position = 0
        for line in expected:
            if line.strip() == "...":
                continue
            found = [i for i in range(position, len(printed)) if line.strip() in printed[i]]
            assert found, f"{where}: expected {line.strip()!r} (in this order) in\n" + "\n".join(printed)
            position = found[0] + 1


def test_parse_console_format() -> None:
    code = textwrap.dedent(
        """\
        $ echo a
        a
        $ false
        [exit 1]
        """
    )
    assert parse_console(code) == [("echo a", ["a"], 0), ("false", [], 1)]


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert match, "README.md must mark its test command with <!-- test-command -->"
    command = match.group(1).strip()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci.splitlines(), f"{command!r} is not a line of .ci/run"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link of the documentation points at a file or folder of the repository."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are code, not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # URLs, mail, in-page anchors
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"
