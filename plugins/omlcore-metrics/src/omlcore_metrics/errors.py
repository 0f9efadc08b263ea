"""Exceptions of omlcore-metrics that other plugins derive from (no torch import: cheap to load)."""

from __future__ import annotations

from omlcore.errors import OmlcoreError

__all__ = ["PostprocessingError"]


class PostprocessingError(OmlcoreError, ValueError):
    """A postprocessor cannot be applied to a retrieval result, or returned something that is not a top-k
    of the gallery (a ``ValueError``: bad input, not a bug). Re-ranking plugins derive their errors from it
    (``omlcore_reranking.RerankingError``)."""
