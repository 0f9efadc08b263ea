"""Every optimizer trains a tiny linear model, and every config argument reaches torch."""

import inspect
from typing import Any

import pytest
import torch

import omlcore

# lr chosen per optimizer so that 20 full-batch steps clearly reduce the loss
TRAIN_ARGS: dict[str, dict[str, Any]] = {
    "adadelta": {"lr": 20.0},
    "adagrad": {"lr": 0.5},
    "adam": {"lr": 0.1},
    "adamax": {"lr": 0.1},
    "adamw": {"lr": 0.1, "weight_decay": 0.01},
    "asgd": {"lr": 0.05},
    "nadam": {"lr": 0.1},
    "radam": {"lr": 0.1},
    "rmsprop": {"lr": 0.05},
    "rprop": {},
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
}

# a non-default value for every config argument of every optimizer
NON_DEFAULTS: dict[str, dict[str, Any]] = {
    "adadelta": {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1, "maximize": True, "foreach": False},
    "adagrad": {
        "lr": 0.5,
        "lr_decay": 0.01,
        "weight_decay": 0.1,
        "initial_accumulator_value": 0.2,
        "eps": 1e-9,
        "maximize": True,
        "foreach": False,
    },
    "adam": {
        "lr": 0.5,
        "betas": (0.8, 0.9),
        "eps": 1e-6,
        "weight_decay": 0.1,
        "amsgrad": True,
        "maximize": True,
        "foreach": False,
        "fused": False,
    },
    "adamax": {"lr": 0.5, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1, "maximize": True, "foreach": False},
    "adamw": {
        "lr": 0.5,
        "betas": (0.8, 0.9),
        "eps": 1e-6,
        "weight_decay": 0.1,
        "amsgrad": True,
        "maximize": True,
        "foreach": False,
        "fused": False,
    },
    "asgd": {
        "lr": 0.5,
        "lambd": 1e-3,
        "alpha": 0.5,
        "t0": 100.0,
        "weight_decay": 0.1,
        "maximize": True,
        "foreach": False,
    },
    "nadam": {
        "lr": 0.5,
        "betas": (0.8, 0.9),
        "eps": 1e-6,
        "weight_decay": 0.1,
        "momentum_decay": 0.01,
        "decoupled_weight_decay": True,
        "maximize": True,
        "foreach": False,
    },
    "radam": {
        "lr": 0.5,
        "betas": (0.8, 0.9),
        "eps": 1e-6,
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
        "maximize": True,
        "foreach": False,
    },
    "rmsprop": {
        "lr": 0.5,
        "alpha": 0.9,
        "eps": 1e-6,
        "weight_decay": 0.1,
        "momentum": 0.5,
        "centered": True,
        "maximize": True,
        "foreach": False,
    },
    "rprop": {"lr": 0.5, "etas": (0.4, 1.5), "step_sizes": (1e-5, 10.0), "maximize": True, "foreach": False},
    "sgd": {
        "lr": 0.5,
        "momentum": 0.9,
        "dampening": 0.0,
        "weight_decay": 0.1,
        "nesterov": True,
        "maximize": True,
        "foreach": False,
    },
}

# torch refuses Nesterov momentum with dampening, so SGD's dampening keeps its default above
KEEP_DEFAULT = {("sgd", "dampening")}


def regression() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    torch.manual_seed(0)
    return torch.nn.Linear(4, 1), x, y


@pytest.mark.parametrize("name", sorted(TRAIN_ARGS))
def test_training_reduces_the_loss(name: str) -> None:
    model, x, y = regression()
    optimizer = omlcore.build("optimizer", {"name": name, "args": TRAIN_ARGS[name]}, params=model.parameters())

    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(x), y)

    initial = loss().item()
    for _ in range(20):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.5 * initial


def test_maximize_from_a_config_climbs() -> None:
    model, x, y = regression()
    optimizer = omlcore.build(
        "optimizer", {"name": "sgd", "args": {"lr": 0.01, "maximize": True}}, params=model.parameters()
    )
    initial = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    assert torch.nn.functional.mse_loss(model(x), y).item() > initial


@pytest.mark.parametrize("name", sorted(NON_DEFAULTS))
def test_every_config_argument_reaches_torch(name: str) -> None:
    cls = omlcore.resolve("optimizer", name)
    config_args = [p for p in inspect.signature(cls).parameters if p != "params"]
    values = NON_DEFAULTS[name]
    assert sorted(values) == sorted(config_args), "the table must set every config argument"
    for arg in config_args:
        if (name, arg) not in KEEP_DEFAULT:
            assert values[arg] != inspect.signature(cls).parameters[arg].default, arg
    model = torch.nn.Linear(2, 1)
    optimizer = omlcore.build("optimizer", {"name": name, "args": values}, params=model.parameters())
    group = optimizer.param_groups[0]
    assert {arg: group[arg] for arg in values} == values
