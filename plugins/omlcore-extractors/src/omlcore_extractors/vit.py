"""``vit``: the DINO and DINOv2 Vision Transformers, embedding = the final-norm class token.

The network is assembled from timm's transformer blocks and patch embedding, under the parameter names of
the published DINO and DINOv2 checkpoints (``cls_token``, ``pos_embed`` with the class position,
``register_tokens``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``,
``norm``), so those files load without conversion; DINOv2's unused ``mask_token`` is left out. Inputs of
any size work: the position embeddings are resized the way the original code does it (bicubic, with
DINO's 0.1 offset; DINOv2 with registers: antialiased, no offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from omlcore_extractors.base import BaseExtractor
from omlcore_extractors.errors import UnknownArchError
from omlcore_extractors.weights import KeyLayout, native_layout, prefixed_layout

__all__ = ["DinoVisionTransformer", "ViTArch", "ViTExtractor"]

ViTArch = Literal[
    "vits8", "vits16", "vitb8", "vitb16", "vits14", "vitb14", "vitl14", "vits14_reg", "vitb14_reg", "vitl14_reg"
]


@dataclass(frozen=True)
class _Spec:
    patch: int
    dim: int
    depth: int
    heads: int
    img: int
    layer_scale: bool = False
    registers: int = 0
    offset: float = 0.1
    antialias: bool = False


def _dinov2(dim: int, depth: int, heads: int, registers: bool) -> _Spec:
    if registers:
        return _Spec(14, dim, depth, heads, 518, True, 4, 0.0, True)
    return _Spec(14, dim, depth, heads, 518, True)


SPECS: dict[str, _Spec] = {
    # DINO (Caron et al. 2021): 224 px, no layer scale
    "vits8": _Spec(8, 384, 12, 6, 224),
    "vits16": _Spec(16, 384, 12, 6, 224),
    "vitb8": _Spec(8, 768, 12, 12, 224),
    "vitb16": _Spec(16, 768, 12, 12, 224),
    # DINOv2 (Oquab et al. 2023): 518 px grid, layer scale, optional 4 registers
    "vits14": _dinov2(384, 12, 6, False),
    "vitb14": _dinov2(768, 12, 12, False),
    "vitl14": _dinov2(1024, 24, 16, False),
    "vits14_reg": _dinov2(384, 12, 6, True),
    "vitb14_reg": _dinov2(768, 12, 12, True),
    "vitl14_reg": _dinov2(1024, 24, 16, True),
}
assert set(SPECS) == set(get_args(ViTArch))


class DinoVisionTransformer(nn.Module):
    """A DINO / DINOv2 ViT backbone returning the normalised class token ``(B, dim)``."""

    def __init__(self, spec: _Spec) -> None:
        super().__init__()
        from timm.layers.patch_embed import PatchEmbed
        from timm.models.vision_transformer import Block

        self.spec = spec
        norm: Any = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(
            img_size=spec.img, patch_size=spec.patch, in_chans=3, embed_dim=spec.dim, strict_img_size=False
        )
        self.grid = spec.img // spec.patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, spec.dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, spec.registers, spec.dim)) if spec.registers else None
        self.blocks = nn.ModuleList(
            Block(
                spec.dim,
                spec.heads,
                mlp_ratio=4.0,
                qkv_bias=True,
                init_values=1e-5 if spec.layer_scale else None,
                norm_layer=norm,
            )
            for _ in range(spec.depth)
        )
        self.norm = norm(spec.dim)
        self._init()

    def _init(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """The position embeddings ``(1, 1 + grid_h * grid_w, dim)`` for a patch grid of that size."""
        if (grid_h, grid_w) == (self.grid, self.grid):
            return self.pos_embed
        dtype = self.pos_embed.dtype
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        if self.spec.offset:
            scale = ((grid_h + self.spec.offset) / self.grid, (grid_w + self.spec.offset) / self.grid)
            patch_pos = nn.functional.interpolate(
                patch_pos, scale_factor=scale, mode="bicubic", antialias=self.spec.antialias
            )
        else:
            patch_pos = nn.functional.interpolate(
                patch_pos, size=(grid_h, grid_w), mode="bicubic", antialias=self.spec.antialias
            )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def tokens(self, x: Tensor) -> Tensor:
        """All tokens after the final norm: class token, registers, then patches."""
        grid_h, grid_w = x.shape[-2] // self.spec.patch, x.shape[-1] // self.spec.patch
        if grid_h < 1 or grid_w < 1:
            from omlcore_extractors.errors import InputSizeError

            raise InputSizeError(
                f"The input {tuple(x.shape[-2:])} is smaller than one {self.spec.patch}x{self.spec.patch} patch."
            )
        # pixels past the last whole patch are dropped, as a stride-`patch` convolution does
        t = self.patch_embed(x[..., : grid_h * self.spec.patch, : grid_w * self.spec.patch])
        t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        t = t + self.position_embedding(grid_h, grid_w)
        if self.register_tokens is not None:
            t = torch.cat((t[:, :1], self.register_tokens.expand(t.shape[0], -1, -1), t[:, 1:]), dim=1)
        for block in self.blocks:
            t = block(t)
        out: Tensor = self.norm(t)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.tokens(x)[:, 0]


class ViTExtractor(BaseExtractor):
    """DINO / DINOv2 ViT extractor (``vit``): the class token after the final norm, ``feat_dim`` = width.

    Args:
        weights: ``None`` (random init), a zoo key (``vits16_dino``, ``vits14_reg_dinov2``, ``vits16_sop``...)
            or a checkpoint file: DINO/DINOv2 backbone state dicts, OML or omlcore extractor checkpoints,
            Lightning checkpoints.
        arch: ``vits8``, ``vits16``, ``vitb8``, ``vitb16`` (DINO; 224 px grid); ``vits14``, ``vitb14``,
            ``vitl14`` and their ``_reg`` variants with 4 register tokens (DINOv2; 518 px grid). Any input
            size is accepted; position embeddings are interpolated.
        normalise_features: L2-normalise the embeddings.
        use_multi_scale: average the embeddings of the input at scales 1, 1/sqrt(2) and 1/2 (bilinear), as DINO's
            evaluation does; three forward passes.
    """

    registry_name = "vit"
    archs = tuple(SPECS)

    def __init__(
        self,
        weights: str | Path | None = None,
        arch: ViTArch = "vits16",
        normalise_features: bool = False,
        use_multi_scale: bool = False,
    ) -> None:
        if arch not in SPECS:
            raise UnknownArchError(self.registry_name, str(arch), list(SPECS))
        super().__init__(normalise_features)
        self.arch = arch
        self.use_multi_scale = use_multi_scale
        self.init_args = {"arch": arch, "normalise_features": normalise_features, "use_multi_scale": use_multi_scale}
        self.model: Any = DinoVisionTransformer(SPECS[arch])
        self._init_weights(weights)

    @property
    def feat_dim(self) -> int:
        return int(self.model.norm.normalized_shape[0])

    @property
    def patch_size(self) -> int:
        """Side of a patch in pixels."""
        return SPECS[self.arch].patch

    def features(self, x: Tensor) -> Tensor:
        if not self.use_multi_scale:
            out: Tensor = self.model(x)
            return out
        total: Tensor = self.model(x)
        for scale in (1 / math.sqrt(2), 0.5):
            small = nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            total = total + self.model(small)
        return total / 3

    def weight_layouts(self) -> list[KeyLayout]:
        # DINO/DINOv2 backbone files are the backbone's keys; OML's ViTExtractor saved them under "model.".
        def unused(key: str) -> bool:
            return key == "mask_token" or key.startswith("head.")

        return [native_layout(), prefixed_layout("DINO/DINOv2", "model.", ignore=unused)]

    def last_self_attention(self, x: Tensor) -> Tensor:
        """Attention weights of the last block, ``(B, heads, T, T)`` over all tokens (class token first).

        Used to draw where the class token looks (OML's ``draw_attention``): row 0, columns after the class
        and register tokens, reshaped to the patch grid.
        """
        vit: Any = self.model
        grid_h, grid_w = x.shape[-2] // vit.spec.patch, x.shape[-1] // vit.spec.patch
        t = vit.patch_embed(x[..., : grid_h * vit.spec.patch, : grid_w * vit.spec.patch])
        t = torch.cat((vit.cls_token.expand(t.shape[0], -1, -1), t), dim=1) + vit.position_embedding(grid_h, grid_w)
        if vit.register_tokens is not None:
            t = torch.cat((t[:, :1], vit.register_tokens.expand(t.shape[0], -1, -1), t[:, 1:]), dim=1)
        for block in vit.blocks[:-1]:
            t = block(t)
        last = vit.blocks[-1]
        attn = last.attn
        h = last.norm1(t)
        b, n, c = h.shape
        qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        weights: Tensor = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return weights
