"""The install hints in error messages match what the extras and the plugins really provide."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from omlcore.registry import EXTRA_HINTS, KINDS, normalize_dist

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CORE = tomllib.loads((REPO / "pyproject.toml").read_text())
PLUGINS = {
    (data := tomllib.loads(p.read_text()))["project"]["name"]: data
    for p in sorted(REPO.glob("plugins/*/pyproject.toml"))
}
GROUP_TO_KIND = {k.group: k.name for k in KINDS.values()}


def extra_distributions(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Distributions an extra of omlcore installs, following self-references (omlcore[optim])."""
    out: set[str] = set()
    for requirement in CORE["project"]["optional-dependencies"][extra]:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        if normalize_dist(name) == "omlcore":
            for inner in re.findall(r"\[(.*?)\]", requirement)[0].split(","):
                if inner.strip() not in seen:
                    out |= extra_distributions(inner.strip(), seen | {extra})
        else:
            out.add(normalize_dist(name))
    return out


def test_plugins_exist() -> None:
    assert PLUGINS, "no plugins/*/pyproject.toml found"


def test_every_hint_points_to_an_extra_that_provides_the_name() -> None:
    for (kind, name), extra in EXTRA_HINTS.items():
        assert extra in CORE["project"]["optional-dependencies"], f"extra {extra!r} is not declared"
        providers = [
            dist
            for dist, data in PLUGINS.items()
            if name in data["project"].get("entry-points", {}).get(KINDS[kind].group, {})
        ]
        assert providers, f"no plugin in plugins/ declares {kind} {name!r}"
        assert {normalize_dist(p) for p in providers} <= extra_distributions(extra), (kind, name, extra)


def test_every_first_party_component_has_a_hint() -> None:
    for dist, data in PLUGINS.items():
        for group, entries in data["project"].get("entry-points", {}).items():
            if group in GROUP_TO_KIND:
                for name in entries:
                    assert (GROUP_TO_KIND[group], name) in EXTRA_HINTS, f"{dist}: {group} {name} has no install hint"


def with_plugin_dependencies(dists: set[str]) -> set[str]:
    """``dists`` plus the repository plugins they require, transitively (a shared base such as
    omlcore-loggers-base comes with the plugins built on it)."""
    by_name = {normalize_dist(d): data for d, data in PLUGINS.items()}
    out, todo = set(), list(dists)
    while todo:
        dist = todo.pop()
        if dist in out:
            continue
        out.add(dist)
        for requirement in by_name.get(dist, {}).get("project", {}).get("dependencies", []):
            name = normalize_dist(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
            if name in by_name:
                todo.append(name)
    return out


def test_all_and_standard_extras_cover_every_plugin() -> None:
    everything = {normalize_dist(d) for d in PLUGINS}
    assert with_plugin_dependencies(extra_distributions("all")) == everything
    assert extra_distributions("standard") <= everything


def test_plugins_pin_the_core_minor_version() -> None:
    version = re.search(r'__version__ = "(\d+)\.(\d+)', (REPO / "omlcore" / "__init__.py").read_text())
    assert version
    major, minor = version.groups()
    for dist, data in PLUGINS.items():
        deps = [d.replace(" ", "") for d in data["project"]["dependencies"]]
        assert f"omlcore>={major}.{minor},<{major}.{int(minor) + 1}" in deps, dist
        assert data["project"]["version"] == f"{major}.{minor}.0" or data["project"]["version"].startswith(
            f"{major}.{minor}."
        ), dist
