"""omlcore-metrics: exact, streaming retrieval metrics and kNN search for omlcore.

- :mod:`omlcore_metrics.knn`: :class:`TorchKnn` (entry point ``torch`` of group ``omlcore.knn``),
  :class:`Exclusions` and :func:`knn_with_exclusions`.
- :mod:`omlcore_metrics.functional`: :func:`retrieval_metrics` and :class:`MetricsResult`, plus pure
  helpers on top-k relevance masks (``cmc_at_k``, ``precision_at_k``, ``map_at_k``...).
- :mod:`omlcore_metrics.accumulator`: :class:`EmbeddingMetrics` (entry point ``retrieval`` of group
  ``omlcore.metrics``).

The names load lazily: the CLI imports :mod:`omlcore_metrics.hooks` (and so this package) at every start,
and must not pay for torch then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Exclusions": "omlcore_metrics.knn",
    "TorchKnn": "omlcore_metrics.knn",
    "knn_with_exclusions": "omlcore_metrics.knn",
    "MetricsResult": "omlcore_metrics.functional",
    "retrieval_metrics": "omlcore_metrics.functional",
    "EmbeddingMetrics": "omlcore_metrics.accumulator",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_metrics.accumulator import EmbeddingMetrics as EmbeddingMetrics
    from omlcore_metrics.functional import MetricsResult as MetricsResult
    from omlcore_metrics.functional import retrieval_metrics as retrieval_metrics
    from omlcore_metrics.knn import Exclusions as Exclusions
    from omlcore_metrics.knn import TorchKnn as TorchKnn
    from omlcore_metrics.knn import knn_with_exclusions as knn_with_exclusions


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore_metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
