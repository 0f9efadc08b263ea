"""Shared machinery of both backends: input checks, the float64 re-ranking of faiss's candidates, and the
exact top-k with omlcore's total order (distance, then gallery index).

faiss computes distances in float32 with the ``|q|^2 + |g|^2 - 2 q.g`` expansion and makes no promise about
the order of equal distances, so its own ranking can differ from the reference one by rounding and on
ties. Here faiss only proposes candidates (``k + margin`` per query); their distances are recomputed
directly in float64, cast to the output dtype and sorted by (distance, index). For exact search a row is
accepted only when the farthest candidate faiss returned is provably farther than the k-th kept one (by
more than a bound on faiss's rounding error); otherwise the row is searched again with twice as many
candidates, up to the whole gallery. So ties at the k-th place always keep the smaller gallery indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from torch import Tensor

Metric = Literal["l2", "cosine"]
METRICS: tuple[str, ...] = ("l2", "cosine")
RERANK_ELEMENTS = 1 << 22
"""At most this many float64 elements (32 MiB) are gathered at once when candidates are re-scored."""

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""``(queries float32 (c, D) array, k) -> (faiss distances (c, k), faiss labels (c, k))``."""


def import_faiss() -> Any:
    """The ``faiss`` module, or an ImportError that says how to install it."""
    try:
        import faiss  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError(
            'omlcore-faiss needs faiss: `pip install faiss-cpu` (or `pip install "omlcore[faiss]"`)'
        ) from exc
    return faiss


@contextmanager
def faiss_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``faiss.omp_set_num_threads(num_threads)``; restore the previous count after."""
    if num_threads is None:
        yield
        return
    faiss = import_faiss()
    previous = int(faiss.omp_get_max_threads())
    faiss.omp_set_num_threads(int(num_threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def check_metric(metric: str) -> None:
    """Raise a ValueError for a metric other than ``"l2"`` or ``"cosine"``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")


def check_positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    """Raise a ValueError unless ``value`` is a positive int (or ``None`` when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_matrix(name: str, x: Any, rows: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor ({rows}, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D ({rows}, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def _check_finite(name: str, x: Tensor) -> None:
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()
        shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if rows.numel() > 5 else "")
        raise ValueError(f"{name} contain NaN or inf values in {rows.numel()} row(s): {shown}")


def check_inputs(queries: Any, gallery: Any, k: Any) -> None:
    """Validate the arguments of ``search``; every message names the problem."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")
    _check_matrix("queries", queries, "Q")
    _check_matrix("gallery", gallery, "G")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"dimension mismatch: queries have D={queries.shape[1]} but gallery has D={gallery.shape[1]}")
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty (0 rows): there is nothing to search")
    if gallery.shape[1] == 0:
        raise ValueError("the embeddings are empty (D=0)")
    _check_finite("queries", queries)
    _check_finite("gallery", gallery)


def output_dtype(queries: Tensor, gallery: Tensor) -> torch.dtype:
    """The dtype of the returned distances: the promoted floating dtype of the inputs."""
    return torch.promote_types(queries.dtype, gallery.dtype)


def as_faiss_matrix(x: Tensor, metric: str) -> Tensor:
    """A contiguous float32 CPU copy (or view) of ``x``, rows scaled to unit length for ``"cosine"``.

    Zero rows stay zero (``F.normalize`` semantics), so their cosine distance to anything is 1.
    """
    x32 = x.detach().to(device="cpu", dtype=torch.float32)
    if metric == "cosine":
        x32 = torch.nn.functional.normalize(x32, dim=1)
    return x32.contiguous()


def rescore(queries: Tensor, gallery: Tensor, candidates: Tensor, metric: str) -> Tensor:
    """Float64 distances ``(c, m)`` from each query row to its candidate gallery rows.

    ``queries`` and ``gallery`` are the caller's CPU tensors (any floating dtype, not normalised), so the
    figures do not carry faiss's float32 rounding. ``"l2"``: ``|q - g|``, computed
    from the difference (no cancellation); ``"cosine"``: ``1 - q.g / sqrt(|q|^2 |g|^2)`` clamped to
    ``[0, 2]``, and 1 when either row is zero. Candidates
    ``-1`` (faiss found fewer than asked) get ``+inf``.
    """
    c, m = candidates.shape
    out = torch.empty(c, m, dtype=torch.float64)
    if c == 0 or m == 0:
        return out
    step = max(1, RERANK_ELEMENTS // max(1, m * queries.shape[1]))
    for start in range(0, c, step):
        cand = candidates[start : start + step]
        missing = cand < 0
        q = queries[start : start + step].double()
        g = gallery[cand.clamp_min(0)].double()  # (s, m, D)
        if metric == "l2":
            d = (q[:, None, :] - g).square_().sum(dim=2).sqrt_()
        else:  # dot / sqrt(|q|^2 |g|^2): parallel rows give exactly 1, so exact ties stay exact
            # an elementwise product summed over D (not a batched matrix product, whose rounding can depend
            # on the batch's shape): the same bits as omlcore_metrics.knn.exact_distances
            dot = (g * q[:, None, :]).sum(dim=2)
            norms = (q.square().sum(dim=1, keepdim=True) * g.square().sum(dim=2)).sqrt_()
            cos = torch.where(norms > 0, dot / norms.clamp_min(1e-300), torch.zeros_like(dot))
            d = (1.0 - cos).clamp_(0.0, 2.0)
        out[start : start + step] = d.masked_fill_(missing, math.inf)
    return out


def sort_rows(distances: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Each row sorted by distance ascending, equal distances by gallery index ascending."""
    by_index = indices.argsort(dim=1, stable=True)
    distances, indices = distances.gather(1, by_index), indices.gather(1, by_index)
    by_distance = distances.argsort(dim=1, stable=True)
    return distances.gather(1, by_distance), indices.gather(1, by_distance)


def rank_candidates(
    queries: Tensor, gallery: Tensor, labels: np.ndarray, metric: str, k: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The first ``k`` of faiss's candidates ``labels`` after re-scoring and sorting: ``(distances in
    dtype, indices long)``, both ``(c, min(k, m))``; missing candidates (``-1``) come last with ``inf``."""
    candidates = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    distances = rescore(queries, gallery, candidates, metric).to(dtype)
    distances, indices = sort_rows(distances, candidates)
    return distances[:, :k], indices[:, :k]


def error_bound(queries: Tensor, gallery_sq_norm_max: float, metric: str, dtype: torch.dtype) -> Tensor:
    """Per query, a bound (float64 ``(c,)``) on how far faiss's value (squared L2, or ``1 - similarity``)
    can be from the float64 one, plus room for rounding the output to ``dtype``.

    A float32 dot product of length D is off by at most about ``D * 2**-24 * |q| |g|``; the bound takes
    twice that, over ``|q|^2 + max |g|^2``, and adds four units of the output dtype.
    """
    dim = queries.shape[1]
    out_eps = float(torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0
    rel = (dim + 4) * 2.0**-23 + 4.0 * max(out_eps, 2.0**-23)
    if metric == "cosine":
        scale = torch.full((queries.shape[0],), 2.0, dtype=torch.float64)
    else:
        scale = queries.double().square().sum(dim=1) + gallery_sq_norm_max
    return rel * scale


def to_faiss_space(distances: Tensor, metric: str) -> Tensor:
    """Our distances in the units faiss ranks by, ascending: squared L2, or ``1 - similarity``."""
    d = distances.double()
    return d.square() if metric == "l2" else d


def faiss_values(raw: np.ndarray, metric: str) -> Tensor:
    """faiss's returned values in the same ascending units (``IndexFlatIP`` returns similarities)."""
    values = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float64))
    return values if metric == "l2" else 1.0 - values


def exact_rows(
    search: SearchFn,
    faiss_queries: Tensor,
    queries: Tensor,
    gallery: Tensor,
    gallery_sq_norm_max: float,
    metric: str,
    k: int,
    margin: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, int]:
    """Exact top-``k`` of each query row with the (distance, index) order, from an exhaustive faiss search.

    ``faiss_queries`` are the float32 rows given to ``search``; ``queries`` and ``gallery`` the caller's
    CPU tensors, used to re-score. ``k <= G``. Returns ``(distances (c, k) dtype, indices (c, k) long,
    number of rows that needed a wider search)``.
    """
    n_gallery = gallery.shape[0]
    c = queries.shape[0]
    out_d = torch.empty(c, k, dtype=dtype)
    out_i = torch.empty(c, k, dtype=torch.long)
    pending = torch.arange(c)
    fetch = min(k + margin, n_gallery)
    widened = -1
    bound = error_bound(queries, gallery_sq_norm_max, metric, dtype)
    while pending.numel() > 0:
        q = queries[pending]
        raw_d, raw_i = search(faiss_queries[pending].numpy(), fetch)
        d, i = rank_candidates(q, gallery, raw_i, metric, k, dtype)
        if fetch >= n_gallery:
            done = torch.ones(pending.numel(), dtype=torch.bool)
        else:
            farthest = faiss_values(raw_d[:, -1:], metric)[:, 0]
            kth = to_faiss_space(d[:, -1], metric)
            done = farthest > kth + bound[pending]
        out_d[pending[done]] = d[done]
        out_i[pending[done]] = i[done]
        if widened < 0:
            widened = int((~done).sum())
        pending = pending[~done]
        fetch = min(2 * fetch, n_gallery)
    return out_d, out_i, max(widened, 0)


def flat_index(gallery: Tensor, metric: str) -> Any:
    """An exhaustive faiss index over the float32 matrix ``gallery``: ``IndexFlatL2`` or ``IndexFlatIP``."""
    faiss = import_faiss()
    index = faiss.IndexFlatL2(gallery.shape[1]) if metric == "l2" else faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery.numpy())
    return index


def max_sq_norm(gallery: Tensor) -> float:
    """The largest squared row norm of ``gallery``, in float64 (computed in row blocks)."""
    step = max(1, RERANK_ELEMENTS // max(1, gallery.shape[1]))
    return max(float(gallery[i : i + step].double().square().sum(dim=1).max()) for i in range(0, len(gallery), step))


def on_cpu(x: Tensor) -> Tensor:
    """``x`` detached and on the CPU, in its own dtype (no copy when it is already there)."""
    return x.detach().cpu()
