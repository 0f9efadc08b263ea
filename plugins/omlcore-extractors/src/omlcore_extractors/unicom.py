"""``vit_unicom``: the UniCom ViTs (An et al. 2023), embedding = an MLP over all flattened patch tokens.

UniCom's network is a ViT without class token (ReLU6 MLPs, bias-free qkv) whose normalised patch tokens
are flattened and mapped by ``Linear -> BatchNorm1d -> Linear -> BatchNorm1d`` to the embedding. It is built
as timm's ``VisionTransformer`` held as ``model`` with that head as ``model.feature``, which gives exactly
the key names of UniCom's published files (under ``model.``, as OML saved them). The head needs the
training input size: other sizes are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

from torch import Tensor, nn

from omlcore_extractors.base import BaseExtractor
from omlcore_extractors.errors import InputSizeError, UnknownArchError
from omlcore_extractors.weights import KeyLayout, native_layout, prefixed_layout

__all__ = ["UnicomArch", "ViTUnicomExtractor"]

UnicomArch = Literal["vitb32_unicom", "vitb16_unicom", "vitl14_unicom", "vitl14_336px_unicom"]


@dataclass(frozen=True)
class _Spec:
    patch: int
    width: int
    depth: int
    heads: int
    size: int
    out: int


SPECS: dict[str, _Spec] = {
    "vitb32_unicom": _Spec(32, 768, 12, 12, 224, 512),
    "vitb16_unicom": _Spec(16, 768, 12, 12, 224, 768),
    "vitl14_unicom": _Spec(14, 1024, 24, 16, 224, 768),
    "vitl14_336px_unicom": _Spec(14, 1024, 24, 16, 336, 768),
}
assert set(SPECS) == set(get_args(UnicomArch))


class ViTUnicomExtractor(BaseExtractor):
    """UniCom ViT extractor (``vit_unicom``).

    Args:
        weights: ``None`` (random init), a zoo key (``vitb32_unicom``...) or a file (UniCom's ``FP16-ViT-*.pt``
            state dicts, half precision is converted; OML or omlcore checkpoints).
        arch: ``vitb32_unicom`` (512-d), ``vitb16_unicom``, ``vitl14_unicom`` (768-d, 224 px) or
            ``vitl14_336px_unicom`` (768-d, 336 px). Inputs must be exactly that size.
        normalise_features: L2-normalise the embeddings (UniCom's zoo keys do).
    """

    registry_name = "vit_unicom"
    archs = tuple(SPECS)

    def __init__(
        self, weights: str | Path | None = None, arch: UnicomArch = "vitb32_unicom", normalise_features: bool = True
    ) -> None:
        if arch not in SPECS:
            raise UnknownArchError(self.registry_name, str(arch), list(SPECS))
        super().__init__(normalise_features)
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
            qkv_bias=False,
            class_token=False,
            global_pool="",
            num_classes=0,
            norm_layer=partial(nn.LayerNorm, eps=1e-5),
            act_layer=nn.ReLU6,
        )
        tokens = (spec.size // spec.patch) ** 2
        self.model.feature = nn.Sequential(
            nn.Linear(spec.width * tokens, spec.width, bias=False),
            nn.BatchNorm1d(spec.width, eps=2e-5),
            nn.Linear(spec.width, spec.out, bias=False),
            nn.BatchNorm1d(spec.out, eps=2e-5),
        )
        self._out = spec.out
        self._init_weights(weights)

    @property
    def feat_dim(self) -> int:
        return self._out

    def features(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise InputSizeError(
                f"vit_unicom(arch={self.arch!r}) takes {self.input_size}x{self.input_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]} (input shape {tuple(x.shape)}): its head reads every patch token. "
                f"Resize them, e.g. with the transform norm_resize_torch(im_size={self.input_size})."
            )
        tokens = self.model.forward_features(x)
        out: Tensor = self.model.feature(tokens.flatten(1))
        return out

    def weight_layouts(self) -> list[KeyLayout]:
        return [native_layout(), prefixed_layout("UniCom", "model.")]
