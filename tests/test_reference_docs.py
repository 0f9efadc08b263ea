"""The reference docs list every config key, every kind and every error class."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from omlcore import errors
from omlcore.registry import KINDS
from omlcore.schemas import PIPELINES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        nested = [
            a
            for a in (info.annotation, *typing.get_args(info.annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        section = [n for n in nested if n.__name__ != "ComponentSpec"]
        if section:
            keys += leaf_keys(section[0], f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_every_config_key_is_documented(pipeline: str) -> None:
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    missing = [k for k in leaf_keys(PIPELINES[pipeline]) if f"`{k}`" not in text]
    assert missing == [], f"docs/config.md does not mention: {missing}"


def test_every_kind_is_documented_for_plugin_authors() -> None:
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for kind in KINDS.values():
        assert f"`{kind.group}`" in text, kind.group
        assert kind.protocol.__name__ in text, kind.protocol.__name__


def test_every_error_class_is_in_the_catalogue() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    classes = [n for n, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)]
    assert classes
    assert [c for c in classes if f"`{c}`" not in text] == []
