"""omlcore-metrics: exact, streaming retrieval metrics and kNN search for omlcore.

- :mod:`omlcore_metrics.knn`: :class:`TorchKnn` (entry point ``torch`` of group ``omlcore.knn``),
  :class:`Exclusions` and :func:`knn_with_exclusions`.
- :mod:`omlcore_metrics.functional`: :func:`retrieval_metrics` and :class:`MetricsResult`, plus pure
  helpers on top-k relevance masks (``cmc_at_k``, ``precision_at_k``, ``map_at_k``...).
"""

from omlcore_metrics.knn import Exclusions, TorchKnn, knn_with_exclusions

__all__ = ["Exclusions", "TorchKnn", "knn_with_exclusions"]
__version__ = "0.1.0"
