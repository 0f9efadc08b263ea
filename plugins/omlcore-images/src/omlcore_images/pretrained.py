"""The evaluation transform of each pretrained model, declared by the plugins that provide the weights.

A plugin declares, for each weights key, a zero-argument callable returning the transform::

    [project.entry-points."omlcore.pretrained_transforms"]
    vits16_dino = "omlcore_timm.transforms:vits16_dino_transform"

and :func:`get_transforms_for_pretrained` returns that transform with the image reader it needs. This
distribution declares torchvision's ImageNet classification weights (the preprocessing torchvision
documents for them); extractor plugins add their own keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import metadata
from typing import Any

from omlcore_images.errors import PretrainedTransformNotFoundError
from omlcore_images.readers import ImageReader, reader_for_transform

__all__ = [
    "GROUP",
    "available_pretrained_transforms",
    "get_transforms_for_pretrained",
    "register_pretrained_transform",
    "resnet18_imagenet1k_v1",
    "resnet50_imagenet1k_v1",
    "resnet50_imagenet1k_v2",
]

GROUP = "omlcore.pretrained_transforms"
_registered: dict[str, Callable[[], Any]] = {}


def register_pretrained_transform(key: str, make: Callable[[], Any]) -> None:
    """Declare in-process (a notebook, a test) the evaluation transform of ``key``; overrides entry points."""
    _registered[key] = make


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    from omlcore.registry import disabled_from_env, normalize_dist

    disabled = disabled_from_env()
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if normalize_dist(dist) in disabled:
            continue
        if all(other.value != ep.value for other in found.get(ep.name, [])):
            found.setdefault(ep.name, []).append(ep)
    return found


def available_pretrained_transforms() -> list[str]:
    """Every weights key with a declared evaluation transform (reads metadata, imports nothing)."""
    return sorted({*_entry_points(), *_registered})


def get_transforms_for_pretrained(key: str) -> tuple[Any, ImageReader]:
    """``(transform, reader)`` for the weights ``key``: the evaluation transform the weights were trained
    with, and the image reader that transform expects (see :func:`~omlcore_images.readers.reader_for_transform`).

    Raises :class:`~omlcore_images.errors.PretrainedTransformNotFoundError` listing the known keys.
    """
    if key in _registered:
        transform = _registered[key]()
    else:
        eps = _entry_points()
        if key not in eps:
            known = available_pretrained_transforms()
            raise PretrainedTransformNotFoundError(key, known, difflib.get_close_matches(key, known, n=2))
        if len(eps[key]) > 1:
            from omlcore.errors import PluginConflictError

            providers = [f"{ep.dist.name if ep.dist else '?'} ({ep.value})" for ep in eps[key]]
            raise PluginConflictError("pretrained transform", GROUP, key, providers)
        transform = eps[key][0].load()()
    return transform, reader_for_transform(transform)


def _torchvision_weights(model: str, weights: str) -> Any:
    from torchvision import models  # type: ignore[import-untyped,unused-ignore]

    return models.get_weight(f"{model}.{weights}").transforms()


def resnet18_imagenet1k_v1() -> Any:
    """torchvision ``ResNet18_Weights.IMAGENET1K_V1``: resize 256, centre crop 224, ImageNet normalisation."""
    return _torchvision_weights("ResNet18_Weights", "IMAGENET1K_V1")


def resnet50_imagenet1k_v1() -> Any:
    """torchvision ``ResNet50_Weights.IMAGENET1K_V1``: resize 256, centre crop 224, ImageNet normalisation."""
    return _torchvision_weights("ResNet50_Weights", "IMAGENET1K_V1")


def resnet50_imagenet1k_v2() -> Any:
    """torchvision ``ResNet50_Weights.IMAGENET1K_V2``: resize 232, centre crop 224, ImageNet normalisation."""
    return _torchvision_weights("ResNet50_Weights", "IMAGENET1K_V2")
