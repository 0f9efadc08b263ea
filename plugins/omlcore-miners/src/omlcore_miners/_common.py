"""Shared pieces of the miners: input validation, distances, rank selection and the extra-rows record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Memory",
    "RankRange",
    "all_triplets",
    "check_batch",
    "empty_triplets",
    "n_hard",
    "parse_rank_range",
    "sq_distances",
]


class Memory(NamedTuple):
    """The rows a miner's indices ``>= B`` refer to (see the README's extra-rows contract).

    ``features``: float ``(M, D)``; ``labels``: long ``(M,)``. Index ``B + j`` is row ``j``.
    """

    features: Tensor
    labels: Tensor


class MemoryRecorder:
    """Keeps the extra rows the last ``sample()`` call mined from, for :meth:`last_memory`."""

    _memory: Memory | None = None

    def last_memory(self) -> Memory:
        """The extra rows (indices ``>= B`` of the last result) of the last ``sample()`` call."""
        if self._memory is None:
            raise RuntimeError("last_memory() is available after the first sample() call")
        return self._memory


class RankRange(NamedTuple):
    """A 1-based inclusive range of ranks ``first..last``."""

    first: int
    last: int


def parse_rank_range(value: int | Sequence[int], name: str) -> RankRange:
    """``k`` -> ranks ``1..k``; ``[first, last]`` -> ranks ``first..last`` (1-based, inclusive)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int k >= 1 or a range [first, last], got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{name} must be >= 1 (the number of hardest items to keep), got {value}")
        return RankRange(1, value)
    items = list(value)
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be an int k >= 1 or a range [first, last] of two ints, got {value!r}")
    first, last = items
    if not 1 <= first <= last:
        raise ValueError(f"{name} range [first, last] needs 1 <= first <= last (1-based ranks), got {items}")
    return RankRange(first, last)


def check_batch(features: Tensor, labels: Tensor | Sequence[int]) -> Tensor:
    """Validate a batch; return the labels as a long tensor on the features' device.

    Raises ``TypeError``/``ValueError`` naming the problem for malformed input: features not a 2-D
    floating tensor; labels not a 1-D integer tensor of the same length on the same device; NaN or
    infinite features.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor (B, D), got {type(features).__name__}")
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels, device=features.device)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (B, D), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating tensor, got dtype {features.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (B,), got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels and features disagree on the batch size: {labels.shape[0]} labels, {features.shape[0]} rows"
        )
    if labels.device != features.device:
        raise ValueError(f"labels are on {labels.device}, features on {features.device}")
    detached = features.detach()
    if not bool(torch.isfinite(detached).all()):  # one reduction; the rows are counted only on error
        rows = (~torch.isfinite(detached)).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"features contain NaN or infinite values in {rows.numel()} of {features.shape[0]} rows "
            f"(first: row {int(rows[0])})"
        )
    return labels.long()


def empty_triplets(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Three empty long tensors."""
    empty = torch.empty(0, dtype=torch.long, device=device)
    return empty, empty.clone(), empty.clone()


# Rows are scaled by an exact power of two when an entry exceeds this, so that the squared norms (a sum of
# up to 2**24 squares) stay finite in float64; ordering is invariant under scaling.
_SCALE_ABOVE = 2.0**480


def _gram_distances(x: Tensor, y: Tensor) -> Tensor:
    """``|x|² + |y|² - 2·x·yᵀ`` clamped at 0, for float64 ``x`` and ``y`` (one matmul, two in-place passes)."""
    d2 = torch.addmm(y.square().sum(dim=1)[None, :], x, y.T, alpha=-2.0)
    return d2.add_(x.square().sum(dim=1)[:, None]).clamp_(min=0.0)


def sq_distances(x: Tensor, y: Tensor | None = None, *, y_starts_with_x: bool = False) -> Tensor:
    """Squared Euclidean distances ``(len(x), len(y))`` between detached rows, float64, for selection only.

    ``y=None`` means ``y = x``; ``y_starts_with_x=True`` says that ``y[:len(x)]`` is ``x`` (a pool whose
    first rows are the anchors: only ``y``'s rows are then looked at). The matrix-multiplication form
    ``|x|² + |y|² - 2·x·yᵀ`` (clamped at 0) is computed on float64 copies: exact for integer-valued
    features (sums below ``2**53``), so exact ties stay ties; for float32 features the error is about
    ``1e-16`` of the squared norms. The products are taken between *distinct* rows only and spread back, so
    equal rows get bit-equal distances to everything and distance exactly 0 to each other, whatever the
    matmul's rounding. The result is finite for finite features. Ordering by squared distance equals
    ordering by distance: no square root is taken.
    """
    if y is None:
        rows, a_stop, c_start = x.detach().double(), x.shape[0], 0
    elif y_starts_with_x:
        rows, a_stop, c_start = y.detach().double(), x.shape[0], 0
    else:
        rows, a_stop, c_start = torch.cat([x.detach().double(), y.detach().double()]), x.shape[0], x.shape[0]
    if rows.numel() == 0:
        return torch.zeros(a_stop, rows.shape[0] - c_start, dtype=torch.float64, device=rows.device)
    wide = x.dtype == torch.float64 or (y is not None and y.dtype == torch.float64)
    if wide and float(rows.abs().max()) > _SCALE_ABOVE:  # only float64 input can be this large
        rows = rows * 2.0**-600
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if unique.shape[0] == rows.shape[0]:  # all rows distinct: the rows themselves, no remapping
        d2 = _gram_distances(rows[:a_stop], rows[c_start:])
        same_row = torch.arange(c_start, a_stop, device=rows.device)  # anchor i is column i - c_start
        d2[same_row, same_row - c_start] = 0.0
        return d2
    anchor_ids, anchor_pos = torch.unique(inverse[:a_stop], return_inverse=True)
    column_ids, column_pos = torch.unique(inverse[c_start:], return_inverse=True)
    d2_unique = _gram_distances(unique[anchor_ids], unique[column_ids])
    d2_unique.masked_fill_(anchor_ids[:, None] == column_ids[None, :], 0.0)
    return d2_unique[anchor_pos[:, None], column_pos[None, :]]


def _ranked_columns(d2: Tensor, mask: Tensor, ranks: RankRange, descending: bool) -> tuple[Tensor, Tensor]:
    """Per row, the columns of ``mask`` ranked by ``d2`` (finite float64), ties by the smaller column,
    restricted to ``ranks``.

    Returns ``cols`` long ``(A, K)`` and ``valid`` bool ``(A, K)`` (``valid[i, k]``: row ``i`` has a
    masked column of that rank). No full sort: the columns outside ``mask`` get the key ``∓inf`` (worse
    than any finite distance); rank 1 alone is ``argmax``/``argmin`` (documented to return the first
    extremum, i.e. the smaller column on ties). Otherwise ``topk`` finds the key ``t`` of rank ``last``;
    every column strictly better than ``t`` is kept, and of the columns equal to ``t`` those with the
    smallest indices fill the remaining places (a cumulative count): exactly ranks ``1..last`` of the
    (key, column) order. Only these ``last`` columns per row are then sorted (stable: ties keep the
    column order).
    """
    rows, width = d2.shape
    start, stop = ranks.first - 1, min(ranks.last, width)
    if stop <= start or rows == 0:
        empty = torch.zeros(rows, 0, dtype=torch.long, device=d2.device)
        return empty, empty.bool()
    fill = float("-inf") if descending else float("inf")
    key = torch.where(mask, d2, fill)
    if stop == 1:
        cols = key.argmax(dim=1, keepdim=True) if descending else key.argmin(dim=1, keepdim=True)
        return cols, key.gather(1, cols) != fill
    top = key.topk(stop, dim=1, largest=descending, sorted=True).values
    threshold = top[:, -1:]
    better = key > threshold if descending else key < threshold
    room = stop - (top != threshold).sum(dim=1, keepdim=True)  # the better ones are all in the top
    at = key == threshold
    keep = better | (at & (at.cumsum(dim=1) <= room))
    cols = keep.nonzero()[:, 1].view(rows, stop)  # per row, ascending column
    picked = key.gather(1, cols)
    order = picked.sort(dim=1, descending=descending, stable=True).indices
    cols, picked = cols.gather(1, order)[:, start:], picked.gather(1, order)[:, start:]
    return cols, picked != fill


def n_hard(
    d2: Tensor, pos_mask: Tensor, neg_mask: Tensor, positives: RankRange, negatives: RankRange
) -> tuple[Tensor, Tensor, Tensor]:
    """N-hard triplets for anchors = rows of ``d2`` (``(A, R)``, finite float64 squared distances from
    :func:`sq_distances`), candidates = its columns.

    Per anchor: positives (``pos_mask``) ranked farthest first, negatives (``neg_mask``) nearest first,
    ties by the smaller column; ranks restricted to the given ranges; the cartesian product, ordered by
    anchor, positive rank, negative rank. Returns row indices of the anchors and column indices of
    positives and negatives.
    """
    pos_cols, pos_valid = _ranked_columns(d2, pos_mask, positives, descending=True)
    neg_cols, neg_valid = _ranked_columns(d2, neg_mask, negatives, descending=False)
    if pos_cols.shape[1] == 1 and neg_cols.shape[1] == 1:  # one triplet per anchor at most
        a = (pos_valid & neg_valid).flatten().nonzero().flatten()
        return a, pos_cols.flatten()[a], neg_cols.flatten()[a]
    grid = pos_valid[:, :, None] & neg_valid[:, None, :]
    a, pi, ni = grid.nonzero(as_tuple=True)
    return a, pos_cols[a, pi], neg_cols[a, ni]


def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every in-batch ``(a, p, n)`` in lexicographic order."""
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    mask = pos[:, :, None] & ~same[:, None, :]
    a, p, n = mask.nonzero(as_tuple=True)
    return a, p, n
