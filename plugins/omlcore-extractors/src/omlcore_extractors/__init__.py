"""omlcore-extractors: embedding extractors, their weights and batched inference, as an omlcore plugin.

Extractors (group ``omlcore.extractors``): ``vit``, ``resnet``, ``vit_clip``, ``vit_unicom``,
``extractor_with_mlp`` and ``efficientnet_lite0``. Inference: :func:`inference_on_images`,
:func:`inference_on_dataset`, :func:`inference_on_csv` and :func:`pairwise_dist`.

The names load lazily: the CLI imports :mod:`omlcore_extractors.hooks` (and so this package) at every start,
and must not pay for torch then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "BaseExtractor": "omlcore_extractors.base",
    "from_pretrained": "omlcore_extractors.base",
    "ViTExtractor": "omlcore_extractors.vit",
    "ResnetExtractor": "omlcore_extractors.resnet",
    "ViTCLIPExtractor": "omlcore_extractors.clip",
    "ViTUnicomExtractor": "omlcore_extractors.unicom",
    "ExtractorWithMLP": "omlcore_extractors.mlp",
    "EfficientNetLite0Extractor": "omlcore_extractors.efficientnet",
    "load_weights": "omlcore_extractors.weights",
    "read_state_dict": "omlcore_extractors.weights",
    "WeightsError": "omlcore_extractors.errors",
    "inference_on_images": "omlcore_extractors.inference",
    "inference_on_dataset": "omlcore_extractors.inference",
    "inference_on_csv": "omlcore_extractors.inference",
    "pairwise_dist": "omlcore_extractors.inference",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_extractors.base import BaseExtractor as BaseExtractor
    from omlcore_extractors.base import from_pretrained as from_pretrained
    from omlcore_extractors.clip import ViTCLIPExtractor as ViTCLIPExtractor
    from omlcore_extractors.efficientnet import EfficientNetLite0Extractor as EfficientNetLite0Extractor
    from omlcore_extractors.errors import WeightsError as WeightsError
    from omlcore_extractors.inference import inference_on_csv as inference_on_csv
    from omlcore_extractors.inference import inference_on_dataset as inference_on_dataset
    from omlcore_extractors.inference import inference_on_images as inference_on_images
    from omlcore_extractors.inference import pairwise_dist as pairwise_dist
    from omlcore_extractors.mlp import ExtractorWithMLP as ExtractorWithMLP
    from omlcore_extractors.resnet import ResnetExtractor as ResnetExtractor
    from omlcore_extractors.unicom import ViTUnicomExtractor as ViTUnicomExtractor
    from omlcore_extractors.vit import ViTExtractor as ViTExtractor
    from omlcore_extractors.weights import load_weights as load_weights
    from omlcore_extractors.weights import read_state_dict as read_state_dict


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore_extractors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
