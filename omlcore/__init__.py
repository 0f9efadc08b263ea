"""omlcore: train and validate embedding models for retrieval, as a plugin framework.

The public API is importable from here; it loads lazily so that ``import omlcore`` stays cheap and
never imports torch or a plugin:

- :func:`available`, :func:`resolve`, :func:`build`, :func:`register` — the component registry;
- :func:`load_config` — read, override and validate a pipeline config;
- :data:`hookimpl` — the marker for hook implementations;
- the error classes of :mod:`omlcore.errors` and the protocols of :mod:`omlcore.protocols`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "available": "omlcore.registry",
    "resolve": "omlcore.registry",
    "build": "omlcore.registry",
    "register": "omlcore.registry",
    "use_registry": "omlcore.registry",
    "Registry": "omlcore.registry",
    "KINDS": "omlcore.registry",
    "ComponentSpec": "omlcore.schemas",
    "load_config": "omlcore.config",
    "hookimpl": "omlcore.hookspecs",
    "OmlcoreError": "omlcore.errors",
    "ConfigError": "omlcore.errors",
    "ConfigIssue": "omlcore.errors",
    "ConfigValidationError": "omlcore.errors",
    "OverrideError": "omlcore.errors",
    "PluginError": "omlcore.errors",
    "PluginNotFoundError": "omlcore.errors",
    "PluginLoadError": "omlcore.errors",
    "PluginConflictError": "omlcore.errors",
    "PluginTypeError": "omlcore.errors",
    "UnknownKindError": "omlcore.errors",
    "ComponentBuildError": "omlcore.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # explicit re-exports for type checkers (`import x as x`)
    from omlcore.config import load_config as load_config
    from omlcore.errors import ComponentBuildError as ComponentBuildError
    from omlcore.errors import ConfigError as ConfigError
    from omlcore.errors import ConfigIssue as ConfigIssue
    from omlcore.errors import ConfigValidationError as ConfigValidationError
    from omlcore.errors import OmlcoreError as OmlcoreError
    from omlcore.errors import OverrideError as OverrideError
    from omlcore.errors import PluginConflictError as PluginConflictError
    from omlcore.errors import PluginError as PluginError
    from omlcore.errors import PluginLoadError as PluginLoadError
    from omlcore.errors import PluginNotFoundError as PluginNotFoundError
    from omlcore.errors import PluginTypeError as PluginTypeError
    from omlcore.errors import UnknownKindError as UnknownKindError
    from omlcore.hookspecs import hookimpl as hookimpl
    from omlcore.registry import KINDS as KINDS
    from omlcore.registry import Registry as Registry
    from omlcore.registry import available as available
    from omlcore.registry import build as build
    from omlcore.registry import register as register
    from omlcore.registry import resolve as resolve
    from omlcore.registry import use_registry as use_registry
    from omlcore.schemas import ComponentSpec as ComponentSpec


_SUBMODULES = frozenset(
    {"cli", "config", "errors", "hookspecs", "plugins", "protocols", "registry", "schema_export", "schemas", "testing"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `omlcore.registry` works after a plain `import omlcore`
        return importlib.import_module(f"omlcore.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
