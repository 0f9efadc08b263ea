"""``distributed``: run any loss on the embeddings of all processes, with exact gradients."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from omlcore.protocols import Loss

from ._base import MetricLoss, check_batch

__all__ = ["DistributedLoss", "gather_with_grad"]


def _world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_padded(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """all_gather of tensors whose first dimension differs across ranks (padded to the largest)."""
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return [p[:n] for p, n in zip(parts, sizes, strict=True)]


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's rows. Backward: sum the gradient of the whole concatenation over
    ranks (each rank's loss depends on every rank's rows) and keep this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat(_gather_padded(x.detach(), sizes), dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Features and labels of all ranks, concatenated in rank order; gradients flow back to every rank's
    own rows. Outside a process group (or with one process) the inputs are returned unchanged."""
    rank, world = _world()
    if world == 1:
        return features, labels
    size = torch.tensor([features.shape[0]], device=features.device)
    all_sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(all_sizes, size)
    sizes = [int(s) for s in all_sizes]
    gathered = _GatherWithGrad.apply(features, sizes, rank)
    all_labels = torch.cat(_gather_padded(labels, sizes), dim=0)
    return gathered, all_labels


class DistributedLoss(MetricLoss):
    """Wraps a loss so that, under ``torch.distributed``, it sees the batch of every process.

    Each rank gathers the features (with gradients) and labels of all ranks and evaluates ``loss`` on the
    concatenation. In backward the gradient of the concatenation is summed over ranks, so after DDP
    averages the parameter gradients they equal those of one process training on the concatenated batch
    (the gradient of the mean of the ranks' losses, which are all the same value). The loss's own
    parameters (ArcFace centres) are handled by DDP's averaging alone. Unlike PML's wrapper, the loss value
    is not multiplied by the world size, so the logged value is the single-process one. Without an
    initialised process group it is the wrapped loss unchanged.

    Args:
        loss: the wrapped loss; in a config a nested ``{name, args}`` spec.
    """

    loss_name = "distributed"

    def __init__(self, loss: Loss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The wrapped loss on every rank's batch."""
        check_batch(self.loss_name, features, labels)
        all_features, all_labels = gather_with_grad(features, labels)
        value: Tensor = self.loss(all_features, all_labels)
        self.last_logs = {**self.loss.last_logs, "world_size": float(_world()[1])}
        return value
