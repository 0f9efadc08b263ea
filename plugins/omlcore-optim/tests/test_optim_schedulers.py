"""Learning-rate trajectories of every scheduler, against values computed by hand."""

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from omlcore_optim import LambdaWarmup

import omlcore

MakeSGD = Callable[..., torch.optim.Optimizer]
C1, C2, C3 = (0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3))  # 0.8536, 0.5, 0.1464


def trajectory(name: str, args: dict[str, Any], optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    """The learning rate after construction and after each of ``steps`` scheduler steps."""
    scheduler = omlcore.build("scheduler", {"name": name, "args": args}, optimizer=optimizer)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("step", {"step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5, 0.25, 0.25]),
        # a milestone listed twice applies gamma twice
        ("multi_step", {"milestones": [3, 1, 3], "gamma": 0.1}, [1, 0.1, 0.1, 0.001, 0.001]),
        ("exponential", {"gamma": 0.5}, [1, 0.5, 0.25, 0.125]),
        ("constant", {"factor": 0.5, "total_iters": 2}, [0.5, 0.5, 1, 1]),
        ("linear", {"start_factor": 0.25, "total_iters": 3}, [0.25, 0.5, 0.75, 1, 1]),
        ("linear", {"start_factor": 1.0, "end_factor": 0.5, "total_iters": 2}, [1, 0.75, 0.5, 0.5]),
        ("polynomial", {"total_iters": 4, "power": 2.0}, [1, 0.5625, 0.25, 0.0625, 0, 0]),
        ("cosine_annealing", {"T_max": 4}, [1, C1, C2, C3, 0]),
        ("cosine_annealing", {"T_max": 2, "eta_min": 0.5}, [1, 0.75, 0.5]),
        ("cosine_annealing_warm_restarts", {"T_0": 2, "T_mult": 2}, [1, 0.5, 1, C1, C2, C3, 1]),
        ("lambda_warmup", {"warmup_steps": 4}, [0.2, 0.4, 0.6, 0.8, 1, 1, 1]),
        (
            "lambda_warmup",
            {"warmup_steps": 2, "total_steps": 6, "min_lr_ratio": 0.2},
            [1 / 3, 2 / 3, 1, 0.2 + 0.8 * C1, 0.6, 0.2 + 0.8 * C3, 0.2, 0.2],
        ),
        ("lambda_warmup", {"warmup_steps": 0, "total_steps": 2}, [1, 0.5, 0, 0]),
        ("lambda_warmup", {"warmup_steps": 0}, [1, 1, 1]),
        (
            "cyclic",
            {"base_lr": 0.1, "max_lr": 0.5, "step_size_up": 2, "cycle_momentum": False},
            [0.1, 0.3, 0.5, 0.3, 0.1, 0.3],
        ),
        (
            "cyclic",
            {"base_lr": 0.1, "max_lr": 0.5, "step_size_up": 1, "mode": "triangular2", "cycle_momentum": False},
            [0.1, 0.5, 0.1, 0.3, 0.1],
        ),
        (
            "one_cycle",
            {
                "max_lr": 1.0,
                "total_steps": 5,
                "pct_start": 0.4,
                "anneal_strategy": "linear",
                "div_factor": 4.0,
                "final_div_factor": 2.0,
                "cycle_momentum": False,
            },
            [0.25, 1.0, 1 - 0.875 / 3, 1 - 0.875 * 2 / 3, 0.125],
        ),
    ],
)
def test_trajectory(name: str, args: dict[str, Any], expected: list[float], make_sgd: MakeSGD) -> None:
    lrs = trajectory(name, args, make_sgd(lr=1.0), len(expected) - 1)
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_schedules_scale_the_optimizer_learning_rate(make_sgd: MakeSGD) -> None:
    lrs = trajectory("lambda_warmup", {"warmup_steps": 1, "total_steps": 3}, make_sgd(lr=0.4), 3)
    assert lrs == pytest.approx([0.2, 0.4, 0.2, 0.0], abs=1e-12)


def test_cyclic_cycles_momentum_inversely(make_sgd: MakeSGD) -> None:
    optimizer = make_sgd(lr=1.0, momentum=0.9)
    args = {"base_lr": 0.1, "max_lr": 0.5, "step_size_up": 1, "base_momentum": 0.8, "max_momentum": 0.9}
    scheduler = omlcore.build("scheduler", {"name": "cyclic", "args": args}, optimizer=optimizer)
    momenta = [optimizer.param_groups[0]["momentum"]]
    for _ in range(2):
        optimizer.step()
        scheduler.step()
        momenta.append(optimizer.param_groups[0]["momentum"])
    assert momenta == pytest.approx([0.9, 0.8, 0.9])


def plateau_lrs(args: dict[str, Any], metrics: list[float], optimizer: torch.optim.Optimizer) -> list[float]:
    scheduler = omlcore.build("scheduler", {"name": "reduce_on_plateau", "args": args}, optimizer=optimizer)
    lrs = []
    for value in metrics:
        optimizer.step()
        scheduler.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_reduce_on_plateau_waits_for_patience(make_sgd: MakeSGD) -> None:
    # first value is the best; then 2 bad steps are tolerated and the 3rd reduces
    lrs = plateau_lrs({"patience": 2, "factor": 0.5}, [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6], make_sgd())
    assert lrs == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_max_mode_cooldown_and_floor(make_sgd: MakeSGD) -> None:
    args = {"mode": "max", "patience": 0, "factor": 0.5, "cooldown": 1, "min_lr": 0.3}
    # rising values are improvements in max mode; each stall reduces, except during the cooldown step
    lrs = plateau_lrs(args, [0.1, 0.2, 0.2, 0.2, 0.2, 0.2], make_sgd())
    assert lrs == [1, 1, 0.5, 0.5, 0.3, 0.3]


def test_reduce_on_plateau_threshold(make_sgd: MakeSGD) -> None:
    args = {"patience": 0, "factor": 0.5, "threshold": 0.1, "threshold_mode": "abs"}
    # 0.95 is not 0.1 better than 1.0: a bad step; 0.5 is
    assert plateau_lrs(args, [1.0, 0.95, 0.5], make_sgd()) == [1, 0.5, 0.5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"warmup_steps": 5, "total_steps": 5}, "total_steps must be larger than warmup_steps"),
        ({"warmup_steps": 1, "total_steps": 5, "min_lr_ratio": 1.5}, "min_lr_ratio must be in"),
        ({"warmup_steps": 1, "min_lr_ratio": 0.1}, "set total_steps as well"),
    ],
)
def test_lambda_warmup_rejects_inconsistent_args(args: dict[str, Any], message: str, make_sgd: MakeSGD) -> None:
    with pytest.raises(ValueError, match=message):
        LambdaWarmup(make_sgd(), **args)


def test_lambda_warmup_is_a_lambda_lr_whose_state_round_trips(make_sgd: MakeSGD) -> None:
    first = make_sgd()
    scheduler = LambdaWarmup(first, warmup_steps=2, total_steps=6, min_lr_ratio=0.2)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    for _ in range(3):
        first.step()
        scheduler.step()
    state = scheduler.state_dict()
    assert state["lr_lambdas"][0] == {"warmup_steps": 2, "total_steps": 6, "min_lr_ratio": 0.2}

    # a scheduler created with other settings takes over the saved schedule and position
    second = make_sgd()
    resumed = LambdaWarmup(second, warmup_steps=10)
    resumed.load_state_dict(state)
    assert resumed.total_steps == 6
    second.step()
    resumed.step()
    first.step()
    scheduler.step()
    assert second.param_groups[0]["lr"] == pytest.approx(first.param_groups[0]["lr"]) == pytest.approx(0.6)
