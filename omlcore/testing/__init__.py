"""Testing kit for omlcore and its plugins.

- :class:`PluginSandbox` and the pytest fixtures ``omlcore_sandbox`` / ``omlcore_registry`` (loaded
  automatically by pytest through omlcore's ``pytest11`` entry point): a registry fed by fake entry
  points, with no test-mode switch in library code.
- Conformance suites (:mod:`omlcore.testing.conformance`): test classes per protocol that a plugin's
  tests subclass, naming the component to check. They import torch inside the tests only. They are
  importable from here too (``from omlcore.testing import LossConformance``), loaded on first access
  because they need pytest, which is not a dependency of omlcore.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from omlcore.testing.sandbox import PluginSandbox

if TYPE_CHECKING:
    from omlcore.testing.conformance import (
        BatchSamplerConformance,
        ComponentConformance,
        ExperimentLoggerConformance,
        ExtractorConformance,
        KnnBackendConformance,
        LossConformance,
        LRSchedulerConformance,
        MinerConformance,
        OptimizerConformance,
        PairMinerConformance,
        PairwiseModelConformance,
        RetrievalMetricConformance,
        RetrievalPostprocessorConformance,
        TransformFactoryConformance,
    )

__all__ = [
    "BatchSamplerConformance",
    "ComponentConformance",
    "ExperimentLoggerConformance",
    "ExtractorConformance",
    "KnnBackendConformance",
    "LRSchedulerConformance",
    "LossConformance",
    "MinerConformance",
    "OptimizerConformance",
    "PairMinerConformance",
    "PairwiseModelConformance",
    "PluginSandbox",
    "RetrievalMetricConformance",
    "RetrievalPostprocessorConformance",
    "TransformFactoryConformance",
]

_CONFORMANCE = frozenset(__all__) - {"PluginSandbox"}
"""Names loaded on first access from :mod:`omlcore.testing.conformance`."""

if "pytest" in sys.modules:
    # Under pytest, have the suites' plain ``assert`` statements rewritten for detailed failure reports.
    # This must happen before the module is first imported; outside pytest nothing is done.
    import pytest

    pytest.register_assert_rewrite("omlcore.testing.conformance")


def __getattr__(name: str) -> Any:
    if name in _CONFORMANCE:
        value = getattr(importlib.import_module("omlcore.testing.conformance"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omlcore.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
