"""Shared fixtures: the installed entry points (none disabled) and small label sets with categories."""

from collections.abc import Iterator

import pytest
from samplers_testdata import make_labels

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture
def labels() -> list[int]:
    """23 labels with 2 to 9 items each (some labels have fewer than 4 items), shuffled."""
    return make_labels([2, 3, 4, 5, 6, 7, 8, 9] * 2 + [2, 3, 4, 5, 6, 7, 8])


@pytest.fixture
def label2category() -> dict[int, str]:
    """The 23 labels of ``labels`` in 3 categories of 8, 8 and 7 labels."""
    return {label: "abc"[label % 3] for label in range(23)}
