"""The exceptions this plugin raises; each says what was wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

from omlcore_metrics.errors import PostprocessingError

__all__ = ["InputSizeError", "RerankingError", "StaleEmbeddingsCacheError", "WeightsFileError"]


class RerankingError(PostprocessingError):
    """Base class of this plugin's errors (a ``ValueError`` and an ``OmlcoreError``: bad input, not a bug).

    A subclass of omlcore-metrics' :class:`~omlcore_metrics.errors.PostprocessingError`, so code
    that applies any postprocessor (``omlcore validate``, ``EmbeddingMetrics``) catches this plugin's
    errors with that one class."""


class InputSizeError(RerankingError):
    """Inputs of a pairwise model do not have the size it takes (embedding width, image size, pair shapes)."""


class WeightsFileError(RerankingError):
    """A pairwise model's weights file is missing, unreadable or does not fit the model."""


class StaleEmbeddingsCacheError(RerankingError):
    """An embeddings cache file was made from other inputs than the current ones; it is never used.

    ``changes`` lists each differing field as ``"path: stored -> current"``.
    """

    def __init__(self, path: str, changes: Sequence[str]) -> None:
        self.path = path
        self.changes = list(changes)
        shown = "\n".join(f"  {c}" for c in self.changes[:20])
        more = f"\n  ... and {len(self.changes) - 20} more" if len(self.changes) > 20 else ""
        super().__init__(
            f"The embeddings cache {path} was computed from different inputs, so it is stale and was not "
            f"used. What differs (stored -> current):\n{shown}{more}\n"
            f"Delete the file, point the cache to another path, or recompute it (EmbeddingsCache(refresh=True); "
            f"in a train_postprocessor config: embeddings_cache.refresh=true)."
        )
