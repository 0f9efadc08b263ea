"""Shared pieces of the miners: input validation, distances, rank selection and the extra-rows record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Memory",
    "RankRange",
    "all_triplets",
    "check_batch",
    "count_all_triplets",
    "empty_triplets",
    "n_hard",
    "n_hard_from_rows",
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
    # A sum is finite when every entry is (NaN and inf propagate); only if it is not (an overflow of finite
    # values included) is every entry checked, so the common case costs one reduction and no bool tensor.
    if features.numel() and not math.isfinite(float(detached.sum())) and not bool(torch.isfinite(detached).all()):
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


def count_all_triplets(labels: Tensor) -> int:
    """The number of in-batch triplets: the sum over anchors of ``positives * negatives``."""
    same_count = (labels[:, None] == labels[None, :]).sum(dim=1)
    return int(((same_count - 1) * (labels.shape[0] - same_count)).sum())


def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every in-batch ``(a, p, n)`` in lexicographic order.

    Built from per-anchor counts instead of a ``B x B x B`` mask: the ``t``-th triplet of anchor ``a`` is
    its positive number ``t // negatives(a)`` and its negative number ``t % negatives(a)``, both taken from
    the ascending positive / negative columns of ``a``. Memory is ``O(T + B^2)`` (``T`` the result size).
    """
    size, device = labels.shape[0], labels.device
    same = labels[:, None] == labels[None, :]
    n_pos = same.sum(dim=1) - 1
    n_neg = size - 1 - n_pos
    per_anchor = n_pos * n_neg
    total = int(per_anchor.sum())
    if total == 0:
        return empty_triplets(device)
    pos = same.clone()
    pos.fill_diagonal_(False)
    pos_cols = pos.nonzero()[:, 1]  # row-major: anchor a's positives start at pos_start[a]
    neg_cols = (~same).nonzero()[:, 1]
    pos_start = n_pos.cumsum(0) - n_pos
    neg_start = n_neg.cumsum(0) - n_neg
    first = per_anchor.cumsum(0) - per_anchor  # index of each anchor's first triplet
    a = torch.repeat_interleave(torch.arange(size, device=device), per_anchor, output_size=total)
    local = torch.arange(total, device=device).sub_(first[a])
    width = n_neg[a]
    p = pos_cols[local.div(width, rounding_mode="floor").add_(pos_start[a])]
    n = neg_cols[local.remainder_(width).add_(neg_start[a])]
    return a, p, n


# --------------------------------------------------------------------------------------------------------
# Fast exact selection: float32 distances to find the candidates, float64 to decide among them.
# --------------------------------------------------------------------------------------------------------

_F32_ROUNDING = 2.0**-24  # unit roundoff of float32
# The float32 path is used when the largest squared row norm lies in this range: no overflow of the norms
# (or of a product) and nothing that matters underflows; outside it, the float64 path decides everything.
_F32_NORM_RANGE = (2.0**-60, 2.0**100)
# Pairs whose float64 distance is recomputed are processed in chunks of at most this many entries.
_PAIR_CHUNK = 1 << 22


def _exact_float32_matmul(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` are plain IEEE float32 (no TF32 / bf16 shortcuts).

    The error bound of the fast path assumes it. Unknown devices and any doubt give ``False``.
    """
    try:
        if device.type == "cpu":
            backend = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
        elif device.type == "cuda":
            backend = getattr(torch.backends.cuda, "matmul", None)
            if bool(getattr(backend, "allow_tf32", False)):
                return False
        else:
            return False
        settings = [getattr(backend, "fp32_precision", None), getattr(torch.backends, "fp32_precision", None)]
        if any(s is not None and s not in ("none", "ieee") for s in settings):
            return False
        if all(s is None for s in settings):
            return torch.get_float32_matmul_precision() == "highest"
        return True
    except (RuntimeError, AttributeError):  # a mix of the legacy and new precision APIs raises
        return False


def _pair_sq_distances(x: Tensor, y: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``|x[rows] - y[cols]|²`` per pair, in float64, from the differences (not the matmul form).

    Equal rows give bit-equal results and distance exactly 0; integer-valued features give exact values.
    """
    out = torch.empty(rows.shape[0], dtype=torch.float64, device=x.device)
    chunk = max(1, _PAIR_CHUNK // max(x.shape[1], 1))
    for start in range(0, rows.shape[0], chunk):
        stop = start + chunk
        diff = x.index_select(0, rows[start:stop]).double()
        diff.sub_(y.index_select(0, cols[start:stop]).double())
        out[start:stop] = diff.mul_(diff).sum(dim=1)
    return out


def _ranked_candidates(
    key: Tensor,
    slack: Tensor,
    ranks: RankRange,
    descending: bool,
    x: Tensor,
    y: Tensor,
    columns: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """As :func:`_ranked_columns` on exact float64 distances, from float32 distances ``key`` (``(A, W)``)
    whose error is at most ``slack / 2`` per row (``slack``: ``(A, 1)``, float32).

    ``key`` holds ``∓inf`` (``-inf`` when ``descending``) outside the candidates' mask. ``columns``
    (``(A, W)`` long, ascending along each row) maps a packed ``key`` to the columns of ``y``; ``None``
    means column ``j`` is ``y[j]``. Per row, ``t`` is the float32 key of rank ``last``; only the entries
    within ``slack`` of ``t`` (or better) can hold the exact ranks ``1..last``, so these *candidates*
    alone get float64 distances (:func:`_pair_sq_distances`, rows ``x[i]`` and ``y[column]``) and are
    ranked exactly, ties by the smaller column. For rank ``1..1`` a row with a single candidate is already
    decided; only the rows with several are recomputed. Returns columns of ``y`` and their validity.
    """
    rows, width = key.shape
    start, stop = ranks.first - 1, min(ranks.last, width)
    if stop <= start or rows == 0:
        empty = torch.zeros(rows, 0, dtype=torch.long, device=key.device)
        return empty, empty.bool()
    fill = float("-inf") if descending else float("inf")
    if stop == 1:
        t = key.amax(dim=1, keepdim=True) if descending else key.amin(dim=1, keepdim=True)
    else:
        t = key.topk(stop, dim=1, largest=descending, sorted=False).values
        t = t.amin(dim=1, keepdim=True) if descending else t.amax(dim=1, keepdim=True)
    if ranks.last > width:
        t.fill_(fill)  # fewer entries than ranks: every masked entry is a candidate
    # A row whose rank `last` does not exist (t = ∓inf) takes every finite entry: ∓float32 max stays so
    # when the slack is added. `slack` also covers the rounding of this float32 addition.
    t = t.nan_to_num_(posinf=torch.finfo(key.dtype).max, neginf=-torch.finfo(key.dtype).max)
    candidates = key >= t - slack if descending else key <= t + slack
    pair_rows, pair_slots = candidates.nonzero().unbind(1)  # row-major: ascending column within a row
    pair_cols = pair_slots if columns is None else columns[pair_rows, pair_slots]
    counts = torch.bincount(pair_rows, minlength=rows)
    decided: Tensor | None = None
    if stop == 1:
        cols = torch.zeros(rows, 1, dtype=torch.long, device=key.device)
        single = counts[pair_rows] == 1
        cols[pair_rows[single], 0] = pair_cols[single]
        if bool(single.all()):
            return cols, (counts == 1)[:, None]
        decided = counts == 1
        pair_rows, pair_cols = pair_rows[~single], pair_cols[~single]
        counts = counts.masked_fill(decided, 0)
    most = int(counts.max())
    exact = _pair_sq_distances(x, y, pair_rows, pair_cols)
    position = torch.arange(pair_rows.shape[0], device=key.device) - (counts.cumsum(0) - counts)[pair_rows]
    d2 = torch.zeros(rows, most, dtype=torch.float64, device=key.device)
    d2[pair_rows, position] = exact
    valid = torch.zeros(rows, most, dtype=torch.bool, device=key.device)
    valid[pair_rows, position] = True
    column = torch.zeros(rows, most, dtype=torch.long, device=key.device)
    column[pair_rows, position] = pair_cols
    # positions within a row are in ascending column order, so ties by position are ties by column
    picked, picked_valid = _ranked_columns(d2, valid, ranks, descending)
    picked = column.gather(1, picked)
    if decided is not None:
        picked = torch.where(decided[:, None], cols, picked)
        picked_valid = picked_valid | decided[:, None]
    return picked, picked_valid


def _packed_positives(key: Tensor, same: Tensor) -> tuple[Tensor, Tensor] | None:
    """The float32 keys of each anchor's positives packed into ``(A, K)`` (``-inf`` padding) and their
    columns (ascending), or ``None`` when positives are too many for packing to pay off (then the caller
    masks ``key`` instead). Anchor ``i`` is column ``i`` of the pool and is not its own positive."""
    rows, cols = same.nonzero().unbind(1)
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    if 8 * rows.shape[0] > same.numel():
        return None
    counts = torch.bincount(rows, minlength=same.shape[0])
    width = int(counts.max()) if rows.numel() else 0
    slot = torch.arange(rows.shape[0], device=key.device) - (counts.cumsum(0) - counts)[rows]
    packed = key.new_full((same.shape[0], width), float("-inf"))
    packed[rows, slot] = key.view(-1)[rows * key.shape[1] + cols]
    columns = torch.zeros(same.shape[0], width, dtype=torch.long, device=key.device)
    columns[rows, slot] = cols
    return packed, columns


# Anchors are processed in blocks of about this many (anchor, pool row) entries by the rank-1 fast path.
_BLOCK_ENTRIES = 1 << 16


def _hardest_blockwise(
    xf: Tensor, yf: Tensor, labels: Tensor, pool_labels: Tensor, y_sq: Tensor, slack: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank ``1..1`` of :func:`n_hard_from_rows`: per anchor the farthest positive and the nearest negative.

    Anchors go in blocks (memory ``O(block x R)``). Per block: float32 keys ``|y_j|² - 2 x_i·y_j`` (one
    matrix product) and the two best positives / negatives of each anchor (``topk(2)``). When the second is
    farther than ``slack`` (twice the error bound) from the first, the first is the exact answer; otherwise
    (near ties, equal rows) every entry within ``slack`` of the first gets a float64 distance
    (:func:`_pair_sq_distances`) and the extreme with the smallest column wins (``max``/``min`` along a
    dimension return the first extreme).
    """
    anchors, size = xf.shape[0], yf.shape[0]
    step = max(1, _BLOCK_ENTRIES // size)
    blocks: list[tuple[Tensor, Tensor, Tensor]] = []
    for start in range(0, anchors, step):
        stop = min(anchors, start + step)
        same = labels[start:stop, None] == pool_labels[None, :]
        key = torch.addmm(y_sq[None, :], xf[start:stop], yf.T, alpha=-2.0)
        pos = key.masked_fill(~same, float("-inf"))
        pos[:, start:stop].diagonal().fill_(float("-inf"))  # an anchor is not its own positive
        neg = key.masked_fill_(same, float("inf"))
        picked = []
        for keys, largest in ((pos, True), (neg, False)):
            # the two best entries per anchor: the second within `slack` of the first makes the anchor unsure
            best, cols = keys.topk(min(2, size), dim=1, largest=largest)
            if largest:
                has_any = best[:, 0] > float("-inf")
                bound = best[:, :1].sub_(slack[start:stop])
                unsure = best[:, 1] >= bound[:, 0] if size > 1 else has_any & False
            else:
                has_any = best[:, 0] < float("inf")
                bound = best[:, :1].add_(slack[start:stop])
                unsure = best[:, 1] <= bound[:, 0] if size > 1 else has_any & False
            cols = cols[:, 0].contiguous()
            rows = (unsure & has_any).nonzero().flatten()
            if rows.numel():
                near = keys[rows] >= bound[rows] if largest else keys[rows] <= bound[rows]
                pair_rows, pair_cols = near.nonzero().unbind(1)
                fill = float("-inf") if largest else float("inf")
                exact = torch.full((rows.shape[0], size), fill, dtype=torch.float64, device=key.device)
                exact[pair_rows, pair_cols] = _pair_sq_distances(xf, yf, rows[pair_rows] + start, pair_cols)
                cols[rows] = exact.max(dim=1).indices if largest else exact.min(dim=1).indices
            picked.append((cols, has_any))
        (pos_cols, has_pos), (neg_cols, has_neg) = picked
        a = (has_pos & has_neg).nonzero().flatten()
        blocks.append((a + start if start else a, pos_cols[a], neg_cols[a]))
    if len(blocks) == 1:
        return blocks[0]
    a, p, n = (torch.cat(parts) for parts in zip(*blocks, strict=True))
    return a, p, n


def n_hard_from_rows(
    x: Tensor, pool: Tensor, labels: Tensor, pool_labels: Tensor, positives: RankRange, negatives: RankRange
) -> tuple[Tensor, Tensor, Tensor]:
    """N-hard triplets for anchors ``x`` (``(A, D)``, labels ``labels``), which are the first ``A`` rows of
    ``pool`` (``(R, D)``, labels ``pool_labels``), from the rows.

    Positives: the pool rows with the anchor's label except the anchor itself; negatives: the others. Same
    ranks, tie breaking (smaller column) and order as :func:`n_hard`, decided on float64 squared
    distances. For float32 (or narrower) features whose float32 matrix products are plain IEEE and whose
    norms are in a safe range, the distances are first computed in float32 (a matrix product and a bound
    on its rounding error per anchor) and only the entries that this error could move into, out of or
    within the selected ranks get float64 distances, computed from the differences (see
    :func:`_hardest_blockwise` and :func:`_ranked_candidates`). Otherwise (float64 features, TF32/bf16
    matrix products, extreme magnitudes) the float64 Gram form of :func:`sq_distances` decides
    everything. Both float64 forms are exact on integer-valued features and give equal rows bit-equal
    distances; on other values the Gram form errs by up to about 1e-16 of the squared norms, the
    differences by about 1e-16 of the squared distance, so the two can only disagree on distances that
    are equal to within the Gram form's error.
    """
    anchors = x.shape[0]
    narrow = x.dtype in (torch.float32, torch.float16, torch.bfloat16) and pool.dtype == x.dtype
    fast = narrow and anchors > 0 and _exact_float32_matmul(x.device)
    if fast:
        xf, yf = x.detach().float(), pool.detach().float()
        y_norms = torch.linalg.vector_norm(yf, dim=1)
        largest = float(y_norms.max()) ** 2
        fast = _F32_NORM_RANGE[0] < largest < _F32_NORM_RANGE[1]
    if not fast:
        same = labels[:, None] == pool_labels[None, :]
        pos_mask = same.clone()
        pos_mask[:, :anchors].fill_diagonal_(False)
        d2 = sq_distances(x, pool, y_starts_with_x=True)
        return n_hard(d2, pos_mask, ~same, positives, negatives)
    # Per anchor i, ranking by |y_j|² - 2 x_i·y_j is ranking by |x_i - y_j|² (the two differ by |x_i|²).
    y_sq = y_norms.mul_(y_norms)
    # Rounding: |computed - exact| <= (gamma_D + 4u) (|x_i| + |y_j|)^2 <= (gamma_D + 4u) 2 (|x_i|^2 + max|y|^2)
    # for the dot product of D terms in any order, the squared norm and the addition (u = 2**-24,
    # gamma_D = D u / (1 - D u)); the factor 1.25 and the extra terms cover the rounding of this bound and of
    # the float32 additions made with it. Underflow adds at most D * 2**-149 per entry: with squared norms of
    # at least 2**-60 (_F32_NORM_RANGE) the bound is larger by far. `slack` is twice the bound: the width of
    # the band searched around the extreme (an entry farther than that from it cannot beat it or tie).
    dim = xf.shape[1]
    rate = (1.25 * (dim + 8) + 8) * _F32_ROUNDING / (1.0 - (dim + 8) * _F32_ROUNDING)
    slack = (y_sq[:anchors, None] + largest).mul_(4.0 * rate)
    if positives == (1, 1) and negatives == (1, 1):
        return _hardest_blockwise(xf, yf, labels, pool_labels, y_sq, slack)
    same = labels[:, None] == pool_labels[None, :]
    key = torch.addmm(y_sq[None, :], xf, yf.T, alpha=-2.0)
    packed = _packed_positives(key, same)
    if packed is not None:
        pos_cols, pos_valid = _ranked_candidates(packed[0], slack, positives, True, xf, yf, packed[1])
    else:
        pos_key = torch.where(same, key, float("-inf"))
        pos_key[:, :anchors].fill_diagonal_(float("-inf"))
        pos_cols, pos_valid = _ranked_candidates(pos_key, slack, positives, True, xf, yf)
    neg_cols, neg_valid = _ranked_candidates(key.masked_fill_(same, float("inf")), slack, negatives, False, xf, yf)
    if pos_cols.shape[1] == 1 and neg_cols.shape[1] == 1:  # one triplet per anchor at most
        a = (pos_valid & neg_valid).flatten().nonzero().flatten()
        return a, pos_cols.flatten()[a], neg_cols.flatten()[a]
    grid = pos_valid[:, :, None] & neg_valid[:, None, :]
    a, pi, ni = grid.nonzero(as_tuple=True)
    return a, pos_cols[a, pi], neg_cols[a, ni]
