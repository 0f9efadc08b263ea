"""Shared fixtures: the real installed entry points (whatever ``OMLCORE_DISABLE_PLUGINS`` says), no
albumentations update check (it would try the network on import), and sample images."""

import os
from collections.abc import Iterator

import numpy as np
import pytest

from omlcore.registry import Registry, use_registry

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture
def random_image() -> np.ndarray:
    """A random RGB ``uint8`` image, 40 high and 30 wide (not square, not a multiple of anything)."""
    return np.random.default_rng(7).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
