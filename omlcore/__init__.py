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
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from omlcore.config import load_config
    from omlcore.errors import (
        ConfigError,
        ConfigIssue,
        ConfigValidationError,
        OmlcoreError,
        OverrideError,
        PluginConflictError,
        PluginError,
        PluginLoadError,
        PluginNotFoundError,
        PluginTypeError,
        UnknownKindError,
    )
    from omlcore.hookspecs import hookimpl
    from omlcore.registry import KINDS, Registry, available, build, register, resolve, use_registry
    from omlcore.schemas import ComponentSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
