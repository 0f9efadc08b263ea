"""The pluggy plugin manager: hook modules from the ``omlcore`` entry-point group, loaded once.

``OMLCORE_DISABLE_PLUGINS=a,b`` skips hook plugins by entry-point or distribution name (and the
registry skips the components of those distributions); ``OMLCORE_DISABLE_PLUGIN_AUTOLOAD=1`` loads no
hook plugin at all. A hook module that fails to import or does not match the hook specs is skipped
with a warning; ``omlcore plugins check`` reports it and fails.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from omlcore import hookspecs
from omlcore._active import ActiveSlot
from omlcore.registry import disabled_from_env, normalize_dist

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "AUTOLOAD_ENV",
    "HOOK_GROUP",
    "HookPluginEntry",
    "OmlcorePluginWarning",
    "PluginManager",
    "collect_trainer_callbacks",
    "get_plugin_manager",
    "make_plugin_manager",
    "notify_run_finished",
    "use_plugin_manager",
]

HOOK_GROUP = "omlcore"
AUTOLOAD_ENV = "OMLCORE_DISABLE_PLUGIN_AUTOLOAD"


class OmlcorePluginWarning(UserWarning):
    """A hook plugin was skipped because it is broken."""


@dataclass(frozen=True)
class HookPluginEntry:
    """A hook module offered under the ``omlcore`` group."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    loader: Callable[[], Any]

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}" if self.distribution else "an unknown distribution"


def installed_hook_plugins() -> list[HookPluginEntry]:
    """Entries of the ``omlcore`` group, from installed metadata (nothing imported)."""
    out = []
    for ep in metadata.entry_points(group=HOOK_GROUP):
        dist = getattr(ep, "dist", None)
        out.append(
            HookPluginEntry(
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist is not None else None,
                dist.version if dist is not None else None,
                ep.load,
            )
        )
    return out


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus a record of the hook plugins that failed to load."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.failures: list[tuple[HookPluginEntry, str]] = []
        self.loaded: list[HookPluginEntry] = []


def make_plugin_manager(
    entries: Iterable[HookPluginEntry] | None = None,
    disabled: Iterable[str] | None = None,
    autoload: bool | None = None,
) -> PluginManager:
    """A fresh manager with the hook specs, loading ``entries`` (default: installed ones)."""
    pm = PluginManager()
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")
    if not autoload:
        return pm
    blocked = disabled_from_env() if disabled is None else frozenset(normalize_dist(d) for d in disabled)
    for entry in installed_hook_plugins() if entries is None else entries:
        names = {normalize_dist(entry.name)} | ({normalize_dist(entry.distribution)} if entry.distribution else set())
        if names & blocked:
            pm.set_blocked(entry.name)
            continue
        if pm.has_plugin(entry.name) or pm.is_blocked(entry.name):
            continue
        try:
            module = entry.loader()
            pm.register(module, name=entry.name)
            pm.check_pending()
        except Exception as exc:
            if pm.has_plugin(entry.name):
                pm.unregister(name=entry.name)
            reason = f"{type(exc).__name__}: {exc}"
            pm.failures.append((entry, reason))
            warnings.warn(
                f"omlcore skipped the hook plugin {entry.name!r} from {entry.origin} ({entry.value}): {reason}. "
                f"Run 'omlcore plugins check' for details, or disable it with OMLCORE_DISABLE_PLUGINS={entry.name}.",
                OmlcorePluginWarning,
                stacklevel=2,
            )
            continue
        pm.loaded.append(entry)
    return pm


_ACTIVE: ActiveSlot[PluginManager] = ActiveSlot(make_plugin_manager)


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, created (and hook plugins imported) on first use only."""
    return _ACTIVE.get()


def use_plugin_manager(pm: PluginManager) -> AbstractContextManager[PluginManager]:
    """Make ``pm`` the process-wide manager inside the ``with`` block."""
    return _ACTIVE.use(pm)


def collect_trainer_callbacks(config: BaseModel, pm: PluginManager | None = None) -> list[Any]:
    """All Lightning callbacks that plugins contribute for ``config``, in hook order."""
    results: Sequence[Sequence[Any]] = (pm or get_plugin_manager()).hook.omlcore_trainer_callbacks(config=config)
    return [cb for contributed in results for cb in contributed]


def notify_run_finished(
    config: BaseModel, run_dir: Path, metrics: Mapping[str, float], pm: PluginManager | None = None
) -> list[str]:
    """Tell every observer that a run finished; returns the failures (one line each) instead of raising."""
    manager = pm or get_plugin_manager()
    failures = []
    for impl in reversed(manager.hook.omlcore_run_finished.get_hookimpls()):
        try:
            given = {"config": config, "run_dir": run_dir, "metrics": metrics}
            impl.function(**{name: given[name] for name in impl.argnames})
        except Exception as exc:
            failures.append(f"{impl.plugin_name}: {type(exc).__name__}: {exc}")
    return failures
