"""``extractor_with_mlp``: any extractor followed by an MLP head (OML's ``ExtractorWithMLP``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from omlcore_extractors.base import BaseExtractor

if TYPE_CHECKING:
    from omlcore.protocols import Extractor

__all__ = ["ExtractorWithMLP"]


class ExtractorWithMLP(BaseExtractor):
    """An extractor with an MLP on top (``extractor_with_mlp``); ``feat_dim = mlp_features[-1]``.

    Args:
        extractor: the backbone, an extractor object or, in a config, a nested ``{name, args}`` spec (e.g.
            ``{name: vit, args: {arch: vits16, weights: vits16_dino}}``).
        mlp_features: sizes of the MLP's layers (torchvision's ``MLP``: Linear, ReLU between layers, no
            activation after the last), e.g. ``[384]`` for one linear layer.
        weights: ``None`` (the head is random, the backbone keeps its own weights), a zoo key
            (``vits16_224_mlp_384_inshop``) or a file holding backbone and head (``extractor.*`` and
            ``projection.*``, as OML saved them).
        train_backbone: let gradients reach the backbone; when ``False`` only the head trains (the
            backbone's parameters have ``requires_grad=False``). :meth:`freeze` / :meth:`unfreeze` switch it.
    """

    registry_name = "extractor_with_mlp"

    def __init__(
        self,
        extractor: Extractor,
        mlp_features: list[int],
        weights: str | Path | None = None,
        train_backbone: bool = False,
    ) -> None:
        super().__init__(normalise_features=False)
        if not isinstance(extractor, nn.Module):
            raise TypeError(f"extractor must be a torch.nn.Module extractor, got {type(extractor).__name__}")
        if not mlp_features or any(int(n) < 1 for n in mlp_features):
            raise ValueError(f"mlp_features must be a non-empty list of positive sizes, got {mlp_features}")
        from torchvision.ops import MLP  # type: ignore[import-untyped,unused-ignore]

        self.extractor = extractor
        self.mlp_features = [int(n) for n in mlp_features]
        self.projection = MLP(int(extractor.feat_dim), self.mlp_features)
        describe = getattr(extractor, "describe", None)
        self.init_args: dict[str, Any] = {
            "extractor": describe() if callable(describe) else type(extractor).__name__,
            "mlp_features": self.mlp_features,
            "train_backbone": train_backbone,
        }
        self._init_weights(weights)
        self.train_backbone = train_backbone
        self._set_backbone_grad(train_backbone)

    @property
    def feat_dim(self) -> int:
        return self.mlp_features[-1]

    def features(self, x: Tensor) -> Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_backbone):
            backbone = self.extractor.extract(x)
        out: Tensor = self.projection(backbone)
        return out

    def _set_backbone_grad(self, enabled: bool) -> None:
        for p in self.extractor.parameters():
            p.requires_grad_(enabled)

    def freeze(self) -> None:
        """Train the head only: the backbone gets no gradients (``train_backbone = False``)."""
        self.train_backbone = False
        self._set_backbone_grad(False)

    def unfreeze(self) -> None:
        """Train backbone and head (``train_backbone = True``)."""
        self.train_backbone = True
        self._set_backbone_grad(True)
        for p in self.projection.parameters():
            p.requires_grad_(True)

    @property
    def is_frozen(self) -> bool:
        """True when the backbone does not train."""
        return not self.train_backbone
