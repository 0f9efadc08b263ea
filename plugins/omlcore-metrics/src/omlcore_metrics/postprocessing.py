"""Retrieval metrics after a postprocessor (a re-ranker or a thresholding of each query's top-k).

A postprocessor follows :class:`omlcore.protocols.RetrievalPostprocessor`: ``top_n`` (how many leading
results of a row it reads and may reorder; ``None``: every column), ``reads`` (what its ``dataset``
argument must be: ``"embeddings"``, ``"items"`` or ``"nothing"``) and
``process(distances, retrieved, query_ids, dataset) -> (distances, retrieved)`` on ``(Q, K)`` tensors whose
ids are *rows* of ``dataset``.

:func:`postprocessed_retrieval_metrics` runs :func:`~omlcore_metrics.functional.retrieval_metrics` (the
exact streaming top-k search, deep enough for the postprocessor's ``top_n``), hands the top-k to the
postprocessor and recomputes the per-query metrics from the new order with this plugin's per-query
functions (``cmc_at_k``, ``precision_at_k``, ...); :func:`postprocess_result` does the second half to an
existing :class:`~omlcore_metrics.functional.MetricsResult`. Nothing of size ``Q x G`` is ever built: the
postprocessor sees ``(Q, K)``.

What post-processing changes and what it does not:

- every per-query metric (cmc, precision, map, recall, mrr, ndcg, map_at_r, r_precision) is recomputed
  from the processed order; an item a thresholding postprocessor dropped (``-1``) counts as not retrieved;
- ``fnmr@fmr`` and ``pcf`` describe all pairs' distances and the embeddings themselves, not a top-k:
  they are carried over from the search unchanged;
- the number of positives of each query, and which queries have none, do not change.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from omlcore_metrics.errors import PostprocessingError
from omlcore_metrics.functional import (
    OVERALL,
    MetricsResult,
    NoPositivePolicy,
    _factorize,
    _group_tables,
    _per_query_tables,
    retrieval_metrics,
)

__all__ = [
    "PostprocessingError",
    "drop_search_depth",
    "postprocess_result",
    "postprocessed_retrieval_metrics",
    "postprocessor_search_depth",
]

_RANKED_KS = ("cmc_top_k", "precision_top_k", "map_top_k", "recall_top_k", "mrr_top_k", "ndcg_top_k")
_NOT_PER_QUERY = ("fnmr@fmr", "pcf")


def postprocess_result(
    result: MetricsResult,
    labels: Any,
    postprocessor: Any,
    dataset: Any,
    *,
    no_positive: NoPositivePolicy = "skip",
    query_chunk: int | None = None,
) -> MetricsResult:
    """``result`` (from :func:`~omlcore_metrics.functional.retrieval_metrics`) after ``postprocessor``.

    ``labels`` are the per-row labels given to ``retrieval_metrics``; ``dataset`` is what the
    postprocessor reads items from, indexed by row (the embeddings for ``reads == "embeddings"``, e.g. an
    image dataset for ``reads == "items"``). ``no_positive`` must be the policy ``result`` was computed
    with. ``query_chunk``: hand the queries to the postprocessor this many at a time (None: all at once).

    ``result.distances`` must hold at least ``min(top_n, G)`` columns (:func:`postprocessed_retrieval_metrics`
    and :func:`postprocessor_search_depth` take care of that). Raises :class:`PostprocessingError` when the
    result is too shallow or the postprocessor returns other shapes, unknown rows or non-gallery rows.
    """
    n_rows = labels.shape[0] if hasattr(labels, "shape") else len(labels)
    lab = _factorize(labels, "labels", n_rows)
    q_rows, g_rows = result.query_rows, result.gallery_rows
    n_q, n_g = q_rows.numel(), g_rows.numel()
    width = result.distances.shape[1]
    top_n = getattr(postprocessor, "top_n", None)
    if top_n is not None and width < min(int(top_n), n_g):
        raise PostprocessingError(
            f"postprocess_result: the result holds {width} neighbours per query but the postprocessor re-ranks "
            f"top_n={top_n}; search deeper (postprocessed_retrieval_metrics does) or lower top_n"
        )
    rows_in = result.retrieved_rows()
    chunk = query_chunk or max(n_q, 1)
    parts_d: list[Tensor] = []
    parts_r: list[Tensor] = []
    for s in range(0, n_q, chunk):
        span = slice(s, s + chunk)
        d, r = postprocessor.process(result.distances[span], rows_in[span], q_rows[span], dataset)
        if d.shape != result.distances[span].shape or r.shape != d.shape:
            raise PostprocessingError(
                f"postprocess_result: {type(postprocessor).__name__}.process returned shapes {tuple(d.shape)} and "
                f"{tuple(r.shape)} for a ({min(chunk, n_q - s)}, {width}) top-k"
            )
        parts_d.append(d.cpu())
        parts_r.append(r.cpu().long())
    new_d = torch.cat(parts_d) if parts_d else result.distances.clone()
    new_rows = torch.cat(parts_r) if parts_r else rows_in.clone()
    gallery_pos = torch.full((n_rows,), -1, dtype=torch.long)
    gallery_pos[g_rows] = torch.arange(n_g)
    present = new_rows >= 0
    if bool((new_rows >= n_rows).any()):
        raise PostprocessingError(f"postprocess_result: the postprocessor returned row ids beyond the {n_rows} rows")
    new_pos = torch.where(present, gallery_pos[new_rows.clamp(min=0)], torch.full_like(new_rows, -1))
    if bool((present & (new_pos < 0)).any()):
        bad = new_rows[present & (new_pos < 0)][:5].tolist()
        raise PostprocessingError(
            f"postprocess_result: the postprocessor returned rows {bad}, which are not gallery rows"
        )
    q_lab, g_lab = lab[q_rows], lab[g_rows]
    gt = (new_pos >= 0) & (g_lab[new_pos.clamp(min=0)] == q_lab[:, None])
    n_pos = result.n_positives
    no_pos = result.no_positive_queries

    wanted = {m: list(values) for m, values in result.unreduced.get(OVERALL, {}).items()}
    try:
        per_query, scored = _per_query_tables(wanted, gt, n_pos, n_g, no_pos, no_positive)
    except ValueError as exc:
        raise PostprocessingError(f"postprocess_result: cannot recompute the metrics: {exc}") from exc
    reduced, unreduced = _group_tables(per_query, result.group_queries, scored)
    for group, red in reduced.items():  # fnmr@fmr and pcf do not depend on the order: carried over
        for m in _NOT_PER_QUERY:
            if m in result.reduced.get(group, {}):
                red[m] = dict(result.reduced[group][m])
    return MetricsResult(
        reduced=reduced,
        unreduced=unreduced,
        query_rows=q_rows,
        gallery_rows=g_rows,
        distances=new_d,
        retrieved=new_pos,
        gt=gt,
        n_positives=n_pos,
        no_positive_queries=no_pos,
        group_queries=dict(result.group_queries),
    )


def _default(name: str) -> Any:
    return inspect.signature(retrieval_metrics).parameters[name].default


def postprocessor_search_depth(postprocessor: Any, n_gallery: int, kwargs: dict[str, Any]) -> int | None:
    """Make the search of ``retrieval_metrics(**kwargs)`` deep enough for ``postprocessor``.

    When ``min(top_n, n_gallery)`` exceeds every ``k`` that ``kwargs`` asks for, that depth is appended
    to ``kwargs["cmc_top_k"]`` (in place) and returned, so the caller can drop the extra ``cmc`` entry with
    :func:`drop_search_depth`; otherwise returns None.
    """
    top_n = getattr(postprocessor, "top_n", None)
    if top_n is None:
        return None
    ks = {name: tuple(kwargs.get(name, _default(name))) for name in _RANKED_KS}
    deepest = max((k for values in ks.values() for k in values), default=0)
    need = min(int(top_n), n_gallery)
    if need <= 0 or need <= min(deepest, n_gallery):
        return None
    kwargs["cmc_top_k"] = (*ks["cmc_top_k"], need)
    return need


def drop_search_depth(result: MetricsResult, added: int | None, asked_cmc: tuple[int, ...]) -> None:
    """Remove the ``cmc`` entry :func:`postprocessor_search_depth` added (unless it was asked for)."""
    if added is None or added in asked_cmc:
        return
    for tables in (result.reduced, result.unreduced):
        for group in tables.values():
            cmc: dict[Any, Any] = group.get("cmc", {})
            cmc.pop(added, None)
            if not cmc and "cmc" in group:
                del group["cmc"]


def postprocessed_retrieval_metrics(
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
    """:func:`~omlcore_metrics.functional.retrieval_metrics` with ``postprocessor`` applied to every top-k.

    ``embeddings``, ``labels``, ``is_query``, ``is_gallery`` and ``kwargs`` (``cmc_top_k``,
    ``categories``, ``sequence``, ``no_positive``, ``backend``...) are those of ``retrieval_metrics``.
    The search keeps at least ``min(top_n, G)`` neighbours per query (more if a metric needs more);
    results are reported for the metrics asked for only. ``dataset``: what the postprocessor reads items
    from, by row; default ``embeddings`` (a ``ValueError`` for a postprocessor whose ``reads`` is
    ``"items"``). ``query_chunk``: see :func:`postprocess_result`.
    """
    if not callable(getattr(postprocessor, "process", None)):
        raise TypeError(f"postprocessor must have process(...), got {type(postprocessor).__name__}")
    if dataset is None and getattr(postprocessor, "reads", None) == "items":
        raise PostprocessingError(
            f"{type(postprocessor).__name__} reads dataset items (e.g. images): pass dataset=<the dataset whose "
            f"row i is embedding i>"
        )
    n_gallery = int(torch.as_tensor(is_gallery).bool().sum())
    asked_cmc = tuple(kwargs.get("cmc_top_k", _default("cmc_top_k")))
    added = postprocessor_search_depth(postprocessor, n_gallery, kwargs)
    no_positive: NoPositivePolicy = kwargs.get("no_positive", _default("no_positive"))
    result = retrieval_metrics(embeddings, labels, is_query, is_gallery, **kwargs)
    out = postprocess_result(
        result,
        labels,
        postprocessor,
        embeddings if dataset is None else dataset,
        no_positive=no_positive,
        query_chunk=query_chunk,
    )
    drop_search_depth(out, added, asked_cmc)
    return out
