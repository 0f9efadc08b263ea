"""A registry and a plugin manager fed by fake entry points, for tests of omlcore and of plugins."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from omlcore.plugins import HookPluginEntry, PluginManager, make_plugin_manager, use_plugin_manager
from omlcore.registry import PIPELINE_GROUP, PluginEntry, Registry, kind_of, use_registry

__all__ = ["PluginSandbox"]


def _import_value(value: str) -> Any:
    module, _, attr = value.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class PluginSandbox:
    """Fake installed plugins without installing anything.

    ``add("loss", "triplet", TripletLoss, distribution="omlcore-losses")`` makes the name appear as if a
    distribution declared it; ``value="pkg.mod:Cls"`` imports lazily like a real entry point, and
    ``error=ImportError("...")`` simulates a plugin that fails to import. Inside :meth:`activate`,
    ``omlcore.available/resolve/build`` and the hook machinery see only the sandbox.
    """

    def __init__(self) -> None:
        self._entries: list[PluginEntry] = []
        self._hooks: list[HookPluginEntry] = []
        self._pipelines: list[PluginEntry] = []
        self.registry = Registry(source=self._source, disabled=())
        self._pm: PluginManager | None = None

    def _source(self, group: str) -> list[PluginEntry]:
        if group == PIPELINE_GROUP:
            return list(self._pipelines)
        return [e for e in self._entries if kind_of(e.kind).group == group]

    def add(
        self,
        kind: str,
        name: str,
        obj: Any = None,
        *,
        value: str | None = None,
        distribution: str | None = "fake-plugin",
        version: str | None = "0.0.0",
        error: BaseException | None = None,
    ) -> PluginEntry:
        """Declare a fake entry point; give ``obj``, or ``value`` to import, or ``error`` to raise on load."""
        loader = _loader(obj, value, error)
        entry = PluginEntry(kind_of(kind).name, name, value or f"<fake {name}>", distribution, version, loader)
        self._entries.append(entry)
        self.registry.refresh()
        return entry

    def add_pipeline(
        self,
        name: str,
        model: Any = None,
        *,
        value: str | None = None,
        distribution: str | None = "fake-plugin",
        version: str | None = "0.0.0",
        error: BaseException | None = None,
    ) -> PluginEntry:
        """Declare a fake ``omlcore.pipelines`` entry point: ``pipeline: name`` configs use ``model``."""
        loader = _loader(model, value, error)
        entry = PluginEntry("pipeline", name, value or f"<fake {name}>", distribution, version, loader)
        self._pipelines.append(entry)
        return entry

    def add_hook_plugin(
        self,
        name: str,
        plugin: Any = None,
        *,
        value: str | None = None,
        distribution: str | None = "fake-plugin",
        version: str | None = "0.0.0",
        error: BaseException | None = None,
    ) -> None:
        """Declare a fake ``omlcore`` hook plugin (a module or object with ``@hookimpl`` functions)."""
        loader = _loader(plugin, value, error)
        self._hooks.append(HookPluginEntry(name, value or f"<fake {name}>", distribution, version, loader))
        self._pm = None

    @property
    def plugin_manager(self) -> PluginManager:
        """A manager loading the fake hook plugins (rebuilt after :meth:`add_hook_plugin`)."""
        if self._pm is None:
            self._pm = make_plugin_manager(self._hooks, disabled=(), autoload=True)
        return self._pm

    @contextmanager
    def activate(self) -> Iterator[PluginSandbox]:
        """Make this sandbox's registry and plugin manager the process-wide ones."""
        with ExitStack() as stack:
            stack.enter_context(use_registry(self.registry))
            stack.enter_context(use_plugin_manager(_LazyManager(self)))  # type: ignore[arg-type]
            yield self


class _LazyManager:
    """Forwards to the sandbox's current plugin manager, so hook plugins added later are seen."""

    def __init__(self, sandbox: PluginSandbox) -> None:
        self._sandbox = sandbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox.plugin_manager, name)


def _loader(obj: Any, value: str | None, error: BaseException | None) -> Callable[[], Any]:
    def load() -> Any:
        if error is not None:
            raise error
        if value is not None and obj is None:
            return _import_value(value)
        return obj

    return load
