"""What every loss of this package shares: input checks, the "nothing to learn from" policy, helpers."""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

import torch
from torch import Tensor, nn

from omlcore.errors import OmlcoreError

__all__ = [
    "EmptyPolicy",
    "LossInputError",
    "MetricLoss",
    "NoValidPairsError",
    "NoValidTripletsError",
    "NoValidTuplesError",
    "Reduction",
    "check_batch",
    "check_class_labels",
    "describe_labels",
]

Reduction = Literal["mean", "sum"]
EmptyPolicy = Literal["raise", "zero"]


class LossInputError(OmlcoreError, ValueError):
    """The features or labels given to a loss are malformed (shape, dtype, non-finite values, range)."""


class NoValidTuplesError(OmlcoreError, ValueError):
    """The batch holds no pair or triplet the loss can learn from (see ``on_empty`` of each loss)."""


class NoValidTripletsError(NoValidTuplesError):
    """No (anchor, positive, negative) triplet exists in the batch, or the miner returned none."""


class NoValidPairsError(NoValidTuplesError):
    """The batch has no positive pair or no negative pair."""


def describe_labels(labels: Tensor, limit: int = 10) -> str:
    """``"8 samples, 3 labels, counts {0: 4, 1: 3, 2: 1}"`` (the first ``limit`` labels by value)."""
    counts = Counter(int(v) for v in labels.detach().cpu().tolist())
    shown = dict(sorted(counts.items())[:limit])
    more = f" and {len(counts) - limit} more" if len(counts) > limit else ""
    return f"{labels.numel()} samples, {len(counts)} labels, counts {shown}{more}"


def check_batch(loss: str, features: Tensor, labels: Tensor) -> None:
    """Raise :class:`LossInputError` unless ``features`` is a finite float ``(B, D)`` tensor and ``labels``
    an integer ``(B,)`` tensor on the same device."""
    if not isinstance(features, Tensor):
        raise LossInputError(f"{loss}: features must be a torch.Tensor, got {type(features).__name__}")
    if not isinstance(labels, Tensor):
        raise LossInputError(f"{loss}: labels must be a torch.Tensor, got {type(labels).__name__}")
    if features.ndim != 2:
        raise LossInputError(f"{loss}: features must have shape (B, D), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise LossInputError(f"{loss}: features must be a floating tensor, got dtype {features.dtype}")
    if labels.ndim != 1:
        raise LossInputError(f"{loss}: labels must have shape (B,), got {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise LossInputError(f"{loss}: labels must be an integer tensor (torch.long), got dtype {labels.dtype}")
    if labels.shape[0] != features.shape[0]:
        raise LossInputError(
            f"{loss}: features have {features.shape[0]} rows but labels have {labels.shape[0]} entries"
        )
    if features.shape[0] == 0:
        raise LossInputError(f"{loss}: the batch is empty")
    if labels.device != features.device:
        raise LossInputError(f"{loss}: labels are on {labels.device}, features on {features.device}")
    # The sum is finite when every entry is (NaN and inf propagate); only when it is not (finite values
    # that overflow included) is every entry checked: one reduction and no bool tensor in the common case.
    if math.isfinite(float(features.detach().sum())):
        return
    finite = torch.isfinite(features)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        has_nan = bool(torch.isnan(features).any())
        what = "NaN" if has_nan else "inf"
        raise LossInputError(
            f"{loss}: features contain {what} values in {bad_rows.numel()} of {features.shape[0]} rows "
            f"(first rows: {bad_rows[:5].tolist()}); check the model's output and the learning rate"
        )


def check_class_labels(loss: str, labels: Tensor, num_classes: int) -> None:
    """Raise :class:`LossInputError` when a label is outside ``0 .. num_classes - 1``."""
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = sorted({int(v) for v in labels[(labels < 0) | (labels >= num_classes)].tolist()})[:5]
        raise LossInputError(
            f"{loss}: labels must lie in 0..{num_classes - 1} (num_classes={num_classes}), got {bad}; "
            f"set num_classes to the number of distinct training labels and map labels to 0..num_classes-1"
        )


def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Bool ``(B, B)`` masks of positive pairs (same label, not the diagonal) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def pairwise_l2(x: Tensor) -> Tensor:
    """Euclidean distances ``(B, B)`` with a zero, finite-gradient diagonal (and equal rows).

    Computed as ``sqrt(|x_i|^2 + |x_j|^2 - 2 x_i . x_j)`` with one matrix product, in float64 so that the
    cancellation of that form stays far below float32 resolution; memory is ``O(B^2)``, not the
    ``O(B^2 D)`` of broadcasting differences. Where the squared distance is (numerically) zero the
    distance is exactly 0 with a zero gradient, instead of the infinite slope of ``sqrt`` at 0.
    """
    x64 = x.double()
    squared = (x64 * x64).sum(dim=1)
    d2 = (squared[:, None] + squared[None, :] - 2.0 * (x64 @ x64.T)).clamp_min(0.0)
    d2.fill_diagonal_(0.0)
    tiny = 1e-18 * squared.max().clamp_min(1.0)  # relative to the scale of the data
    positive = d2 > tiny
    dist = torch.where(positive, d2.clamp_min(tiny).sqrt(), torch.zeros_like(d2))
    return dist.to(x.dtype)


class MetricLoss(nn.Module):
    """Base class: ``forward(features, labels)`` and ``last_logs`` (plain ``str -> float``)."""

    #: Name used in error messages (the entry-point name).
    loss_name: str = "loss"

    def __init__(self) -> None:
        super().__init__()
        self.last_logs: dict[str, float] = {}

    @staticmethod
    def _check_reduction(reduction: str) -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")

    @staticmethod
    def _check_on_empty(on_empty: str) -> None:
        if on_empty not in ("raise", "zero"):
            raise ValueError(f"on_empty must be 'raise' or 'zero', got {on_empty!r}")

    def _empty(
        self, features: Tensor, labels: Tensor, on_empty: str, error: type[NoValidTuplesError], why: str
    ) -> Tensor:
        """Apply the ``on_empty`` policy: raise ``error`` or return a zero connected to the graph."""
        if on_empty == "raise":
            raise error(
                f"{self.loss_name}: {why} in this batch ({describe_labels(labels)}); it needs at least one "
                f"label with 2 or more samples and at least 2 distinct labels. Use a label-balanced sampler "
                f"(e.g. 'balance' with n_instances >= 2), or set on_empty: zero to skip such batches"
            )
        self.last_logs = {"empty_batch": 1.0}
        zero = features.sum() * 0.0
        for p in self.parameters():
            if p.requires_grad:
                zero = zero + p.sum() * 0.0
        return zero


def reduce(values: Tensor, reduction: str) -> Tensor:
    """``mean`` or ``sum`` of a 1-D tensor."""
    return values.mean() if reduction == "mean" else values.sum()
