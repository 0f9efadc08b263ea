"""Retrieval metrics after a postprocessor: this plugin's names for omlcore-metrics' post-processing.

The work is done by :mod:`omlcore_metrics.postprocessing` (which :class:`omlcore_metrics.EmbeddingMetrics`
and so ``omlcore validate`` use too): :func:`reranked_retrieval_metrics` runs the exact streaming top-k
search deep enough for the postprocessor's ``top_n``, hands the top-k to the postprocessor and recomputes
the per-query metrics from the new order. Nothing of size ``Q x G`` is ever built: the postprocessor sees
``(Q, K)``.

What re-ranking changes and what it does not:

- every per-query metric (cmc, precision, map, recall, mrr, ndcg, map_at_r, r_precision) is recomputed
  from the processed order; an item a thresholding postprocessor dropped counts as not retrieved;
- ``fnmr@fmr`` and ``pcf`` describe all pairs' distances and the embeddings themselves, not a top-k:
  they are carried over from the search unchanged;
- the number of positives of each query, and which queries have none, do not change.

Errors of :mod:`omlcore_metrics.postprocessing` (:class:`~omlcore_metrics.errors.PostprocessingError`)
come out of these functions as :class:`~omlcore_reranking.errors.RerankingError`, a subclass of it.
"""

from __future__ import annotations

from typing import Any

from omlcore_metrics.errors import PostprocessingError
from omlcore_metrics.functional import MetricsResult, NoPositivePolicy
from omlcore_metrics.postprocessing import postprocess_result, postprocessed_retrieval_metrics
from torch import Tensor

from omlcore_reranking.errors import RerankingError

__all__ = ["rerank_result", "reranked_retrieval_metrics"]


def _as_reranking_error(exc: PostprocessingError) -> RerankingError:
    if isinstance(exc, RerankingError):
        return exc
    text = str(exc).replace("postprocess_result:", "rerank_result:", 1)
    return RerankingError(text.replace("postprocessed_retrieval_metrics", "reranked_retrieval_metrics"))


def rerank_result(
    result: MetricsResult,
    labels: Any,
    postprocessor: Any,
    dataset: Any,
    *,
    no_positive: NoPositivePolicy = "skip",
    query_chunk: int | None = None,
) -> MetricsResult:
    """``result`` (from :func:`~omlcore_metrics.retrieval_metrics`) after ``postprocessor``.

    ``labels`` are the per-row labels given to ``retrieval_metrics``; ``dataset`` is what the
    postprocessor reads items from, indexed by row (the embeddings for ``pairwise_embeddings``, the
    image dataset for ``pairwise_images``). ``no_positive`` must be the policy ``result`` was computed
    with. ``query_chunk``: hand the queries to the postprocessor this many at a time (None: all at once).

    ``result.distances`` must hold at least ``min(top_n, G)`` columns; :func:`reranked_retrieval_metrics`
    takes care of that. See :func:`omlcore_metrics.postprocessing.postprocess_result`.
    """
    try:
        return postprocess_result(
            result, labels, postprocessor, dataset, no_positive=no_positive, query_chunk=query_chunk
        )
    except PostprocessingError as exc:
        raise _as_reranking_error(exc) from exc


def reranked_retrieval_metrics(
    embeddings: Tensor,
    labels: Any,
    is_query: Any,
    is_gallery: Any,
    postprocessor: Any,
    *,
    dataset: Any = None,
    query_chunk: int | None = None,
    **kwargs: Any,
) -> MetricsResult:
    """:func:`omlcore_metrics.retrieval_metrics` with ``postprocessor`` applied to every query's top-k.

    ``embeddings``, ``labels``, ``is_query``, ``is_gallery`` and ``kwargs`` (``cmc_top_k``,
    ``categories``, ``sequence``, ``no_positive``, ``backend``...) are those of ``retrieval_metrics``.
    The search keeps at least ``min(top_n, G)`` neighbours per query (more if a metric needs more);
    results are reported for the metrics asked for only. ``dataset``: what the postprocessor reads items
    from, by row; default ``embeddings`` (an error for a postprocessor that ``reads`` items).
    ``query_chunk``: see :func:`rerank_result`.
    """
    try:
        return postprocessed_retrieval_metrics(
            embeddings, labels, is_query, is_gallery, postprocessor, dataset=dataset, query_chunk=query_chunk, **kwargs
        )
    except PostprocessingError as exc:
        raise _as_reranking_error(exc) from exc
