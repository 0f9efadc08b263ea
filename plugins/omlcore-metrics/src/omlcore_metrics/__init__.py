"""omlcore-metrics: exact, streaming retrieval metrics and kNN search for omlcore.

- :mod:`omlcore_metrics.knn`: :class:`TorchKnn` (entry point ``torch`` of group ``omlcore.knn``),
  :class:`Exclusions` and :func:`knn_with_exclusions`.
- :mod:`omlcore_metrics.functional`: :func:`retrieval_metrics` and :class:`MetricsResult`, plus pure
  helpers on top-k relevance masks (``cmc_at_k``, ``precision_at_k``, ``map_at_k``...).
- :mod:`omlcore_metrics.accumulator`: :class:`EmbeddingMetrics` (entry point ``retrieval`` of group
  ``omlcore.metrics``), optionally with a postprocessor (a re-ranker) applied to every query's top-k.
- :mod:`omlcore_metrics.postprocessing`: :func:`postprocessed_retrieval_metrics` and
  :func:`postprocess_result`, the metrics after a postprocessor; :class:`PostprocessingError`.

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
    "PostprocessingError": "omlcore_metrics.errors",
    "postprocess_result": "omlcore_metrics.postprocessing",
    "postprocessed_retrieval_metrics": "omlcore_metrics.postprocessing",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_metrics.accumulator import EmbeddingMetrics as EmbeddingMetrics
    from omlcore_metrics.errors import PostprocessingError as PostprocessingError
    from omlcore_metrics.functional import MetricsResult as MetricsResult
    from omlcore_metrics.functional import retrieval_metrics as retrieval_metrics
    from omlcore_metrics.knn import Exclusions as Exclusions
    from omlcore_metrics.knn import TorchKnn as TorchKnn
    from omlcore_metrics.knn import knn_with_exclusions as knn_with_exclusions
    from omlcore_metrics.postprocessing import postprocess_result as postprocess_result
    from omlcore_metrics.postprocessing import postprocessed_retrieval_metrics as postprocessed_retrieval_metrics


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore_metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
