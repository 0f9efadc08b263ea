"""The pluggy layer: spec validation, broken hook plugins, disabling, and the hook helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omlcore import hookimpl, hookspecs
from omlcore.plugins import (
    HookPluginEntry,
    OmlcorePluginWarning,
    collect_trainer_callbacks,
    make_plugin_manager,
    notify_run_finished,
)


def entry(name: str, plugin: Any = None, error: BaseException | None = None, dist: str = "acme") -> HookPluginEntry:
    def load() -> Any:
        if error is not None:
            raise error
        return plugin

    return HookPluginEntry(name, f"{name}.hooks", dist, "1.0", load)


class Callbacks:
    def __init__(self, *names: str) -> None:
        self.names = list(names)

    @hookimpl
    def omlcore_trainer_callbacks(self, config: Any) -> list[str]:
        return self.names


class Early:
    @hookimpl(tryfirst=True)
    def omlcore_trainer_callbacks(self, config: Any) -> list[str]:
        return ["first"]


def test_the_hook_surface_is_small_and_documented() -> None:
    specs = [n for n in dir(hookspecs) if n.startswith("omlcore_")]
    assert specs == [
        "omlcore_add_commands",
        "omlcore_run_finished",
        "omlcore_trainer_callbacks",
        "omlcore_validate_config",
    ]
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_callbacks_from_several_plugins_in_order() -> None:
    pm = make_plugin_manager([entry("a", Callbacks("a1", "a2")), entry("b", Early())], disabled=())
    assert collect_trainer_callbacks(config=None, pm=pm) == ["first", "a1", "a2"]  # type: ignore[arg-type]


def test_broken_hook_plugin_is_skipped_with_warning() -> None:
    with pytest.warns(OmlcorePluginWarning, match="skipped the hook plugin 'bad' from acme 1.0"):
        pm = make_plugin_manager(
            [entry("bad", error=ImportError("no torch")), entry("good", Callbacks("x"))], disabled=()
        )
    assert [e.name for e in pm.loaded] == ["good"]
    assert pm.failures[0][1] == "ImportError: no torch"
    assert collect_trainer_callbacks(None, pm) == ["x"]  # type: ignore[arg-type]


def test_hookimpl_with_unknown_argument_is_rejected() -> None:
    class Wrong:
        @hookimpl
        def omlcore_trainer_callbacks(self, config: Any, trainer: Any) -> list[str]:
            return []

    with pytest.warns(OmlcorePluginWarning, match="PluginValidationError"):
        pm = make_plugin_manager([entry("wrong", Wrong())], disabled=())
    assert pm.loaded == []
    assert not pm.has_plugin("wrong")


def test_hookimpl_of_unknown_hook_is_rejected() -> None:
    class Typo:
        @hookimpl
        def omlcore_trainer_callback(self, config: Any) -> list[str]:
            return []

    with pytest.warns(OmlcorePluginWarning, match="unknown hook 'omlcore_trainer_callback'"):
        pm = make_plugin_manager([entry("typo", Typo())], disabled=())
    assert pm.failures
    assert not pm.has_plugin("typo")


def test_disabled_by_name_or_distribution_and_autoload_off() -> None:
    entries = [entry("a", Callbacks("a")), entry("b", Callbacks("b"), dist="Beta_Dist")]
    pm = make_plugin_manager(entries, disabled=["a", "beta-dist"])
    assert collect_trainer_callbacks(None, pm) == []  # type: ignore[arg-type]
    assert pm.is_blocked("a")
    assert pm.is_blocked("b")
    assert make_plugin_manager(entries, disabled=(), autoload=False).get_plugins() == set()


def test_run_finished_observers_isolated(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Good:
        @hookimpl
        def omlcore_run_finished(self, run_dir: Path, metrics: dict[str, float]) -> None:
            seen.append((run_dir, dict(metrics)))

    class Bad:
        @hookimpl
        def omlcore_run_finished(self, config: Any) -> None:
            raise RuntimeError("upload failed")

    pm = make_plugin_manager([entry("bad", Bad()), entry("good", Good())], disabled=())
    failures = notify_run_finished(None, tmp_path, {"OVERALL/cmc/1": 0.5}, pm)  # type: ignore[arg-type]
    assert failures == ["bad: RuntimeError: upload failed"]
    assert seen == [(tmp_path, {"OVERALL/cmc/1": 0.5})]


def test_env_variables_control_the_real_manager(tmp_path: Path) -> None:
    code = (
        "import warnings, omlcore.plugins as p; warnings.simplefilter('error');"
        "pm = p.get_plugin_manager(); assert pm is p.get_plugin_manager(); print(len(pm.loaded))"
    )
    env = {"OMLCORE_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "0"
