"""Turning a (nested) config into the flat ``name -> scalar`` parameters every backend can store."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ParamValue", "flatten_params"]

ParamValue = str | int | float | bool | None
"""What a flattened parameter holds: a scalar, or ``None`` for a null config value."""

SEPARATOR = "/"


def _as_mapping(config: Any) -> Mapping[str, Any] | None:
    """A mapping view of a config object (pydantic model, dataclass, argparse namespace), or ``None``."""
    if isinstance(config, Mapping):
        return config
    dump = getattr(config, "model_dump", None)  # pydantic v2, without importing pydantic
    if callable(dump):
        dumped = dump(mode="json")
        return dumped if isinstance(dumped, Mapping) else None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if type(config).__name__ == "Namespace" and hasattr(config, "__dict__"):  # argparse.Namespace
        return dict(vars(config))
    return None


def _scalar(value: Any) -> ParamValue:
    """``value`` as a storable scalar: scalars stay, paths and enums become text, numpy/torch scalars
    their Python value, anything else its ``str``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _scalar(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    item = getattr(value, "item", None)  # numpy scalars, one-element tensors
    if callable(item) and getattr(value, "ndim", None) == 0:
        try:
            return _scalar(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def flatten_params(config: Any, sep: str = SEPARATOR, prefix: str = "") -> dict[str, ParamValue]:
    """Flatten a nested config into ``{"optimizer/args/lr": 0.001, ...}``.

    Accepts mappings, pydantic models, dataclasses and ``argparse.Namespace`` objects, nested in any
    way. Nested mappings (and lists of mappings, such as a list of loggers) become path segments
    joined by ``sep``; lists of scalars become one JSON text (``"[1, 5]"``); empty mappings are kept
    as ``"{}"`` so that a key never disappears. Leaves are made scalars (see ``ParamValue``). Keys
    that are already flat pass through unchanged, so flattening twice gives the same result.
    """
    mapping = _as_mapping(config)
    if mapping is None:
        raise TypeError(f"expected a mapping or a config object to flatten, got {type(config).__name__}")
    out: dict[str, ParamValue] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        nested = _as_mapping(value) if not isinstance(value, (str, bytes)) else None
        if nested is not None:
            if nested:
                out.update(flatten_params(nested, sep, f"{name}{sep}"))
            else:
                out[name] = "{}"
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            items = list(value)
            if items and all(_as_mapping(v) is not None for v in items):
                for i, item in enumerate(items):
                    out.update(flatten_params(item, sep, f"{name}{sep}{i}{sep}"))
            else:
                out[name] = json.dumps(items, default=_scalar)
        else:
            scalar = _scalar(value)
            if isinstance(scalar, float) and not math.isfinite(scalar):
                scalar = str(scalar)  # nan / inf: not JSON, and some backends refuse them as params
            out[name] = scalar
    return out
