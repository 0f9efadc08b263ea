"""Shared fixtures: the installed registry, the mock dataset, and a helper writing CSV text."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture(scope="session")
def mock_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock dataset, generated once per session (tests must not modify it)."""
    from omlcore_images.mock import make_mock_dataset

    root = tmp_path_factory.mktemp("mock")
    make_mock_dataset(root)
    return root


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str], Path]:
    """Writes CSV text (lines joined with newlines) to tmp_path/df.csv, with two real images next to it."""
    from PIL import Image

    (tmp_path / "images").mkdir(exist_ok=True)
    for name, colour in (("a.png", (255, 0, 0)), ("b.png", (0, 0, 255))):
        Image.new("RGB", (40, 30), colour).save(tmp_path / "images" / name)

    def write(text: str, name: str = "df.csv") -> Path:
        path = tmp_path / name
        path.write_text(text.strip() + "\n", encoding="utf-8")
        return path

    return write
