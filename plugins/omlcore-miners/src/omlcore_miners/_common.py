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
    "distances",
    "empty_triplets",
    "n_hard",
    "parse_rank_range",
]


class Memory(NamedTuple):
    """The rows a miner's indices ``>= B`` refer to (see the README's extra-rows contract).

    ``features``: float ``(M, D)``; ``labels``: long ``(M,)``. Index ``B + j`` is row ``j``.
    """

    features: Tensor
    labels: Tensor


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
    bad_rows = (~torch.isfinite(features.detach())).any(dim=1)
    if bool(bad_rows.any()):
        rows = bad_rows.nonzero().flatten()
        raise ValueError(
            f"features contain NaN or infinite values in {rows.numel()} of {features.shape[0]} rows "
            f"(first: row {int(rows[0])})"
        )
    return labels.long()


def empty_triplets(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Three empty long tensors."""
    empty = torch.empty(0, dtype=torch.long, device=device)
    return empty, empty.clone(), empty.clone()


def distances(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distances ``(len(x), len(y))`` between detached rows, without the mm shortcut."""
    x, y = x.detach(), y.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    return torch.cdist(x, y.to(x.dtype), compute_mode="donot_use_mm_for_euclid_dist")


def _ranked_columns(dist: Tensor, mask: Tensor, ranks: RankRange, descending: bool) -> tuple[Tensor, Tensor]:
    """Per row, the columns of ``mask`` ranked by distance, restricted to ``ranks``; and their validity.

    Returns ``cols`` long ``(A, K)`` and ``valid`` bool ``(A, K)``; ties go to the smaller column.
    """
    fill = float("-inf") if descending else float("inf")
    order = torch.sort(dist.masked_fill(~mask, fill), dim=1, descending=descending, stable=True).indices
    start, stop = ranks.first - 1, min(ranks.last, dist.shape[1])
    cols = order[:, start:stop]
    rank_index = torch.arange(start, max(stop, start), device=dist.device)
    valid = rank_index[None, :] < mask.sum(dim=1)[:, None]
    return cols, valid


def n_hard(
    dist: Tensor, pos_mask: Tensor, neg_mask: Tensor, positives: RankRange, negatives: RankRange
) -> tuple[Tensor, Tensor, Tensor]:
    """N-hard triplets for anchors = rows of ``dist`` (``(A, R)``), candidates = its columns.

    Per anchor: positives (``pos_mask``) ranked farthest first, negatives (``neg_mask``) nearest first,
    ranks restricted to the given ranges; the cartesian product, ordered by anchor, positive rank,
    negative rank. Returns row indices of the anchors and column indices of positives and negatives.
    """
    pos_cols, pos_valid = _ranked_columns(dist, pos_mask, positives, descending=True)
    neg_cols, neg_valid = _ranked_columns(dist, neg_mask, negatives, descending=False)
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
