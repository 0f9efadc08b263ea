"""Shared fixtures: the installed registry (active for every test), the mock dataset, offline timm."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from omlcore.registry import Registry, use_registry

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # timm never reaches a hub in these tests (pretrained=False anyway)


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture(scope="session")
def mock_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock dataset of omlcore-images (24 drawn images, 4 CSVs), generated once per session."""
    from omlcore_images.mock import make_mock_dataset

    root = tmp_path_factory.mktemp("mock")
    make_mock_dataset(root)
    return root
