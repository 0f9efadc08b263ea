"""Optimizers for the ``omlcore.optimizers`` entry-point group.

Each class is a subclass of the ``torch.optim`` optimizer of the same name whose constructor lists only
what a config can set, with plain types: ``lr: float`` rather than torch's ``float | Tensor``, ``betas:
tuple[float, float]``. omlcore validates a config's ``args`` against these signatures, so a typo or a
value of the wrong type is reported with its config path before training starts, and the accepted
arguments stay the same across the supported torch versions.

Everything after ``params`` is keyword-only. ``params`` (the model's parameters or parameter groups) is
passed by the pipeline at run time and never appears in a config. Left out on purpose: ``capturable``
and ``differentiable`` (CUDA-graph capture and differentiating through the update are decided by the
code that runs the loop, not by a config) and a tensor-valued ``lr``. The instances are ordinary torch
optimizers: ``isinstance(opt, torch.optim.Adam)`` holds and their ``state_dict`` is torch's.
"""

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ASGD",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Params",
    "RAdam",
    "RMSprop",
    "Rprop",
]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]
"""What an optimizer optimizes: tensors, or parameter groups (dicts with a ``params`` key)."""


class Adadelta(torch.optim.Adadelta):
    """Adadelta (:class:`torch.optim.Adadelta`): per-coordinate steps scaled by running averages of
    squared gradients and squared updates.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Coefficient that scales each update.
        rho: Decay of the running averages.
        eps: Added inside the square roots for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach)


class Adagrad(torch.optim.Adagrad):
    """Adagrad (:class:`torch.optim.Adagrad`): steps divided by the root of the summed squared gradients.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        lr_decay: The learning rate at step ``t`` is ``lr / (1 + (t - 1) * lr_decay)``.
        weight_decay: L2 penalty added to the gradient.
        initial_accumulator_value: Starting value of the squared-gradient sums.
        eps: Added to the denominator for numerical stability.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
            foreach=foreach,
        )


class Adam(torch.optim.Adam):
    """Adam (:class:`torch.optim.Adam`): bias-corrected first and second moment estimates.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient (coupled; see ``adamw`` for the decoupled form).
        amsgrad: Use the AMSGrad variant (the maximum of past second moments).
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
        fused: Use the fused kernel (CUDA and some other devices); ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )


class Adamax(torch.optim.Adamax):
    """Adamax (:class:`torch.optim.Adamax`): Adam with the infinity norm in place of the second moment.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        betas: Decay rates of the first moment and of the infinity norm.
        eps: Added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize, foreach=foreach
        )


class AdamW(torch.optim.AdamW):
    """AdamW (:class:`torch.optim.AdamW`): Adam with weight decay applied directly to the weights.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: Decoupled weight decay: each step multiplies the weights by ``1 - lr * weight_decay``.
        amsgrad: Use the AMSGrad variant (the maximum of past second moments).
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
        fused: Use the fused kernel (CUDA and some other devices); ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )


class ASGD(torch.optim.ASGD):
    """Averaged SGD (:class:`torch.optim.ASGD`): SGD that also keeps a running average of the iterates.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        lambd: Decay term of the step size.
        alpha: Power of the step-size decay.
        t0: The step at which averaging starts.
        weight_decay: L2 penalty added to the gradient.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


class NAdam(torch.optim.NAdam):
    """NAdam (:class:`torch.optim.NAdam`): Adam with Nesterov momentum.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: Weight decay; an L2 penalty unless ``decoupled_weight_decay``.
        momentum_decay: Decay of the momentum schedule.
        decoupled_weight_decay: Apply weight decay to the weights directly, as AdamW does.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


class RAdam(torch.optim.RAdam):
    """RAdam (:class:`torch.optim.RAdam`): Adam with a rectified variance of the adaptive step.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator for numerical stability.
        weight_decay: Weight decay; an L2 penalty unless ``decoupled_weight_decay``.
        decoupled_weight_decay: Apply weight decay to the weights directly, as AdamW does.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )


class RMSprop(torch.optim.RMSprop):
    """RMSprop (:class:`torch.optim.RMSprop`): steps divided by a running root mean square of gradients.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        alpha: Smoothing constant of the running average of squared gradients.
        eps: Added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        momentum: Momentum factor.
        centered: Normalize by an estimate of the gradient's variance instead of its second moment.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
            foreach=foreach,
        )


class Rprop(torch.optim.Rprop):
    """Resilient backpropagation (:class:`torch.optim.Rprop`): per-weight step sizes adapted from the
    sign of successive gradients (meant for full-batch training).

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Initial step size.
        etas: ``(decrease, increase)`` factors applied to a step size when the gradient's sign flips or
            stays.
        step_sizes: ``(minimum, maximum)`` allowed step size.
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50.0),
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize, foreach=foreach)


class SGD(torch.optim.SGD):
    """Stochastic gradient descent (:class:`torch.optim.SGD`), optionally with (Nesterov) momentum.

    Args:
        params: The parameters to optimize (given by the pipeline).
        lr: Learning rate.
        momentum: Momentum factor.
        dampening: Dampening of the momentum.
        weight_decay: L2 penalty added to the gradient.
        nesterov: Use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: Maximize the objective instead of minimizing it.
        foreach: Use the multi-tensor implementation; ``None`` lets torch choose.
    """

    def __init__(
        self,
        params: Params,
        *,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
        )
