"""The committed schemas/ match what the repository's own plugins produce (run with all plugins installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from omlcore.cli import main
from omlcore.registry import get_registry
from omlcore.schema_export import check_schemas

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = sorted(tomllib.loads(p.read_text())["project"]["name"] for p in REPO.glob("plugins/*/pyproject.toml"))


def test_first_party_plugins_are_installed() -> None:
    installed = {
        e.distribution
        for kind in ("optimizer", "scheduler")
        for es in get_registry().entries(kind).values()
        for e in es
    }
    assert "omlcore-optim" in installed


def test_committed_schemas_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    stale = check_schemas(REPO / "schemas", distributions=FIRST_PARTY)
    command = "omlcore schema export schemas " + " ".join(f"--distribution {d}" for d in FIRST_PARTY)
    assert stale == [], f"schemas/ is out of date ({stale}); regenerate with: {command}"
    args = ["schema", "export", str(REPO / "schemas"), "--check"] + [
        a for d in FIRST_PARTY for a in ("--distribution", d)
    ]
    assert main(args) == 0
