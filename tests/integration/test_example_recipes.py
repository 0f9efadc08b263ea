"""The recipes in ``examples/`` (outside ``examples/configs/``): editor schema line, the committed schema, and a
full check with the repository's plugins (every component name and argument)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from omlcore.config import load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "examples").glob("*.yaml"))


def test_the_emoji_recipe_is_there() -> None:
    assert "emoji" in [p.stem for p in RECIPES]


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_has_a_schema_line_and_passes_the_full_check(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    first = path.read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema=../schemas/{data['pipeline']}.schema.json"
    schema = json.loads((path.parent / first.split("=", 1)[1]).resolve().read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(data)
    ]
    assert errors == []
    config = load_config(path)  # structure, cross-field rules and every plugin's arguments
    assert config.pipeline == data["pipeline"]  # type: ignore[attr-defined]


def test_emoji_recipe_keeps_mirror_images_apart_and_uses_the_lite0_weights() -> None:
    data = yaml.safe_load((REPO / "examples" / "emoji.yaml").read_text())
    assert data["transforms_train"]["args"]["hflip"] == 0.0
    assert data["extractor"] == {
        "name": "efficientnet_lite0",
        "args": {"weights": "efficientnet_lite0_imagenet", "normalise_features": True},
    }
    assert data["trainer"]["extra_args"]["max_time"] == "00:00:30:00"
