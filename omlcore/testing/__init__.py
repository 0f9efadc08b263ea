"""Testing kit for omlcore and its plugins.

- :class:`PluginSandbox` and the pytest fixtures ``omlcore_sandbox`` / ``omlcore_registry`` (loaded
  automatically by pytest through omlcore's ``pytest11`` entry point): a registry fed by fake entry
  points, with no test-mode switch in library code.
- Conformance suites (:mod:`omlcore.testing.conformance`): test classes per protocol that a plugin's
  tests subclass, naming the component to check. They import torch inside the tests only.
"""

from __future__ import annotations

from omlcore.testing.sandbox import PluginSandbox

__all__ = ["PluginSandbox"]
