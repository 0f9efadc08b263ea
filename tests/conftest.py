"""Shared helpers of the core tests. The ``omlcore_sandbox`` fixture comes from omlcore's pytest plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: install a fake distribution (metadata + module) on ``sys.path`` for real entry points.

    ``fake_distribution("acme-losses", {"omlcore.losses": {"tri": "acme_losses:Tri"}}, {"acme_losses": SRC})``
    makes ``importlib.metadata`` see the distribution exactly as pip would leave it.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(
        name: str,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
        version: str = "1.2.3",
    ) -> Path:
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in eps.items()]
            lines.append("")
        (info / "entry_points.txt").write_text("\n".join(lines))
        for mod, src in (modules or {}).items():
            (root / f"{mod}.py").write_text(textwrap.dedent(src))
        return root

    return make
