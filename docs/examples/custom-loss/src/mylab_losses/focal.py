"""The focal triplet loss: triplet hinge terms re-weighted by how hard each triplet is.

For a triplet of batch rows ``(a, p, n)`` (anchor, positive with the anchor's label, negative with
another label), with Euclidean distances ``d_ap = ||f_a - f_p||`` and ``d_an = ||f_a - f_n||``::

    gap    = d_ap - d_an
    hinge  = max(0, gap + margin)
    weight = sigmoid(gap / temperature) ** gamma
    loss   = mean over triplets of (weight * hinge)        (reduction="sum": the sum)

The weight is near 1 for triplets that are badly violated (``gap`` well above 0), 0.5**gamma for a
triplet on the boundary (``gap == 0``) and near 0 for easy triplets, so the few hard triplets of a
batch dominate the gradient, as in the focal loss for classification. ``gamma = 0`` gives the plain
triplet loss. The weight is part of the loss (gradients flow through it); since both factors grow with
``gap``, it only sharpens the triplet loss's gradient, it never reverses it.

Triplets come from the batch itself ("batch hard": for every anchor that has a positive and a negative
in the batch, its farthest positive and its nearest negative), or from a :class:`~omlcore.protocols.Miner`
given as ``miner``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omlcore.protocols import Miner  # imported at run time: omlcore reads the annotation `Miner | None`

__all__ = ["FocalTripletLoss", "batch_hard_triplets"]

_EPS = 1e-12  # floor of squared distances, so that the square root has a finite gradient


def batch_hard_triplets(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One triplet per usable anchor: its farthest positive and its nearest negative.

    An anchor is usable when the batch holds another row with its label and a row with a different
    label. Returns ``(anchors, positives, negatives)``, long tensors of batch row indices, anchors in
    increasing order; ties go to the lowest row index. No gradient flows through the selection.
    """
    with torch.no_grad():
        x = features.detach().float()
        dist = torch.cdist(x, x)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask = same & ~eye
        neg_mask = ~same
        usable = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        positives = dist.masked_fill(~pos_mask, float("-inf")).argmax(dim=1)
        negatives = dist.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
        anchors = torch.nonzero(usable).flatten()
    return anchors, positives[anchors], negatives[anchors]


def _distance(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise Euclidean distance with a gradient that stays finite when ``x == y``."""
    return (x - y).pow(2).sum(dim=-1).clamp_min(_EPS).sqrt()


class FocalTripletLoss(nn.Module):
    """Triplet loss whose terms are weighted by ``sigmoid((d_ap - d_an) / temperature) ** gamma``.

    Args:
        margin: the triplet margin; a triplet stops contributing once ``d_an >= d_ap + margin``.
        gamma: focusing strength; 0 gives the plain triplet loss, larger values concentrate the loss on
            the hardest triplets.
        temperature: scale of the distance gap inside the sigmoid (in units of distance).
        miner: chooses the triplets; ``None`` uses batch-hard triplets (see :func:`batch_hard_triplets`).
            In a config it is a nested component, ``miner: {name: <miner name>, args: {...}}``.
        reduction: ``"mean"`` (average over triplets) or ``"sum"``.

    After each call, :attr:`last_logs` holds ``triplets`` (how many were used), ``active_fraction`` (the
    share with a positive hinge) and ``mean_weight`` (the average focal weight).
    """

    def __init__(
        self,
        margin: float = 0.2,
        gamma: float = 2.0,
        temperature: float = 0.1,
        miner: Miner | None = None,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.margin = float(margin)
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        self.miner = miner
        self.reduction = reduction
        self.last_logs: dict[str, float] = {}

    def triplets(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The ``(anchors, positives, negatives)`` row indices the loss uses for this batch."""
        if self.miner is None:
            return batch_hard_triplets(features, labels)
        with torch.no_grad():
            mined = self.miner.sample(features.detach(), labels)
        anchors, positives, negatives = (torch.as_tensor(t, device=features.device).long() for t in mined)
        if not (anchors.shape == positives.shape == negatives.shape) or anchors.dim() != 1:
            raise ValueError(
                f"the miner {type(self.miner).__name__} returned index tensors of shapes "
                f"{tuple(anchors.shape)}, {tuple(positives.shape)}, {tuple(negatives.shape)}; "
                f"expected three 1-D tensors of equal length"
            )
        return anchors, positives, negatives

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss of a batch: ``features`` float ``(B, D)``, ``labels`` long ``(B,)``; a scalar tensor."""
        if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels):
            raise ValueError(
                f"expected features (B, D) and labels (B,), got {tuple(features.shape)} and {tuple(labels.shape)}"
            )
        anchors, positives, negatives = self.triplets(features, labels)
        if anchors.numel() == 0:  # no usable triplet: a zero that still belongs to the graph
            self.last_logs = {"triplets": 0.0, "active_fraction": 0.0, "mean_weight": 0.0}
            return features.sum() * 0.0
        gap = _distance(features[anchors], features[positives]) - _distance(features[anchors], features[negatives])
        hinge = F.relu(gap + self.margin)
        # sigmoid(z) ** gamma computed as exp(gamma * logsigmoid(z)): finite gradient even when the
        # sigmoid underflows to 0 and gamma < 1.
        weight = torch.exp(self.gamma * F.logsigmoid(gap / self.temperature))
        terms = weight * hinge
        loss = terms.mean() if self.reduction == "mean" else terms.sum()
        with torch.no_grad():
            self.last_logs = {
                "triplets": float(anchors.numel()),
                "active_fraction": float((hinge > 0).float().mean()),
                "mean_weight": float(weight.float().mean()),
            }
        return loss

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, gamma={self.gamma}, temperature={self.temperature}, "
            f"reduction={self.reduction!r}, miner={'batch-hard' if self.miner is None else type(self.miner).__name__}"
        )
