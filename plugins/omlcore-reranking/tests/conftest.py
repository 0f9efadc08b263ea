"""Shared fixtures: the tests see the real installed entry points, whatever ``OMLCORE_DISABLE_PLUGINS`` says."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture(scope="module")
def mock_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock image dataset (``omlcore data mock``), one per test module (tests may write caches into it)."""
    from omlcore_images import make_mock_dataset

    root = tmp_path_factory.mktemp("mock")
    make_mock_dataset(root)
    return root
