"""Shared fixtures: the tests see the real installed entry points, whatever ``OMLCORE_DISABLE_PLUGINS`` says."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture
def make_sgd() -> Callable[..., torch.optim.Optimizer]:
    """Builds a plain SGD optimizer over one scalar parameter, to drive schedulers."""

    def make(lr: float = 1.0, **kwargs: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, **kwargs)

    return make
