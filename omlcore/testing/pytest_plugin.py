"""pytest plugin shipped with omlcore (entry point ``pytest11: omlcore``); it only adds fixtures.

- ``omlcore_sandbox``: a :class:`~omlcore.testing.PluginSandbox`, active for the test, so the test sees
  only the fake plugins it declares (nothing installed leaks in).
- ``omlcore_registry``: the sandbox's :class:`~omlcore.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omlcore.registry import Registry
from omlcore.testing.sandbox import PluginSandbox


@pytest.fixture
def omlcore_sandbox() -> Iterator[PluginSandbox]:
    """Fake installed plugins for one test; ``omlcore.available/resolve/build`` use them."""
    sandbox = PluginSandbox()
    with sandbox.activate():
        yield sandbox


@pytest.fixture
def omlcore_registry(omlcore_sandbox: PluginSandbox) -> Registry:
    """The active sandbox's registry (empty until the test adds entries)."""
    return omlcore_sandbox.registry
