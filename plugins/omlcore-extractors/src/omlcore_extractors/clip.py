"""``vit_clip``: the image towers of CLIP ViTs (OpenAI's and Sber's ruCLIP), embedding = projected class token.

The tower is timm's ``VisionTransformer`` in its CLIP configuration (pre-norm, QuickGELU, bias-free patch
projection) held as ``model``, plus the projection matrix ``proj`` (width x output). Published CLIP files
name the same tensors differently (``conv1``, ``class_embedding``, ``transformer.resblocks.N.ln_1``,
``attn.in_proj_weight``, ``mlp.c_fc``, ``ln_post``...); :func:`openai_to_timm_key` converts them. The text
tower of a full CLIP checkpoint is left out (the image tower sits under ``visual.``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from omlcore_extractors.base import BaseExtractor
from omlcore_extractors.errors import InputSizeError, UnknownArchError
from omlcore_extractors.weights import KeyLayout, native_layout

__all__ = ["CLIPArch", "ViTCLIPExtractor", "openai_to_timm_key"]

CLIPArch = Literal["vitb16_224", "vitb32_224", "vitl14_224", "vitl14_336"]


@dataclass(frozen=True)
class _Spec:
    patch: int
    width: int
    depth: int
    heads: int
    size: int
    out: int


SPECS: dict[str, _Spec] = {
    "vitb16_224": _Spec(16, 768, 12, 12, 224, 512),
    "vitb32_224": _Spec(32, 768, 12, 12, 224, 512),
    "vitl14_224": _Spec(14, 1024, 24, 16, 224, 768),
    "vitl14_336": _Spec(14, 1024, 24, 16, 336, 768),
}
assert set(SPECS) == set(get_args(CLIPArch))

_BLOCK_PARTS = {
    "ln_1": "norm1",
    "ln_2": "norm2",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")
_TOP = {
    "conv1.weight": "model.patch_embed.proj.weight",
    "class_embedding": "model.cls_token",
    "positional_embedding": "model.pos_embed",
    "ln_pre.weight": "model.norm_pre.weight",
    "ln_pre.bias": "model.norm_pre.bias",
    "ln_post.weight": "model.norm.weight",
    "ln_post.bias": "model.norm.bias",
    "proj": "proj",
}


def openai_to_timm_key(key: str) -> str | None:
    """The extractor key of a key of OpenAI's CLIP image tower (``None`` if it is not one)."""
    if key in _TOP:
        return _TOP[key]
    match = _BLOCK.fullmatch(key)
    if match is None:
        return None
    index, rest = match.groups()
    for old, new in _BLOCK_PARTS.items():
        if rest == old or rest.startswith(old + "."):
            return f"model.blocks.{index}.{new}{rest[len(old) :]}"
    return None


def _openai_tensor(key: str, tensor: Tensor) -> Tensor:
    if key == "model.cls_token":  # (D,) -> (1, 1, D)
        return tensor.reshape(1, 1, -1)
    if key == "model.pos_embed" and tensor.dim() == 2:  # (T, D) -> (1, T, D)
        return tensor.unsqueeze(0)
    return tensor


class ViTCLIPExtractor(BaseExtractor):
    """CLIP image tower extractor (``vit_clip``): ``ln_post(class token) @ proj``.

    Args:
        weights: ``None`` (random init), a zoo key (``openai_vitb16_224``, ``sber_vitb32_224``...) or a file:
            an OpenAI/ruCLIP state dict (full model or image tower), an OML ``ViTCLIPExtractor`` checkpoint,
            or this extractor's own checkpoint.
        arch: ``vitb16_224``, ``vitb32_224``, ``vitl14_224`` (224 px) or ``vitl14_336`` (336 px). Inputs must
            be exactly that size: the model has no position embeddings for other sizes.
        normalise_features: L2-normalise the embeddings (CLIP compares normalised embeddings).
    """

    registry_name = "vit_clip"
    archs = tuple(SPECS)

    def __init__(
        self, weights: str | Path | None = None, arch: CLIPArch = "vitb32_224", normalise_features: bool = True
    ) -> None:
        if arch not in SPECS:
            raise UnknownArchError(self.registry_name, str(arch), list(SPECS))
        super().__init__(normalise_features)
        from timm.layers import QuickGELU
        from timm.models.vision_transformer import VisionTransformer

        spec = SPECS[arch]
        self.arch = arch
        self.input_size = spec.size
        self.init_args = {"arch": arch, "normalise_features": normalise_features}
        self.model: Any = VisionTransformer(
            img_size=spec.size,
            patch_size=spec.patch,
            embed_dim=spec.width,
            depth=spec.depth,
            num_heads=spec.heads,
            mlp_ratio=4.0,
            qkv_bias=True,
            pre_norm=True,
            class_token=True,
            global_pool="token",
            num_classes=0,
            norm_layer=partial(nn.LayerNorm, eps=1e-5),
            act_layer=QuickGELU,
        )
        self.proj = nn.Parameter(torch.randn(spec.width, spec.out) * spec.width**-0.5)
        self._init_weights(weights)

    @property
    def feat_dim(self) -> int:
        return int(self.proj.shape[1])

    def features(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise InputSizeError(
                f"vit_clip(arch={self.arch!r}) takes {self.input_size}x{self.input_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]} (input shape {tuple(x.shape)}). Resize them, e.g. with the transform "
                f"norm_resize_albu_clip(im_size={self.input_size}) or norm_resize_torch(im_size={self.input_size})."
            )
        pooled: Tensor = self.model(x)
        return pooled @ self.proj

    def weight_layouts(self) -> list[KeyLayout]:
        return [native_layout(), KeyLayout("OpenAI CLIP", openai_to_timm_key, transform=_openai_tensor)]
