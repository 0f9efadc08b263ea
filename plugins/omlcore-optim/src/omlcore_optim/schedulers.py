"""Learning-rate schedulers for the ``omlcore.schedulers`` entry-point group.

Each class subclasses the ``torch.optim.lr_scheduler`` class of the same name (``LambdaWarmup`` subclasses
:class:`~torch.optim.lr_scheduler.LambdaLR`) with a constructor that lists only what a config can set,
with plain types, so omlcore checks a config's ``args`` before training starts.

The ``optimizer`` is passed by the pipeline at run time. Differences from torch, the same for every class:

- everything after ``optimizer`` is keyword-only;
- ``last_epoch`` is not a config argument: a resumed run restores the scheduler from its ``state_dict``;
- rates and momenta are one number applied to every parameter group (a config cannot know the groups
  the pipeline creates), where torch also accepts a list per group;
- arguments holding Python callables (``CyclicLR``'s ``scale_fn``, ``LambdaLR``'s ``lr_lambda``) are
  left out, since a config cannot hold code. ``lambda_warmup`` covers the common use of ``LambdaLR``.

How often ``step()`` is called (per batch or per epoch) is the pipeline's ``scheduling.interval``; the
words "step" and "epoch" below mean one call of ``step()``.
"""

import math
from typing import Literal

import torch
from torch.optim import Optimizer

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LambdaWarmup",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "StepLR",
]


class ConstantLR(torch.optim.lr_scheduler.ConstantLR):
    """Multiplies the learning rate by ``factor`` for the first ``total_iters`` steps, then restores it
    (:class:`torch.optim.lr_scheduler.ConstantLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        factor: Multiplier used until ``total_iters`` steps have been taken, in ``[0, 1]``.
        total_iters: Number of steps that use the reduced learning rate.
    """

    def __init__(self, optimizer: Optimizer, *, factor: float = 1.0 / 3, total_iters: int = 5) -> None:
        super().__init__(optimizer, factor=factor, total_iters=total_iters)


class CosineAnnealingLR(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine decay from the initial learning rate to ``eta_min`` over ``T_max`` steps
    (:class:`torch.optim.lr_scheduler.CosineAnnealingLR`); past ``T_max`` the cosine continues, so the
    learning rate rises again.

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        T_max: Number of steps of one half cosine period.
        eta_min: The lowest learning rate.
    """

    def __init__(self, optimizer: Optimizer, *, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min)


class CosineAnnealingWarmRestarts(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
    """Cosine decay to ``eta_min`` that restarts from the initial learning rate, SGDR-style
    (:class:`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        T_0: Number of steps until the first restart.
        T_mult: Each period is ``T_mult`` times longer than the previous one.
        eta_min: The lowest learning rate.
    """

    def __init__(self, optimizer: Optimizer, *, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> None:
        super().__init__(optimizer, T_0=T_0, T_mult=T_mult, eta_min=eta_min)


class CyclicLR(torch.optim.lr_scheduler.CyclicLR):
    """Cycles the learning rate between ``base_lr`` and ``max_lr``
    (:class:`torch.optim.lr_scheduler.CyclicLR`). Overrides the optimizer's learning rate with
    ``base_lr``. With ``cycle_momentum`` the optimizer must have ``momentum`` or ``betas``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        base_lr: The lower learning rate of the cycle.
        max_lr: The upper learning rate of the cycle.
        step_size_up: Steps from ``base_lr`` up to ``max_lr``.
        step_size_down: Steps back down; ``None`` means ``step_size_up``.
        mode: ``triangular`` (constant amplitude), ``triangular2`` (amplitude halved every cycle) or
            ``exp_range`` (amplitude multiplied by ``gamma ** step``).
        gamma: Decay base of ``exp_range``.
        cycle_momentum: Cycle the momentum inversely to the learning rate.
        base_momentum: The lower momentum of the cycle.
        max_momentum: The upper momentum of the cycle.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        base_lr: float,
        max_lr: float,
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
    ) -> None:
        super().__init__(
            optimizer,
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
        )


class ExponentialLR(torch.optim.lr_scheduler.ExponentialLR):
    """Multiplies the learning rate by ``gamma`` every step
    (:class:`torch.optim.lr_scheduler.ExponentialLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        gamma: Multiplicative factor per step.
    """

    def __init__(self, optimizer: Optimizer, *, gamma: float) -> None:
        super().__init__(optimizer, gamma=gamma)


class LinearLR(torch.optim.lr_scheduler.LinearLR):
    """Moves the learning-rate multiplier linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then keeps ``end_factor`` (:class:`torch.optim.lr_scheduler.LinearLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        start_factor: Multiplier at the first step, in ``(0, 1]``.
        end_factor: Multiplier reached after ``total_iters`` steps, in ``[0, 1]``.
        total_iters: Number of steps of the linear change.
    """

    def __init__(
        self, optimizer: Optimizer, *, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
    ) -> None:
        super().__init__(optimizer, start_factor=start_factor, end_factor=end_factor, total_iters=total_iters)


class MultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
    """Multiplies the learning rate by ``gamma`` at each milestone
    (:class:`torch.optim.lr_scheduler.MultiStepLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        milestones: Steps at which the learning rate drops; a step listed twice drops twice.
        gamma: Multiplicative factor per milestone.
    """

    def __init__(self, optimizer: Optimizer, *, milestones: list[int], gamma: float = 0.1) -> None:
        super().__init__(optimizer, milestones=milestones, gamma=gamma)


class OneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """The one-cycle policy: warm up to ``max_lr``, then anneal far below the start
    (:class:`torch.optim.lr_scheduler.OneCycleLR`). Overrides the optimizer's learning rate with
    ``max_lr / div_factor``. Give ``total_steps``, or both ``epochs`` and ``steps_per_epoch``; stepping
    past the end raises an error. With ``cycle_momentum`` the optimizer must have ``momentum`` or ``betas``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        max_lr: The peak learning rate.
        total_steps: Length of the cycle in steps.
        epochs: With ``steps_per_epoch``, the cycle length is ``epochs * steps_per_epoch``.
        steps_per_epoch: See ``epochs``.
        pct_start: Fraction of the cycle spent increasing the learning rate.
        anneal_strategy: ``cos`` or ``linear`` annealing.
        cycle_momentum: Cycle the momentum inversely to the learning rate.
        base_momentum: The lower momentum of the cycle.
        max_momentum: The upper momentum of the cycle.
        div_factor: The initial learning rate is ``max_lr / div_factor``.
        final_div_factor: The final learning rate is the initial one divided by ``final_div_factor``.
        three_phase: Use a third phase that anneals to the final learning rate after a symmetric
            warm-up and cool-down.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        max_lr: float,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ) -> None:
        super().__init__(
            optimizer,
            max_lr=max_lr,
            total_steps=total_steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
        )


class PolynomialLR(torch.optim.lr_scheduler.PolynomialLR):
    """Decays the learning rate as ``(1 - step / total_iters) ** power`` until it reaches zero at
    ``total_iters`` (:class:`torch.optim.lr_scheduler.PolynomialLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        total_iters: Number of steps until the learning rate is zero.
        power: Power of the polynomial (1 is linear decay).
    """

    def __init__(self, optimizer: Optimizer, *, total_iters: int = 5, power: float = 1.0) -> None:
        super().__init__(optimizer, total_iters=total_iters, power=power)


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """Multiplies the learning rate by ``factor`` when a monitored metric stops improving
    (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`). ``step(value)`` takes the metric; the
    pipeline passes the one named by ``scheduling.monitor``.

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        mode: ``min``: lower values are better; ``max``: higher values are better.
        factor: Multiplier applied on a plateau, below 1.
        patience: Number of steps without improvement tolerated; the next one reduces the rate.
        threshold: Smallest change that counts as an improvement.
        threshold_mode: ``rel``: relative to the best value; ``abs``: absolute.
        cooldown: Steps to wait after a reduction before counting bad steps again.
        min_lr: The learning rate never goes below this.
        eps: Reductions smaller than this are skipped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(
            optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )


class StepLR(torch.optim.lr_scheduler.StepLR):
    """Multiplies the learning rate by ``gamma`` every ``step_size`` steps
    (:class:`torch.optim.lr_scheduler.StepLR`).

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        step_size: Number of steps between two drops.
        gamma: Multiplicative factor per drop.
    """

    def __init__(self, optimizer: Optimizer, *, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer, step_size=step_size, gamma=gamma)


class _WarmupFactor:
    """The multiplier of :class:`LambdaWarmup` as a function of the step.

    A callable object rather than a closure: ``LambdaLR.state_dict`` saves an object's ``__dict__`` (and
    restores it on load), while it cannot save a function.
    """

    def __init__(self, warmup_steps: int, total_steps: int | None, min_lr_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.total_steps is None:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, "
            f"min_lr_ratio={self.min_lr_ratio})"
        )


class LambdaWarmup(torch.optim.lr_scheduler.LambdaLR):
    """Linear warm-up, then a constant learning rate or a cosine decay: omlcore's replacement for a
    ``LambdaLR`` with a Python lambda, which a config cannot hold.

    With ``lr`` the optimizer's learning rate and ``s`` the number of ``step()`` calls so far (0 right
    after construction), the learning rate is ``lr * f(s)`` where, with ``W = warmup_steps``:

    - warm-up, ``s < W``: ``f(s) = (s + 1) / (W + 1)``, rising linearly; ``f`` reaches 1 at ``s = W``
      and no step uses a zero learning rate;
    - then, without ``total_steps``: ``f(s) = 1``;
    - then, with ``total_steps = T``: a half-cosine from 1 at ``s = W`` down to ``min_lr_ratio`` at
      ``s = T``, ``f(s) = r + (1 - r) * (1 + cos(pi * (s - W) / (T - W))) / 2`` with ``r =
      min_lr_ratio``, and ``f(s) = r`` for ``s >= T``.

    For example ``warmup_steps=4`` gives the multipliers 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, ...

    Args:
        optimizer: The optimizer whose learning rate is scheduled (given by the pipeline).
        warmup_steps: Number of warm-up steps (0: none).
        total_steps: Where the cosine decay ends; ``None`` keeps the learning rate constant after the
            warm-up. Must be larger than ``warmup_steps``.
        min_lr_ratio: The final multiplier of the cosine decay, in ``[0, 1]``; only with ``total_steps``.

    Raises:
        ValueError: If the arguments contradict each other or are out of range.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        warmup_steps: int,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps is not None and total_steps <= warmup_steps:
            raise ValueError(
                f"total_steps must be larger than warmup_steps ({warmup_steps}), got {total_steps}; "
                "leave total_steps out for a constant learning rate after the warm-up"
            )
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        if total_steps is None and min_lr_ratio != 0.0:
            raise ValueError("min_lr_ratio only applies to the cosine decay; set total_steps as well")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, lr_lambda=_WarmupFactor(warmup_steps, total_steps, min_lr_ratio))
