"""Retrieval metrics computed exactly from a streaming kNN: OML's definitions plus the peers' variants.

Entry point: :func:`retrieval_metrics`, returning a :class:`MetricsResult`. The per-query helpers
(:func:`cmc_at_k`, :func:`precision_at_k`, ...) take a boolean top-k relevance mask ``gt`` ``(Q, K)``
(``gt[q, i]``: the ``i``-th retrieved gallery row of query ``q`` has the query's label) and the number
of positives per query ``n_pos`` ``(Q,)``, and return float ``(Q,)`` values. Every formula is written
in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from omlcore.protocols import KnnBackend
from omlcore_metrics.knn import (
    Exclusions,
    TorchKnn,
    _equal_pairs,
    _ExclusionPlan,
    excluded_counts,
    knn_with_exclusions,
    pair_distances,
)

__all__ = [
    "OVERALL",
    "MetricsResult",
    "NoPositivePolicy",
    "cmc_at_k",
    "fnmr_at_fmr",
    "map_at_k",
    "map_at_r",
    "mrr_at_k",
    "ndcg_at_k",
    "pcf",
    "precision_at_k",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
]

OVERALL = "OVERALL"
NoPositivePolicy = Literal["raise", "skip", "miss"]
MetricKey = int | float | str
_POLICIES = ("raise", "skip", "miss")


# --------------------------------------------------------------------------------------------------
# Pure per-query helpers on top-k relevance masks.
# --------------------------------------------------------------------------------------------------


def _hits(gt: Tensor, k: int) -> Tensor:
    return gt[:, :k].sum(1).double()


def cmc_at_k(gt: Tensor, k: int) -> Tensor:
    """1 if a positive is among the first ``k`` retrieved rows, else 0 (OML's cmc@k; DML papers' Recall@k)."""
    return gt[:, :k].any(1).double()


def precision_at_k(gt: Tensor, n_pos: Tensor, k: int) -> Tensor:
    """OML's precision@k: hits in the top ``k`` divided by ``min(k, n_pos)`` (NaN where ``n_pos == 0``)."""
    denom = torch.clamp(n_pos.double(), max=k)
    return _hits(gt, k) / denom.where(denom > 0, torch.tensor(math.nan, dtype=torch.double))


def map_at_k(gt: Tensor, k: int) -> Tensor:
    """OML's map@k: ``(1/h) sum_{i<=k} P@i * gt_i``, ``h`` = hits within the top ``k``; 0 without hits."""
    g = gt[:, :k].double()
    ranks = torch.arange(1, g.shape[1] + 1, dtype=torch.double)
    cum = g.cumsum(1)
    total = (cum / ranks * g).sum(1)
    hits = g.sum(1)
    return torch.where(hits > 0, total / hits.clamp(min=1), torch.zeros_like(total))


def recall_at_k(gt: Tensor, n_pos: Tensor, k: int) -> Tensor:
    """IR recall@k: hits in the top ``k`` divided by ``n_pos`` (NaN where ``n_pos == 0``)."""
    n = n_pos.double()
    return _hits(gt, k) / n.where(n > 0, torch.tensor(math.nan, dtype=torch.double))


def mrr_at_k(gt: Tensor, k: int) -> Tensor:
    """Reciprocal rank of the first positive within the top ``k``; 0 if there is none."""
    g = gt[:, :k]
    ranks = torch.arange(1, g.shape[1] + 1, dtype=torch.double)
    recip = torch.where(g, 1.0 / ranks, torch.zeros((), dtype=torch.double))
    return recip.max(1).values if g.shape[1] else torch.zeros(g.shape[0], dtype=torch.double)


def ndcg_at_k(gt: Tensor, n_pos: Tensor, k: int) -> Tensor:
    """Binary-relevance nDCG@k: ``sum_{i<=k} gt_i / log2(i+1)`` over the ideal value for ``min(k, n_pos)``
    positives (NaN where ``n_pos == 0``)."""
    g = gt[:, :k].double()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.double))
    dcg = (g * discount[: g.shape[1]]).sum(1)
    ideal_cum = torch.cat([torch.zeros(1, dtype=torch.double), discount.cumsum(0)])
    idcg = ideal_cum[torch.clamp(n_pos.long(), max=k)]
    return dcg / idcg.where(idcg > 0, torch.tensor(math.nan, dtype=torch.double))


def map_at_r(gt: Tensor, n_pos: Tensor) -> Tensor:
    """PML's MAP@R: ``(1/R) sum_{i<=R} P@i * gt_i`` with ``R = n_pos`` (NaN where ``R == 0``).

    ``gt`` must hold at least ``max(n_pos)`` columns (or all admissible gallery rows).
    """
    g = gt.double()
    ranks = torch.arange(1, g.shape[1] + 1, dtype=torch.double)
    within = ranks[None, :] <= n_pos.double()[:, None]
    total = (g.cumsum(1) / ranks * g * within).sum(1)
    r = n_pos.double()
    return total / r.where(r > 0, torch.tensor(math.nan, dtype=torch.double))


def r_precision(gt: Tensor, n_pos: Tensor) -> Tensor:
    """R-precision: hits within the top ``R = n_pos`` divided by ``R`` (NaN where ``R == 0``)."""
    ranks = torch.arange(1, gt.shape[1] + 1)
    hits = (gt & (ranks[None, :] <= n_pos[:, None])).sum(1).double()
    r = n_pos.double()
    return hits / r.where(r > 0, torch.tensor(math.nan, dtype=torch.double))


_AT_K: dict[str, Callable[..., Tensor]] = {
    "cmc": lambda gt, n_pos, k: cmc_at_k(gt, k),
    "precision": precision_at_k,
    "map": lambda gt, n_pos, k: map_at_k(gt, k),
    "recall": recall_at_k,
    "mrr": lambda gt, n_pos, k: mrr_at_k(gt, k),
    "ndcg": ndcg_at_k,
}
_AT_R: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"map_at_r": map_at_r, "r_precision": r_precision}


def _per_query_tables(
    wanted: Mapping[str, Sequence[MetricKey]],
    gt: Tensor,
    n_pos: Tensor,
    n_gallery: int,
    no_pos: Tensor,
    no_positive: NoPositivePolicy,
) -> tuple[dict[str, dict[MetricKey, Tensor]], Tensor]:
    """The per-query values of the ``wanted`` metrics (name -> keys: ``k`` for the ranked metrics, clipped
    to the gallery; ``"R"`` for map_at_r and r_precision) from the relevance matrix ``gt`` of a ranked
    result, with the no-positive queries filled per ``no_positive``; and the mask of queries that count."""
    per_query: dict[str, dict[MetricKey, Tensor]] = {}
    for metric, keys in wanted.items():
        if metric in _AT_K:
            per_query[metric] = {k: _AT_K[metric](gt, n_pos, min(int(k), n_gallery)) for k in keys}
        elif metric in _AT_R:
            per_query[metric] = {k: _AT_R[metric](gt, n_pos) for k in keys}
        else:
            raise ValueError(f"no per-query definition for the metric {metric!r}")
    if no_pos.numel():
        fill = math.nan if no_positive == "skip" else 0.0
        for values in per_query.values():
            for v in values.values():
                v[no_pos] = fill
    scored = n_pos > 0 if no_positive == "skip" else torch.ones(gt.shape[0], dtype=torch.bool)
    return per_query, scored


def _group_tables(
    per_query: Mapping[str, Mapping[MetricKey, Tensor]], group_queries: Mapping[str, Tensor], scored: Tensor
) -> tuple[dict[str, dict[str, dict[MetricKey, float]]], dict[str, dict[str, dict[MetricKey, Tensor]]]]:
    """``(reduced, unreduced)`` per group: each group's queries' values, and their mean over the scored ones."""
    reduced: dict[str, dict[str, dict[MetricKey, float]]] = {}
    unreduced: dict[str, dict[str, dict[MetricKey, Tensor]]] = {}
    for name, members in group_queries.items():
        keep = members[scored[members]]
        unreduced[name] = {m: {key: v[members] for key, v in values.items()} for m, values in per_query.items()}
        reduced[name] = {
            m: {key: float(v[keep].mean()) if keep.numel() else math.nan for key, v in values.items()}
            for m, values in per_query.items()
        }
    return reduced, unreduced


def _quantile_linear(sorted_values: Tensor, q: float) -> float:
    """numpy's default (linear) quantile of an ascending 1-D tensor."""
    n = sorted_values.shape[0]
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return _lerp(float(sorted_values[lo]), float(sorted_values[hi]), pos - lo)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation between ``a`` and ``b`` (stable near both ends)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def fnmr_at_fmr(pos_dist: Tensor, neg_dist: Tensor, fmr_vals: Sequence[float]) -> dict[float, float]:
    """False non-match rate at each false match rate, on explicit distance lists (small data, tests).

    ``fnmr@fmr = mean(pos_dist >= quantile(neg_dist, fmr))`` with numpy's linear-interpolation quantile.
    :func:`retrieval_metrics` computes the same value without materialising ``neg_dist``.
    """
    _check_fmr(fmr_vals)
    neg = neg_dist.flatten().double().sort().values
    pos = pos_dist.flatten().double()
    out: dict[float, float] = {}
    for fmr in fmr_vals:
        if neg.numel() == 0 or pos.numel() == 0:
            out[fmr] = math.nan
            continue
        threshold = _quantile_linear(neg, fmr)
        out[fmr] = float((pos >= threshold).double().mean())
    return out


def pcf(embeddings: Tensor, variances: Sequence[float]) -> dict[float, float]:
    """Principal-component fraction (OML): the share ``n/D`` of principal components needed to explain a
    fraction ``r`` of the variance.

    PCA is the SVD of the centred embeddings (float64); with cumulative explained-variance ratios ``c``
    (``min(N, D)`` of them), ``n = searchsorted(c, r, side="right") + 1``, capped at ``D``. NaN (with a
    warning) for fewer than two rows or zero variance.
    """
    _check_pcf(variances)
    x = embeddings.detach().double().cpu()
    n_dim = x.shape[1]
    out = {float(r): math.nan for r in variances}
    if x.shape[0] < 2:
        warnings.warn("pcf needs at least two embeddings; reporting NaN", RuntimeWarning, stacklevel=2)
        return out
    s = torch.linalg.svdvals(x - x.mean(0, keepdim=True))
    var = s * s
    total = var.sum()
    if not bool(total > 0):
        warnings.warn("pcf: the embeddings have zero variance; reporting NaN", RuntimeWarning, stacklevel=2)
        return out
    cum = (var / total).cumsum(0)
    for r in variances:
        n = int(torch.searchsorted(cum, torch.tensor([float(r)], dtype=torch.double), right=True).item()) + 1
        out[float(r)] = min(n, n_dim) / n_dim
    return out


# --------------------------------------------------------------------------------------------------
# The result object.
# --------------------------------------------------------------------------------------------------


@dataclass
class MetricsResult:
    """What :func:`retrieval_metrics` computed.

    - ``reduced[group][metric][key]``: the mean over the group's scored queries (``group`` is
      ``"OVERALL"`` or a category name as ``str``; ``metric`` e.g. ``"cmc"``, ``key`` e.g. ``1``).
      ``fnmr@fmr`` and ``pcf`` are not per query and appear only here.
    - ``unreduced[group][metric][key]``: float64 ``(Q_group,)`` per-query values, in the order of
      ``group_queries[group]``; NaN for a query skipped by the ``"skip"`` policy.
    - ``query_rows`` / ``gallery_rows``: positions in ``embeddings`` of the queries and gallery rows.
    - ``distances`` / ``retrieved`` ``(Q, K)``: the retrieval result (``K`` = the largest depth any metric
      needed, at most ``G``); ``retrieved`` holds gallery positions (index into ``gallery_rows``),
      ``-1`` with distance ``inf`` where a query has fewer admissible gallery rows.
    - ``gt`` ``(Q, K)``: whether each retrieved row is a positive; ``n_positives`` ``(Q,)``: admissible
      positives of each query in the whole gallery.
    - ``no_positive_queries``: query positions (into ``query_rows``) without any admissible positive.
    - ``group_queries[group]``: query positions of the group (``OVERALL``: all).
    """

    reduced: dict[str, dict[str, dict[MetricKey, float]]]
    unreduced: dict[str, dict[str, dict[MetricKey, Tensor]]]
    query_rows: Tensor
    gallery_rows: Tensor
    distances: Tensor
    retrieved: Tensor
    gt: Tensor
    n_positives: Tensor
    no_positive_queries: Tensor
    group_queries: dict[str, Tensor] = field(default_factory=dict)

    def flat(self, sep: str = "/") -> dict[str, float]:
        """``{"OVERALL/cmc/1": 0.5, "<category>/map/5": ...}``: every reduced value under a flat name."""
        return {
            f"{group}{sep}{metric}{sep}{key}": value
            for group, metrics in self.reduced.items()
            for metric, values in metrics.items()
            for key, value in values.items()
        }

    def retrieved_rows(self) -> Tensor:
        """``(Q, K)`` positions in ``embeddings`` of the retrieved gallery rows (``-1`` for padding)."""
        rows = self.gallery_rows[self.retrieved.clamp(min=0)]
        return torch.where(self.retrieved >= 0, rows, torch.full_like(rows, -1))


# --------------------------------------------------------------------------------------------------
# Validation and factorisation.
# --------------------------------------------------------------------------------------------------


def _check_ks(name: str, ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(ks)
    for k in out:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
            raise ValueError(f"{name}: every k must be a positive int, got {k!r}")
    return tuple(int(k) for k in out)


def _check_fmr(values: Iterable[float]) -> tuple[float, ...]:
    out = tuple(values)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"fmr_vals: every value must be a number in [0, 1], got {v!r}")
    return tuple(float(v) for v in out)


def _check_pcf(values: Iterable[float]) -> tuple[float, ...]:
    out = tuple(values)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 < float(v) <= 1.0:
            raise ValueError(f"pcf_variance: every value must be a number in (0, 1], got {v!r}")
    return tuple(float(v) for v in out)


def _factorize(values: Any, name: str, n: int, allow_none: bool = False) -> Tensor:
    """Integer codes ``(n,)`` for per-row values (ints or strings, not a mix); ``None`` entries (when
    allowed) get codes of their own, distinct from each other and from every value."""
    if isinstance(values, Tensor):
        if values.ndim != 1 or values.shape[0] != n:
            raise ValueError(f"{name} has shape {tuple(values.shape)}, expected ({n},)")
        if values.is_floating_point() or values.is_complex():
            raise TypeError(f"{name} must hold integers or strings, got a {values.dtype} tensor")
        inverse: Tensor = torch.unique(values.cpu(), return_inverse=True)[1]
        return inverse.long()
    items = list(values.tolist() if isinstance(values, np.ndarray) else values)
    if len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries, expected {n}")
    kinds: set[str] = set()
    for v in items:
        if v is None and allow_none:
            continue
        if isinstance(v, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(v, numbers.Integral):
            kinds.add("int")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            raise TypeError(f"{name} must hold integers or strings, got {type(v).__name__} ({v!r})")
    if len(kinds) > 1:
        raise TypeError(f"{name} mixes value types {sorted(kinds)}; use one type (all int or all str)")
    present = [i for i, v in enumerate(items) if v is not None]
    codes = torch.empty(n, dtype=torch.long)
    if present:
        uniq, inv = np.unique(np.asarray([items[i] for i in present]), return_inverse=True)
        codes[present] = torch.as_tensor(inv.reshape(-1), dtype=torch.long)
        next_code = len(uniq)
    else:
        next_code = 0
    missing = [i for i, v in enumerate(items) if v is None]
    if missing:
        codes[missing] = torch.arange(next_code, next_code + len(missing))
    return codes


def _bool_mask(values: Any, name: str, n: int) -> Tensor:
    t = torch.as_tensor(values).cpu()
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},)")
    if t.dtype != torch.bool:
        if t.is_floating_point() or not bool(((t == 0) | (t == 1)).all()):
            raise TypeError(f"{name} must be boolean (or 0/1), got {t.dtype}")
        t = t.bool()
    return t


def _resolve_backend(backend: KnnBackend | str) -> KnnBackend:
    if not isinstance(backend, str):
        if not hasattr(backend, "search"):
            raise TypeError(f"backend must be a KnnBackend or a name, got {type(backend).__name__}")
        return backend
    if backend == "torch":
        return TorchKnn()
    from omlcore.registry import build

    built: KnnBackend = build("knn", {"name": backend, "args": {}})
    return built


# --------------------------------------------------------------------------------------------------
# Streaming fnmr@fmr, fallback: exact quantile of all negative pair distances by a two-pass radix select.
# --------------------------------------------------------------------------------------------------

_BINS = 1 << 16


def _sortable_keys(d: Tensor) -> Tensor:
    """int64 keys whose order is the order of the float32 values ``d``."""
    bits = d.float().contiguous().view(torch.int32).long()
    return torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _key_to_float(key: int) -> float:
    bits = key if key >= 0 else key ^ 0x7FFFFFFF
    return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32).item())


def _stream_fnmr_radix(
    knn: TorchKnn,
    q_emb: Tensor,
    g_emb: Tensor,
    q_lab: Tensor,
    g_lab: Tensor,
    exclusions: Exclusions,
    q_group: Tensor,
    groups: list[str],
    fmr_vals: tuple[float, ...],
) -> dict[str, dict[float, float]]:
    """fnmr@fmr for OVERALL (``groups[0]``) and every group ``c >= 1`` (queries with ``q_group == c``).

    Pass 1 keeps every admissible positive distance and a 65,536-bin histogram of the high 16 bits of
    every admissible negative distance per group; pass 2 histograms the low 16 bits inside the bins that
    hold the wanted order statistics. Both passes recompute the same distance blocks.
    """
    n_groups = len(groups)
    q_emb, g_emb = q_emb.float(), g_emb.float()
    pairs = exclusions.ignore_pairs() if exclusions.ignore is not None else None
    pos_vals: list[Tensor] = []
    pos_group: list[Tensor] = []
    high_hist = torch.zeros(n_groups * _BINS, dtype=torch.long)

    def block_masks(q0: int, q1: int, g0: int, g1: int, dist: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        same = (q_lab[q0:q1, None] == g_lab[None, g0:g1]).to(dist.device)
        excl = exclusions.block_mask(q0, q1, g0, g1, pairs)
        ok = torch.ones_like(same) if excl is None else ~excl.to(dist.device)
        rows = q_group[q0:q1].to(dist.device)[:, None].expand_as(same)
        return same & ok, ~same & ok, rows

    for q0, q1, g0, g1, dist in knn.blocks(q_emb, g_emb):
        pos, neg, rows = block_masks(q0, q1, g0, g1, dist)
        pos_vals.append(dist[pos].double().cpu())
        pos_group.append(rows[pos].cpu())
        keys = _sortable_keys(dist[neg])
        high = (keys >> 16) + _BINS // 2
        grp = rows[neg].long()
        high_hist += torch.bincount((grp * _BINS + high).cpu(), minlength=n_groups * _BINS)
        high_hist[:_BINS] += torch.bincount(high.cpu(), minlength=_BINS) if n_groups > 1 else 0
    # Rows are tagged with their category (>= 1) when there are categories; OVERALL (row 0) then got
    # its own bincount above.
    hist = high_hist.view(n_groups, _BINS)
    pos_all = torch.cat(pos_vals) if pos_vals else torch.zeros(0, dtype=torch.double)
    pos_grp = torch.cat(pos_group) if pos_group else torch.zeros(0, dtype=torch.long)

    # The ranks wanted per (group, fmr): floor and ceil of fmr * (n - 1).
    wanted: dict[tuple[int, int], int] = {}  # (group, rank) -> slot
    targets: list[tuple[int, int, int, int]] = []  # (group, rank, high bin, rank within bin)
    cum = hist.cumsum(1)
    n_neg = hist.sum(1)
    for gi in range(n_groups):
        n = int(n_neg[gi])
        if n == 0:
            continue
        for fmr in fmr_vals:
            pos_r = fmr * (n - 1)
            for rank in {math.floor(pos_r), min(math.floor(pos_r) + 1, n - 1)}:
                if (gi, rank) in wanted:
                    continue
                b = int(torch.searchsorted(cum[gi], torch.tensor([rank]), right=True).item())
                before = int(cum[gi, b - 1]) if b > 0 else 0
                wanted[(gi, rank)] = len(targets)
                targets.append((gi, rank, b, rank - before))
    values: dict[tuple[int, int], float] = {}
    if targets:
        bin_ids = sorted({(gi, b) for gi, _, b, _ in targets})
        slot_of = {gb: s for s, gb in enumerate(bin_ids)}
        table = torch.full((n_groups, _BINS), -1, dtype=torch.long)
        for (gi, b), s in slot_of.items():
            table[gi, b] = s
        low_hist = torch.zeros(len(bin_ids) * _BINS, dtype=torch.long)
        for q0, q1, g0, g1, dist in knn.blocks(q_emb, g_emb):
            _, neg, rows = block_masks(q0, q1, g0, g1, dist)
            keys = _sortable_keys(dist[neg]).cpu()
            high = (keys >> 16) + _BINS // 2
            low = keys & 0xFFFF
            grp = rows[neg].long().cpu()
            tagged = [grp] if n_groups == 1 else [grp, torch.zeros_like(grp)]
            for g_ids in tagged:
                slot = table[g_ids, high]
                sel = slot >= 0
                low_hist += torch.bincount(slot[sel] * _BINS + low[sel], minlength=len(bin_ids) * _BINS)
        low_cum = low_hist.view(len(bin_ids), _BINS).cumsum(1)
        for gi, rank, b, within in targets:
            s = slot_of[(gi, b)]
            low_bits = int(torch.searchsorted(low_cum[s], torch.tensor([within]), right=True).item())
            values[(gi, rank)] = _key_to_float((b - _BINS // 2) * _BINS + low_bits)

    out: dict[str, dict[float, float]] = {}
    for gi, name in enumerate(groups):
        n = int(n_neg[gi])
        pos = pos_all if gi == 0 else pos_all[pos_grp == gi]
        res: dict[float, float] = {}
        for fmr in fmr_vals:
            if n == 0 or pos.numel() == 0:
                res[fmr] = math.nan
                continue
            pos_r = fmr * (n - 1)
            lo = math.floor(pos_r)
            hi = min(lo + 1, n - 1)
            threshold = _lerp(values[(gi, lo)], values[(gi, hi)], pos_r - lo)
            res[fmr] = float((pos >= threshold).double().mean())
        out[name] = res
    return out


# --------------------------------------------------------------------------------------------------
# Streaming fnmr@fmr, fast path: one pass that counts below a bracket and keeps the values inside it.
# --------------------------------------------------------------------------------------------------

_FNMR_ROWS = 2048
"""Queries of a group in the random grid sample that places its brackets ..."""
_FNMR_COLS = 1024
"""... times this many random gallery rows (one matrix product)."""
_FNMR_SMALL = 1 << 22
"""Groups with at most this many negative pairs keep all of them (no sampling, the bracket is everything)."""
_FNMR_KEEP = 1 << 25
"""At most this many distances (128 MiB) are expected inside the brackets; beyond, the radix select runs."""
_FNMR_Z = 8.0
"""Half-width of a bracket in standard errors of the sample quantile ..."""
_FNMR_PAD = 16
"""... widened to at least this many sample values on each side."""
_FNMR_BATCHES = 16
"""Row (and column) batches of the grid whose quantiles give the standard error (batch means)."""


def _row_counts(mask: Tensor) -> Tensor:
    """Number of ``True`` per row of a boolean block (a byte sum: much faster than ``bool.sum``)."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32)


def _pairs_in(
    pairs: tuple[Tensor, Tensor] | None, g0: int, g1: int, device: torch.device
) -> tuple[Tensor, Tensor] | None:
    """The query-sorted pairs whose gallery row lies in ``[g0, g1)``, columns relative to ``g0``."""
    if pairs is None:
        return None
    inside = (pairs[1] >= g0) & (pairs[1] < g1)
    return pairs[0][inside].to(device), (pairs[1][inside] - g0).to(device)


def _fnmr_ranks(n: int, fmr: float) -> tuple[int, int]:
    """The two order statistics ``numpy.quantile`` interpolates between for ``fmr`` among ``n`` values."""
    pos_r = fmr * (n - 1)
    lo = math.floor(pos_r)
    return lo, min(lo + 1, n - 1)


def _sample_grid(
    knn: TorchKnn,
    q_emb: Tensor,
    g_emb: Tensor,
    q_lab: Tensor,
    g_lab: Tensor,
    exclusions: Exclusions,
    members: Tensor,
    seed: int,
) -> Tensor:
    """Distances of a random grid of (query in ``members``) x (gallery row) pairs, ``NaN`` where the pair is
    not an admissible negative (same label or excluded): ``(R, C)`` float32 from one matrix product."""
    gen = torch.Generator().manual_seed(seed)
    rows = members[torch.randperm(members.numel(), generator=gen)[:_FNMR_ROWS]]
    cols = torch.randperm(g_emb.shape[0], generator=gen)[:_FNMR_COLS]
    grid = pair_distances(q_emb[rows.to(q_emb.device)].float(), g_emb[cols.to(g_emb.device)].float(), knn.metric).cpu()
    bad = q_lab[rows][:, None] == g_lab[cols][None, :]
    for q_key, g_key in (
        (exclusions.query_ids, exclusions.gallery_ids),
        (exclusions.query_sequence, exclusions.gallery_sequence),
    ):
        if q_key is not None and g_key is not None:
            bad |= q_key[rows][:, None] == g_key[cols][None, :]
    if exclusions.ignore is not None:
        pq, pg = exclusions.ignore_pairs()
        if pq.numel():
            n_g = g_emb.shape[0]
            bad |= torch.isin(rows[:, None] * n_g + cols[None, :], pq * n_g + pg)
    return grid.masked_fill_(bad, math.nan)


class _GridSample:
    """A grid from :func:`_sample_grid`, sorted once: all its values, and those of each row batch and
    each column batch (for the batch-means standard error)."""

    def __init__(self, grid: Tensor) -> None:
        self.values = grid[~torch.isnan(grid)].sort().values
        self.parts: list[list[Tensor]] = []
        for dim in (0, 1):
            parts = [part[~torch.isnan(part)].sort().values for part in grid.chunk(_FNMR_BATCHES, dim=dim)]
            self.parts.append([part for part in parts if part.numel()])


def _quantile_at(sorted_values: Tensor, p: float) -> float:
    return float(sorted_values[min(int(p * sorted_values.numel()), sorted_values.numel() - 1)])


def _bracket(sample: _GridSample, p_lo: float, p_hi: float) -> tuple[float, float, float]:
    """``(a, b, share)``: a value range that holds the ``p_lo`` .. ``p_hi`` quantiles of the population the
    grid samples, with a margin of :data:`_FNMR_Z` standard errors (batch means over row batches plus
    column batches, so queries and gallery rows that differ in their distances widen it), and the share of
    the sample inside it. Near the ends the range is open (``-inf`` / ``inf``)."""
    values = sample.values
    m = values.numel()
    if m == 0:
        return -math.inf, math.inf, 1.0
    var = 0.0
    for parts in sample.parts:
        if len(parts) > 1:
            for p in (p_lo, p_hi):
                q = torch.tensor([_quantile_at(part, p) for part in parts], dtype=torch.double)
                var += float(q.var()) / len(parts) / 2.0  # the mean over p_lo and p_hi, per axis
    se = math.sqrt(var)
    i_lo, i_hi = int(p_lo * m), int(p_hi * m)
    a = min(_quantile_at(values, p_lo) - _FNMR_Z * se, float(values[max(i_lo - _FNMR_PAD, 0)]))
    b = max(_quantile_at(values, p_hi) + _FNMR_Z * se, float(values[min(i_hi + _FNMR_PAD, m - 1)]))
    if i_lo < 4 * _FNMR_PAD:
        a = -math.inf
    if m - 1 - i_hi < 4 * _FNMR_PAD:
        b = math.inf
    share = float(((values >= a) & (values <= b)).double().mean())
    return a, b, share


def _stream_fnmr(
    knn: TorchKnn,
    q_emb: Tensor,
    g_emb: Tensor,
    q_lab: Tensor,
    g_lab: Tensor,
    exclusions: Exclusions,
    q_group: Tensor,
    groups: list[str],
    fmr_vals: tuple[float, ...],
    n_pos: Tensor,
) -> dict[str, dict[float, float]]:
    """fnmr@fmr for OVERALL (``groups[0]``) and every group ``c >= 1`` (queries with ``q_group == c``),
    over the same distances (:meth:`TorchKnn.blocks`) and with the same result as :func:`_stream_fnmr_radix`.

    The negatives' order statistics are found in ONE pass over the distance blocks: a random grid of
    (query, gallery row) pairs (:func:`_sample_grid`) places, per group and fmr, a bracket ``[a, b]`` that
    holds the wanted ranks with overwhelming probability (:func:`_bracket`); the pass counts, per query,
    the negatives below ``a`` and keeps the (few) negatives inside the bracket; the wanted values are then
    read off exactly. Small groups keep all
    their negatives. A bracket that missed its ranks (or would keep too many values) hands that case to
    the two-pass radix select, so the result is exact in every case.
    """
    n_q, n_g = q_emb.shape[0], g_emb.shape[0]
    n_groups = len(groups)
    members = [torch.arange(n_q)] + [(q_group == gi).nonzero().flatten() for gi in range(1, n_groups)]
    neg_q = n_g - excluded_counts(exclusions, n_q, n_g) - n_pos  # admissible negatives of each query
    n_neg = [int(neg_q[m].sum()) for m in members]

    # ---- one bracket per (group, fmr): slots of per-query thresholds ----
    inf = math.inf
    # per slot: (a, b) float32 (n_q,) per query (-inf/-inf: no bracket), and whether queries differ in them
    slots: list[tuple[Tensor, Tensor, bool]] = []
    wanted: list[tuple[int, int, float, int, int]] = []  # (slot, group, fmr, lo rank, hi rank)
    expected = 0.0
    grids: dict[int, _GridSample] = {}
    for first, last in ((0, 1), (1, n_groups)):
        for fmr in fmr_vals:
            a = torch.full((n_groups,), -inf)
            b = torch.full((n_groups,), -inf)
            used = False
            for gi in range(first, last):
                n = n_neg[gi]
                if n == 0 or members[gi].numel() == 0:
                    continue
                lo, hi = _fnmr_ranks(n, fmr)
                used = True
                wanted.append((len(slots), gi, fmr, lo, hi))
                if n <= _FNMR_SMALL:
                    a[gi], b[gi] = -inf, inf
                    expected += n
                    continue
                if gi not in grids:
                    grid = _sample_grid(knn, q_emb, g_emb, q_lab, g_lab, exclusions, members[gi], seed=gi)
                    grids[gi] = _GridSample(grid)
                a[gi], b[gi], share = _bracket(grids[gi], (lo + 0.5) / n, (hi + 0.5) / n)
                expected += n * share
            if used:
                row_group = torch.zeros(n_q, dtype=torch.long) if first == 0 else q_group
                slots.append((a[row_group], b[row_group], first > 0))
    del grids
    if not slots:
        return {name: {fmr: math.nan for fmr in fmr_vals} for name in groups}
    if expected > _FNMR_KEEP:
        return _stream_fnmr_radix(knn, q_emb, g_emb, q_lab, g_lab, exclusions, q_group, groups, fmr_vals)

    # ---- the pass ----
    q_emb, g_emb = q_emb.float(), g_emb.float()
    device = knn.device or q_emb.device
    plan = _ExclusionPlan(exclusions, n_q, n_g, device)
    positives = _equal_pairs(q_lab, g_lab, 8 * (n_q + n_g) + 1024)
    dense_labels = positives is None
    q_lab_d, g_lab_d = q_lab.to(device), g_lab.to(device)
    slots_d = [(a.to(device), b.to(device)) for a, b, _ in slots]
    below = [torch.zeros(n_q, dtype=torch.long) for _ in slots]  # per query, or the total in [0]
    kept: list[list[Tensor]] = [[] for _ in slots]
    kept_rows: list[list[tuple[int, Tensor]]] = [[] for _ in slots]  # (q0, kept count of each row)
    pos_vals: list[Tensor] = []
    pos_rows: list[Tensor] = []
    chunks = {g0: min(g0 + knn.gallery_chunk, n_g) for g0 in range(0, n_g, knn.gallery_chunk)}
    excl_by_chunk = {g0: plan.for_gallery(g0, g1) for g0, g1 in chunks.items()}
    pos_by_chunk = {g0: _pairs_in(positives, g0, g1, device) for g0, g1 in chunks.items()}
    for q0, q1, g0, g1, dist in knn.blocks(q_emb, g_emb):
        pos_pairs = pos_by_chunk[g0]
        plan.apply(dist, (q0, q1), g0, g1, excl_by_chunk[g0], fill=math.nan)
        if dense_labels:
            same = q_lab_d[q0:q1, None] == g_lab_d[None, g0:g1]
            pv = dist[same]
            per_row = _row_counts(same)
            dist.masked_fill_(same, math.nan)
            ok = ~torch.isnan(pv)
            pos_vals.append(pv[ok].double().cpu())
            pos_rows.append(torch.repeat_interleave(torch.arange(q0, q1, device=device), per_row)[ok].cpu())
        elif pos_pairs is not None:
            lo, hi = (int(v) for v in torch.searchsorted(pos_pairs[0], torch.tensor([q0, q1], device=device)))
            if hi > lo:
                r, c = pos_pairs[0][lo:hi], pos_pairs[1][lo:hi]
                pv = dist[r - q0, c]
                ok = ~torch.isnan(pv)
                pos_vals.append(pv[ok].double().cpu())
                pos_rows.append(r[ok].cpu())
                dist[r - q0, c] = math.nan
        for s, (a, b) in enumerate(slots_d):
            if slots[s][2]:  # thresholds per query (categories); counts per query
                lower = torch.lt(dist, a[q0:q1, None])
                inside = torch.le(dist, b[q0:q1, None]).logical_xor_(lower)  # a <= d <= b (NaN in neither)
                below[s][q0:q1] += _row_counts(lower).cpu()
                kept_rows[s].append((q0, _row_counts(inside).cpu()))
            else:  # one bracket for every query: totals only
                lower = torch.lt(dist, float(a[0]))
                inside = torch.le(dist, float(b[0])).logical_xor_(lower)
                below[s][0] += int(torch.count_nonzero(lower))
            kept[s].append(dist[inside].cpu())

    # ---- read the order statistics off ----
    pos_all = torch.cat(pos_vals) if pos_vals else torch.zeros(0, dtype=torch.double)
    pos_row = torch.cat(pos_rows) if pos_rows else torch.zeros(0, dtype=torch.long)
    found: dict[tuple[int, float], tuple[float, float]] = {}
    missed = False
    for s, gi, fmr, lo, hi in wanted:
        if slots[s][2]:
            in_group = torch.zeros(n_q, dtype=torch.bool)
            in_group[members[gi]] = True
            take = [torch.repeat_interleave(in_group[q0 : q0 + c.numel()], c) for q0, c in kept_rows[s]]
            vals = torch.cat(kept[s])[torch.cat(take)].sort().values
            start = int(below[s][members[gi]].sum())
        else:
            vals = torch.cat(kept[s]).sort().values
            start = int(below[s][0])
        if start <= lo and hi < start + vals.numel():
            found[(gi, fmr)] = (float(vals[lo - start]), float(vals[hi - start]))
        else:
            missed = True
    if missed:
        return _stream_fnmr_radix(knn, q_emb, g_emb, q_lab, g_lab, exclusions, q_group, groups, fmr_vals)

    out: dict[str, dict[float, float]] = {}
    pos_grp = q_group[pos_row]
    for gi, name in enumerate(groups):
        pos = pos_all if gi == 0 else pos_all[pos_grp == gi]
        res: dict[float, float] = {}
        for fmr in fmr_vals:
            n = n_neg[gi]
            if n == 0 or pos.numel() == 0:
                res[fmr] = math.nan
                continue
            lo, _ = _fnmr_ranks(n, fmr)
            v_lo, v_hi = found[(gi, fmr)]
            threshold = _lerp(v_lo, v_hi, fmr * (n - 1) - lo)
            res[fmr] = float((pos >= threshold).double().mean())
        out[name] = res
    return out


# --------------------------------------------------------------------------------------------------
# The main function.
# --------------------------------------------------------------------------------------------------


def retrieval_metrics(
    embeddings: Tensor,
    labels: Any,
    is_query: Any,
    is_gallery: Any,
    *,
    categories: Any = None,
    sequence: Any = None,
    ignore: Sequence[Iterable[int]] | None = None,
    sample_ids: Any = None,
    cmc_top_k: Iterable[int] = (5,),
    precision_top_k: Iterable[int] = (5,),
    map_top_k: Iterable[int] = (5,),
    fmr_vals: Iterable[float] = (),
    pcf_variance: Iterable[float] = (),
    map_at_r: bool = False,
    r_precision: bool = False,
    recall_top_k: Iterable[int] = (),
    mrr_top_k: Iterable[int] = (),
    ndcg_top_k: Iterable[int] = (),
    no_positive: NoPositivePolicy = "skip",
    backend: KnnBackend | str = "torch",
    return_only_overall: bool = False,
) -> MetricsResult:
    """Retrieval metrics of ``N`` embeddings, each row a query, a gallery item or both.

    Arguments (per row, length ``N``): ``labels`` (ints or strings; rows with equal labels are
    positives), ``is_query``/``is_gallery`` (bool), ``categories`` (optional; metrics are also reported
    per category of the *query*, against the whole gallery), ``sequence`` (optional; a query never
    retrieves a gallery row of its own sequence; ``None`` entries belong to no sequence), ``sample_ids``
    (optional; a query never retrieves a gallery row with its own id; default: the row position, so a row
    that is both query and gallery never retrieves itself), ``ignore`` (optional, one entry per row:
    positions in ``embeddings`` of gallery rows that query must not retrieve; entries of non-query rows
    and positions of non-gallery rows are unused).

    Metrics (each ``k`` a positive int; a ``k`` above the gallery size is clipped with a warning and keeps
    its key): ``cmc``, ``precision`` (OML: hits / min(k, n_pos)), ``map`` (OML: normalised by hits in the
    top k), ``recall`` (hits / n_pos), ``mrr`` (first hit within k), ``ndcg``, ``map_at_r`` and
    ``r_precision`` (key ``"R"``), ``fnmr@fmr`` (keys the fmr values, ignored pairs never counted) and
    ``pcf`` (keys the variance fractions).

    ``no_positive``: queries without an admissible positive are ``"skip"``-ped (default: left out of the
    means, NaN per query, a warning names how many; ``result.no_positive_queries`` lists them),
    scored as a ``"miss"`` (0 for every per-query metric, with a warning) or make the call ``"raise"``
    ``ValueError``.

    ``backend``: a :class:`~omlcore.protocols.KnnBackend` or an ``omlcore.knn`` entry-point name
    (``"torch"``, ``"faiss"``...). fnmr@fmr always computes its distances with :class:`TorchKnn` (the
    backend itself when it is one, else with the backend's ``metric``).

    Raises ``ValueError``/``TypeError`` on bad input (non-finite embeddings, no queries, no gallery rows,
    mismatched lengths, mixed label types, k <= 0, unknown policy) before any search starts.
    """
    # ---- validation (cheap, before any search) ----
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"embeddings must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.ndim != 2 or not embeddings.is_floating_point():
        raise ValueError(
            f"embeddings must be a floating (N, D) tensor, got {embeddings.dtype} {tuple(embeddings.shape)}"
        )
    n = embeddings.shape[0]
    if not bool(torch.isfinite(embeddings).all()):
        bad = (~torch.isfinite(embeddings)).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"embeddings hold NaN or inf values (rows {bad}...)")
    if no_positive not in _POLICIES:
        raise ValueError(f"no_positive must be one of {list(_POLICIES)}, got {no_positive!r}")
    cmc_ks = _check_ks("cmc_top_k", cmc_top_k)
    prec_ks = _check_ks("precision_top_k", precision_top_k)
    map_ks = _check_ks("map_top_k", map_top_k)
    recall_ks = _check_ks("recall_top_k", recall_top_k)
    mrr_ks = _check_ks("mrr_top_k", mrr_top_k)
    ndcg_ks = _check_ks("ndcg_top_k", ndcg_top_k)
    fmrs = _check_fmr(fmr_vals)
    pcfs = _check_pcf(pcf_variance)
    if not (cmc_ks or prec_ks or map_ks or recall_ks or mrr_ks or ndcg_ks or fmrs or pcfs or map_at_r or r_precision):
        raise ValueError(
            "retrieval_metrics: no metric requested (every list is empty and map_at_r/r_precision are off)"
        )
    lab = _factorize(labels, "labels", n)
    isq = _bool_mask(is_query, "is_query", n)
    isg = _bool_mask(is_gallery, "is_gallery", n)
    if not bool(isq.any()):
        raise ValueError("retrieval_metrics: there are no queries (is_query is all False)")
    if not bool(isg.any()):
        raise ValueError("retrieval_metrics: there are no gallery rows (is_gallery is all False)")
    seq = _factorize(sequence, "sequence", n, allow_none=True) if sequence is not None else None
    ids = _factorize(sample_ids, "sample_ids", n) if sample_ids is not None else torch.arange(n)
    cat_names: list[str] = []
    cat_codes: Tensor | None = None
    if categories is not None:
        raw = categories.tolist() if isinstance(categories, (Tensor, np.ndarray)) else list(categories)
        cat_codes = _factorize(raw, "categories", n)
        names_by_code: dict[int, str] = {}
        for code, value in zip(cat_codes.tolist(), raw, strict=False):
            names_by_code.setdefault(code, str(value))
        cat_names = [names_by_code[c] for c in sorted(names_by_code)]
        if OVERALL in cat_names:
            raise ValueError(f"a category may not be named {OVERALL!r}")
    if ignore is not None and len(ignore) != n:
        raise ValueError(f"ignore has {len(ignore)} entries, expected one per row ({n})")
    knn = _resolve_backend(backend)

    q_rows = isq.nonzero().flatten()
    g_rows = isg.nonzero().flatten()
    n_q, n_g = q_rows.numel(), g_rows.numel()
    gallery_pos = torch.full((n,), -1, dtype=torch.long)
    gallery_pos[g_rows] = torch.arange(n_g)
    ignore_q: list[list[int]] | None = None
    if ignore is not None:
        ignore_q = []
        for r in q_rows.tolist():
            entries: list[int] = []
            for x in ignore[r]:
                xi = int(x)
                if not 0 <= xi < n:
                    raise ValueError(f"ignore[{r}] holds {x}, outside range(0, {n})")
                if gallery_pos[xi] >= 0:
                    entries.append(int(gallery_pos[xi]))
            ignore_q.append(entries)
    exclusions = Exclusions(
        query_ids=ids[q_rows],
        gallery_ids=ids[g_rows],
        query_sequence=seq[q_rows] if seq is not None else None,
        gallery_sequence=seq[g_rows] if seq is not None else None,
        ignore=ignore_q,
    )
    q_lab, g_lab = lab[q_rows], lab[g_rows]

    # ---- positives per query, exactly ----
    total_pos = _count_matches(q_lab, g_lab)
    n_pos = total_pos - excluded_counts(exclusions, n_q, n_g, q_lab, g_lab)
    no_pos = (n_pos == 0).nonzero().flatten()
    if no_pos.numel():
        msg = (
            f"{no_pos.numel()} of {n_q} queries have no positive in the gallery (after exclusions), "
            f"e.g. query rows {q_rows[no_pos[:5]].tolist()}"
        )
        if no_positive == "raise":
            raise ValueError(msg + "; pass no_positive='skip' or 'miss' to score them")
        action = "left out of the means" if no_positive == "skip" else "scored as misses"
        warnings.warn(f"{msg}; they are {action} (no_positive={no_positive!r})", RuntimeWarning, stacklevel=2)

    # ---- kNN to the depth every metric needs ----
    all_ks = (*cmc_ks, *prec_ks, *map_ks, *recall_ks, *mrr_ks, *ndcg_ks)
    clipped = sorted({k for k in all_ks if k > n_g})
    if clipped:
        warnings.warn(
            f"k values {clipped} exceed the gallery size {n_g}; they are clipped to {n_g} (keys unchanged)",
            UserWarning,
            stacklevel=2,
        )
    depth = max(all_ks, default=0)
    if map_at_r or r_precision:
        depth = max(depth, int(n_pos.max()))
    depth = min(depth, n_g)
    emb = embeddings.detach()
    if depth > 0:
        dist, idx = knn_with_exclusions(_rows(emb, q_rows), _rows(emb, g_rows), depth, knn, exclusions)
        dist, idx = dist.cpu(), idx.cpu()
    else:
        dist = torch.empty(n_q, 0, dtype=emb.dtype)
        idx = torch.empty(n_q, 0, dtype=torch.long)
    gt = (idx >= 0) & (g_lab[idx.clamp(min=0)] == q_lab[:, None])

    # ---- per-query values ----
    wanted: dict[str, Sequence[MetricKey]] = {
        "cmc": cmc_ks, "precision": prec_ks, "map": map_ks, "recall": recall_ks, "mrr": mrr_ks, "ndcg": ndcg_ks,
        "map_at_r": ["R"] if map_at_r else [], "r_precision": ["R"] if r_precision else [],
    }  # fmt: skip
    per_query, scored = _per_query_tables(
        {m: keys for m, keys in wanted.items() if keys}, gt, n_pos, n_g, no_pos, no_positive
    )

    # ---- groups: OVERALL plus categories (by the query's category) ----
    group_queries: dict[str, Tensor] = {OVERALL: torch.arange(n_q)}
    q_group = torch.zeros(n_q, dtype=torch.long)
    if cat_codes is not None and not return_only_overall:
        q_cat = cat_codes[q_rows]
        for code, name in enumerate(cat_names):
            members = (q_cat == code).nonzero().flatten()
            if members.numel():
                group_queries[name] = members
        q_group = q_cat + 1
    reduced, unreduced = _group_tables(per_query, group_queries, scored)

    # ---- fnmr@fmr over all admissible pairs, streamed ----
    if fmrs:
        fnmr_knn = knn if isinstance(knn, TorchKnn) else TorchKnn(metric=_knn_metric(knn))
        all_groups = [OVERALL] + (cat_names if cat_codes is not None and not return_only_overall else [])
        fnmr = _stream_fnmr(
            fnmr_knn, _rows(emb, q_rows), _rows(emb, g_rows), q_lab, g_lab, exclusions, q_group,
            all_groups, fmrs, n_pos,
        )  # fmt: skip
        for name, rates in fnmr.items():
            if name in reduced:
                reduced[name]["fnmr@fmr"] = {key: value for key, value in rates.items()}

    # ---- pcf over all embeddings of the group (categories: every row of the category) ----
    if pcfs:
        reduced[OVERALL]["pcf"] = {key: value for key, value in pcf(emb, pcfs).items()}
        if cat_codes is not None and not return_only_overall:
            for code, name in enumerate(cat_names):
                if name in reduced:
                    fractions = pcf(emb[(cat_codes == code).to(emb.device)], pcfs)
                    reduced[name]["pcf"] = {key: value for key, value in fractions.items()}

    return MetricsResult(
        reduced=reduced,
        unreduced=unreduced,
        query_rows=q_rows,
        gallery_rows=g_rows,
        distances=dist,
        retrieved=idx,
        gt=gt,
        n_positives=n_pos,
        no_positive_queries=no_pos,
        group_queries=group_queries,
    )


def _rows(emb: Tensor, rows: Tensor) -> Tensor:
    """``emb[rows]`` for sorted, distinct ``rows``; a view, not a copy, when they are one contiguous range."""
    if rows.numel() and int(rows[-1]) - int(rows[0]) + 1 == rows.numel():
        return emb[int(rows[0]) : int(rows[-1]) + 1]
    return emb[rows.to(emb.device)]


def _knn_metric(backend: KnnBackend) -> Literal["l2", "cosine", "dot"]:
    metric = str(getattr(backend, "metric", "l2"))
    if metric == "l2":
        return "l2"
    if metric == "cosine":
        return "cosine"
    if metric == "dot":
        return "dot"
    raise ValueError(f"backend metric {metric!r} is not one of 'l2', 'cosine', 'dot'")


def _count_matches(query_keys: Tensor, gallery_keys: Tensor) -> Tensor:
    """For each query, the number of gallery rows with the same key."""
    counts = torch.bincount(gallery_keys, minlength=int(max(query_keys.max(), gallery_keys.max())) + 1)
    return counts[query_keys]
