"""Triplet losses: on every triplet of the batch, on stacked triplets, and on the triplets of a miner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from omlcore.protocols import Miner

from ._base import (
    EmptyPolicy,
    LossInputError,
    MetricLoss,
    NoValidTripletsError,
    Reduction,
    check_batch,
    pair_masks,
    pairwise_l2,
    reduce,
)

__all__ = ["TripletLoss", "TripletLossPlain", "TripletLossWithMiner", "all_triplets", "triplet_values"]


def all_triplets(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every ``(anchor, positive, negative)`` of the batch as three long index tensors, in lexicographic order.

    Built from per-anchor counts (the ``t``-th triplet of anchor ``a`` pairs its positive ``t // negatives``
    with its negative ``t % negatives``), so memory is ``O(T + B^2)`` for ``T`` triplets, not ``B^3``.
    The losses of this module do not need it: they compute on every triplet from the distance matrix.
    """
    size, device = labels.shape[0], labels.device
    positive, negative = pair_masks(labels)
    n_pos, n_neg = positive.sum(dim=1), negative.sum(dim=1)
    per_anchor = n_pos * n_neg
    total = int(per_anchor.sum())
    a = torch.repeat_interleave(torch.arange(size, device=device), per_anchor, output_size=total)
    local = torch.arange(total, device=device) - (per_anchor.cumsum(0) - per_anchor)[a]
    width = n_neg[a]
    p = positive.nonzero()[:, 1][local.div(width, rounding_mode="floor") + (n_pos.cumsum(0) - n_pos)[a]]
    n = negative.nonzero()[:, 1][local.remainder(width) + (n_neg.cumsum(0) - n_neg)[a]]
    return a, p, n


# Entries of the (anchors, positives, negatives) blocks that the all-triplets loss forms at once.
_BLOCK = 1 << 18


# Feature entries (triplets x D) that the gathering path holds at once.
_GATHER_ENTRIES = 1 << 17


class _GatheredDistances(torch.autograd.Function):
    """``(|rows[a] - rows[p]|, |rows[a] - rows[n]|)`` for few triplets, with a lean backward.

    Same values and first derivatives as ``vector_norm(rows[a] - rows[p], dim=1)`` (and ``n``) under
    autograd, including the zero gradient of a zero distance, but the differences are formed in chunks of
    triplets and nothing of size ``T x D`` is kept for the backward pass: it forms them again and adds them
    into one gradient buffer with ``index_add_``. No double backward.
    """

    @staticmethod
    def forward(ctx: Any, rows: Tensor, a: Tensor, p: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
        step = max(1, _GATHER_ENTRIES // max(rows.shape[1], 1))
        d_ap: list[Tensor] = []
        d_an: list[Tensor] = []
        for start in range(0, a.shape[0], step):
            chunk = a[start : start + step]
            for other, out in ((p, d_ap), (n, d_an)):
                diff = rows.index_select(0, chunk).sub_(rows.index_select(0, other[start : start + step]))
                out.append(torch.linalg.vector_norm(diff, dim=1))
        ap, an = (parts[0] if len(parts) == 1 else torch.cat(parts) for parts in (d_ap, d_an))
        ctx.save_for_backward(rows, a, p, n, ap, an)
        return ap, an

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_ap: Tensor, grad_an: Tensor) -> tuple[Tensor, None, None, None]:
        rows, a, p, n, d_ap, d_an = ctx.saved_tensors
        grad = torch.zeros_like(rows)
        step = max(1, _GATHER_ENTRIES // max(rows.shape[1], 1))
        for other, dist, upstream in ((p, d_ap, grad_ap), (n, d_an, grad_an)):
            scale = (upstream / dist).masked_fill_(dist <= 0, 0.0)  # d|v|/dv = v / |v|, 0 at v = 0 as autograd
            for start in range(0, a.shape[0], step):
                stop = start + step
                diff = rows.index_select(0, a[start:stop]).sub_(rows.index_select(0, other[start:stop]))
                diff.mul_(scale[start:stop, None])
                grad.index_add_(0, a[start:stop], diff)
                grad.index_add_(0, other[start:stop], diff, alpha=-1)
        return grad, None, None, None


class _AllTripletsSum(torch.autograd.Function):
    """Sum of the per-triplet losses over every triplet of the batch, straight from the features.

    Inputs: ``features`` ``(B, D)``, the bool ``(B, B)`` same-label mask and the margin (``None``: soft
    margin). Distances are those of :func:`~omlcore_losses._base.pairwise_l2` (float64 Gram form, an exact
    zero for equal rows, then ``features``' dtype). Per anchor, the distances to its positives are packed
    into ``(B, K)`` (``K`` the most positives of an anchor; padding ``-inf``) and those to its negatives
    kept as ``(B, B)`` (other columns ``+inf``); blocks of anchors then form
    ``d_ap[:, :, None] + margin - d_an[:, None, :]`` (the padding gives ``-inf``: a zero loss and
    gradient). Each triplet value is computed as :func:`triplet_values` does, in ``features``' dtype; sums
    are accumulated in float64. No index tensor of the triplets is built: memory is ``O(B^2 + _BLOCK)``.

    The forward pass also finds ``G = dLoss/d dist`` (per pair, the derivative summed over the triplets
    using it) and keeps ``H = G / dist`` (float64, 0 where the distance is 0); since
    ``d dist_ij / d x_i = (x_i - x_j) / dist_ij``, the gradient is ``x * (H + Hᵀ)·1 - (H + Hᵀ) x``, two
    float64 matrix products in the backward pass (as autograd through the Gram form would do). First
    derivative only (no double backward).

    Returns the sum (``features``' dtype) and a non-differentiable float64 tensor ``[active triplets,
    sum over triplets of d_ap, sum over triplets of d_an]``.
    """

    @staticmethod
    def forward(ctx: Any, features: Tensor, same: Tensor, margin: float | None) -> tuple[Tensor, Tensor]:
        size, dtype = features.shape[0], features.dtype
        x64 = features.detach().double()
        squared = x64.mul(x64).sum(dim=1)
        dist64 = torch.addmm(squared[None, :], x64, x64.T, alpha=-2.0).add_(squared[:, None]).clamp_min_(0.0)
        dist64.fill_diagonal_(0.0)
        zero = dist64 <= 1e-18 * max(float(squared.max()), 1.0)  # relative to the scale of the data
        dist64.sqrt_().masked_fill_(zero, 0.0)
        dist = dist64.to(dtype)
        positive = same.clone()
        positive.fill_diagonal_(False)
        n_pos = positive.sum(dim=1)
        rows, cols = positive.nonzero().unbind(1)
        slot = torch.arange(rows.shape[0], device=features.device) - (n_pos.cumsum(0) - n_pos)[rows]
        width = int(n_pos.max())
        d_ap = dist.new_full((size, width), float("-inf"))
        d_ap[rows, slot] = dist[rows, cols]
        d_an = dist.masked_fill_(same, float("inf"))
        shifted = d_ap + margin if margin is not None else d_ap
        grad_ap = torch.empty_like(d_ap)
        grad = torch.empty((size, size), dtype=dtype, device=features.device)
        total = torch.zeros((), dtype=torch.float64, device=features.device)
        step = max(1, _BLOCK // (width * size))
        for start in range(0, size, step):
            stop = start + step
            values = shifted[start:stop, :, None] - d_an[start:stop, None, :]  # (block, K, B)
            if margin is not None:
                weight = (values > 0).to(dtype)  # relu's derivative (0 at 0, as torch's)
                total += values.clamp_min_(0.0).sum(dtype=torch.float64)
            else:
                weight = torch.sigmoid(values)  # softplus' derivative
                total += F.softplus(values).sum(dtype=torch.float64)
            grad_ap[start:stop] = weight.sum(dim=2)
            torch.sum(weight, dim=1, out=grad[start:stop]).neg_()
            del values, weight
        # the padding and the non-negative columns got weight 0: only the positive pairs need moving
        grad[rows, cols] = grad_ap[rows, slot]
        # active triplets (hinge only); each d_ap is in n_neg triplets of its anchor, each d_an in n_pos
        active = grad_ap.sum(dtype=torch.float64) if margin is not None else total.new_tensor(float("nan"))
        n_neg = size - 1 - n_pos
        d_an.masked_fill_(same, 0.0)
        sums = torch.stack(
            [
                active,
                (d_ap.clamp_min_(0.0).sum(dim=1, dtype=torch.float64) * n_neg).sum(),
                (d_an.sum(dim=1, dtype=torch.float64) * n_pos).sum(),
            ]
        )
        del d_an, d_ap, shifted, grad_ap
        ratio = dist64.reciprocal_().masked_fill_(zero, 0.0).mul_(grad)  # H = G / dist, 0 at a zero distance
        ctx.save_for_backward(features, ratio)
        ctx.mark_non_differentiable(sums)
        return total.to(dtype), sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_total: Tensor, grad_sums: Tensor) -> tuple[Tensor, None, None]:
        features, ratio = ctx.saved_tensors
        x64 = features.double()
        weights = ratio.sum(dim=1).add_(ratio.sum(dim=0))
        grad = torch.addmm(x64 * weights[:, None], ratio, x64, alpha=-1.0)
        grad = torch.addmm(grad, ratio.T, x64, alpha=-1.0)
        return grad.mul_(grad_total.double()).to(features.dtype), None, None


def triplet_values(d_ap: Tensor, d_an: Tensor, margin: float | None) -> Tensor:
    """Per-triplet loss: ``relu(margin + d_ap - d_an)``, or ``log1p(exp(d_ap - d_an))`` when ``margin`` is
    ``None`` (the soft-margin version, computed stably as ``softplus``)."""
    if margin is None:
        return F.softplus(d_ap - d_an)
    return F.relu(margin + d_ap - d_an)


class _TripletBase(MetricLoss):
    def __init__(self, margin: float | None, reduction: Reduction, need_logs: bool, on_empty: EmptyPolicy) -> None:
        super().__init__()
        self._check_reduction(reduction)
        self._check_on_empty(on_empty)
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 or null (soft margin), got {margin}")
        self.margin = margin
        self.reduction = reduction
        self.need_logs = need_logs
        self.on_empty = on_empty

    def triplet_loss(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """The loss on given triplet embeddings, three float ``(T, D)`` tensors (OML's ``TripletLoss``)."""
        d_ap = torch.linalg.vector_norm(anchor - positive, dim=1)
        d_an = torch.linalg.vector_norm(anchor - negative, dim=1)
        return self._from_distances(d_ap, d_an)

    def _from_distances(self, d_ap: Tensor, d_an: Tensor, extra: Mapping[str, float] | None = None) -> Tensor:
        values = triplet_values(d_ap, d_an, self.margin)
        logs: dict[str, float] = {"n_triplets": float(values.numel()), "empty_batch": 0.0}
        if self.need_logs:
            with torch.no_grad():
                logs["active_tri"] = float((values > 0).float().mean()) if self.margin is not None else 1.0
                logs["pos_dist"] = float(d_ap.mean())
                logs["neg_dist"] = float(d_an.mean())
        logs.update(extra or {})
        self.last_logs = logs
        return reduce(values, self.reduction)

    def _from_all_triplets(
        self, features: Tensor, labels: Tensor, extra: Mapping[str, float] | None = None
    ) -> Tensor | None:
        """The loss over every triplet of the batch (see :class:`_AllTripletsSum`); ``None`` if there is none."""
        same = labels[:, None] == labels[None, :]
        same_count = same.sum(dim=1)
        n_triplets = int(((same_count - 1) * (labels.shape[0] - same_count)).sum())
        if n_triplets == 0:
            return None
        total, sums = _AllTripletsSum.apply(features, same, self.margin)
        logs: dict[str, float] = {"n_triplets": float(n_triplets), "empty_batch": 0.0}
        if self.need_logs:
            active, pos_sum, neg_sum = sums.tolist()
            logs["active_tri"] = active / n_triplets if self.margin is not None else 1.0
            logs["pos_dist"] = pos_sum / n_triplets
            logs["neg_dist"] = neg_sum / n_triplets
        logs.update(extra or {})
        self.last_logs = logs
        result: Tensor = total / n_triplets if self.reduction == "mean" else total
        return result


class TripletLoss(_TripletBase):
    """Triplet loss over every ``(anchor, positive, negative)`` of the batch, Euclidean distances.

    Args:
        margin: the margin of ``relu(margin + d_ap - d_an)``; ``None`` gives the soft-margin loss
            ``log1p(exp(d_ap - d_an))``.
        reduction: ``mean`` or ``sum`` over the triplets.
        need_logs: add ``active_tri``, ``pos_dist`` and ``neg_dist`` to ``last_logs`` (three host syncs).
        on_empty: a batch without any triplet raises :class:`NoValidTripletsError` (``raise``) or gives
            a zero loss connected to the graph and ``last_logs["empty_batch"] = 1`` (``zero``).
    """

    loss_name = "triplet"

    def __init__(
        self,
        margin: float | None = 0.1,
        reduction: Reduction = "mean",
        need_logs: bool = True,
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(margin, reduction, need_logs, on_empty)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss on all triplets of ``(features, labels)``."""
        check_batch(self.loss_name, features, labels)
        loss = self._from_all_triplets(features, labels)
        if loss is None:
            return self._empty(features, labels, self.on_empty, NoValidTripletsError, "there is no triplet")
        return loss


class TripletLossPlain(_TripletBase):
    """Triplet loss on a batch already arranged as triplets: rows ``(a, p, n, a, p, n, ...)``.

    ``labels`` must follow the layout: ``labels[0::3] == labels[1::3] != labels[2::3]``; a batch whose size
    is not a multiple of 3 or whose labels break the layout raises :class:`LossInputError`. Arguments as
    :class:`TripletLoss`.
    """

    loss_name = "triplet_plain"

    def __init__(
        self,
        margin: float | None = 0.1,
        reduction: Reduction = "mean",
        need_logs: bool = True,
    ) -> None:
        super().__init__(margin, reduction, need_logs, "raise")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss on the stacked triplets."""
        check_batch(self.loss_name, features, labels)
        if features.shape[0] % 3:
            raise LossInputError(
                f"{self.loss_name}: the batch must hold whole triplets (a, p, n, a, p, n, ...), "
                f"got {features.shape[0]} rows, not a multiple of 3"
            )
        la, lp, ln = labels[0::3], labels[1::3], labels[2::3]
        broken = ((la != lp) | (la == ln)).nonzero().flatten()
        if broken.numel():
            i = int(broken[0])
            raise LossInputError(
                f"{self.loss_name}: triplet {i} (rows {3 * i}..{3 * i + 2}) has labels "
                f"{labels[3 * i : 3 * i + 3].tolist()}; expected (x, x, y) with y != x"
            )
        return self.triplet_loss(features[0::3], features[1::3], features[2::3])


class TripletLossWithMiner(_TripletBase):
    """Triplet loss on the triplets a miner picks from the batch.

    Args:
        margin: as :class:`TripletLoss`; ``None`` is the soft margin.
        miner: any :class:`~omlcore.protocols.Miner`; in a config a nested ``{name, args}`` spec
            (``miner: {name: hard_triplets}``) that omlcore builds. ``None`` uses every triplet.
        reduction, need_logs, on_empty: as :class:`TripletLoss`. ``on_empty`` also covers a miner that
            returns no triplet. The miner's own ``last_logs`` (if it has any) are merged into this loss's,
            prefixed ``miner/``.
    """

    loss_name = "triplet_with_miner"

    def __init__(
        self,
        margin: float | None = 0.1,
        miner: Miner | None = None,
        reduction: Reduction = "mean",
        need_logs: bool = True,
        on_empty: EmptyPolicy = "raise",
    ) -> None:
        super().__init__(margin, reduction, need_logs, on_empty)
        self.miner = miner

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Mine, then the loss on the mined triplets."""
        check_batch(self.loss_name, features, labels)
        why = "there is no triplet" if self.miner is None else f"the miner {type(self.miner).__name__} found no triplet"
        # A miner that would return every in-batch triplet can say so (the omlcore-miners `takes_all_triplets`
        # shortcut); the loss is then computed from the distance matrix without the triplets' index tensors.
        takes_all = getattr(self.miner, "takes_all_triplets", None)
        if self.miner is None or (callable(takes_all) and takes_all(features, labels)):
            loss = self._from_all_triplets(features, labels, self._miner_logs())
            if loss is None:
                return self._empty(features, labels, self.on_empty, NoValidTripletsError, why)
            return loss
        a, p, n = self.miner.sample(features, labels)
        if a.numel() == 0:
            return self._empty(features, labels, self.on_empty, NoValidTripletsError, why)
        a, p, n = (t.to(features.device).long() for t in (a, p, n))
        extra = self._miner_logs()
        # Miners that also mine outside the batch (memory banks, label centres) expose those rows with
        # `last_memory()`: index i >= B is row i - B of its features (the omlcore-miners contract).
        rows = features
        last_memory = getattr(self.miner, "last_memory", None)
        if callable(last_memory):
            memory = last_memory()
            if memory is not None and memory.features.shape[0] > 0:
                rows = torch.cat([features, memory.features.to(device=features.device, dtype=features.dtype)])
        if max(int(a.max()), int(p.max()), int(n.max())) >= rows.shape[0]:
            raise LossInputError(
                f"{self.loss_name}: the miner {type(self.miner).__name__} returned an index >= {rows.shape[0]} "
                f"(batch of {features.shape[0]} plus {rows.shape[0] - features.shape[0]} memory rows)"
            )
        if a.numel() <= rows.shape[0]:
            # Few triplets (batch-hard mining gives one per anchor): gathering their rows is cheaper
            # than a full distance matrix and its backward.
            d_ap, d_an = _GatheredDistances.apply(rows, a, p, n)
            return self._from_distances(d_ap, d_an, extra)
        # Many triplets: one (N, N) distance matrix, then index it. Gathering a feature row per triplet
        # would cost O(T * D) memory (gigabytes with all triplets of a large batch) and a slow backward.
        flat = pairwise_l2(rows).view(-1)
        width = rows.shape[0]
        return self._from_distances(flat.index_select(0, a * width + p), flat.index_select(0, a * width + n), extra)

    def get_extra_state(self) -> dict[str, Any]:
        """The miner's state (a memory bank, a generator) when it has ``state_dict()``, so that
        ``loss.state_dict()`` carries it into checkpoints; ``{}`` otherwise."""
        miner_state = getattr(self.miner, "state_dict", None)
        return {"miner": miner_state()} if callable(miner_state) else {}

    def set_extra_state(self, state: Any) -> None:
        """Give the miner back what :meth:`get_extra_state` saved."""
        if not isinstance(state, dict):
            raise LossInputError(f"{self.loss_name}: the extra state must be a dict, got {type(state).__name__}")
        if "miner" not in state:
            return
        load = getattr(self.miner, "load_state_dict", None)
        if not callable(load):
            raise LossInputError(
                f"{self.loss_name}: the checkpoint holds a miner state but the miner "
                f"{type(self.miner).__name__} has no load_state_dict(); build the loss with the saved miner"
            )
        load(state["miner"])

    def _miner_logs(self) -> dict[str, float]:
        """The miner's ``last_logs`` (if any), prefixed ``miner/``."""
        miner_logs = getattr(self.miner, "last_logs", None)
        if isinstance(miner_logs, Mapping):
            return {f"miner/{k}": float(v) for k, v in miner_logs.items()}
        return {}
