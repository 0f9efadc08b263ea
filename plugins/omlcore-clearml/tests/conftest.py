"""Shared fixtures: the tests see the real installed entry points, whatever ``OMLCORE_DISABLE_PLUGINS`` says."""

from collections.abc import Iterator

import pytest

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry
