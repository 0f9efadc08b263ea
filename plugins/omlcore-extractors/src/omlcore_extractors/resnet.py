"""``resnet``: torchvision ResNets, with optional GeM pooling, the MoCo v2 projector head, or no head.

The network is torchvision's, held as ``model``, so torchvision ImageNet files load directly and MoCo v2
checkpoints load from their ``module.encoder_q.*`` keys (the momentum encoder ``encoder_k`` and the queue
are left out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from torch import Tensor, nn

from omlcore_extractors.base import BaseExtractor
from omlcore_extractors.errors import UnknownArchError
from omlcore_extractors.weights import KeyLayout, native_layout, prefixed_layout

__all__ = ["GeM", "ResnetArch", "ResnetExtractor"]

ResnetArch = Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_projector"]


class GeM(nn.Module):
    """Generalised mean pooling over the spatial axes: ``mean(clamp(x, eps) ** p) ** (1 / p)``.

    ``p = 1`` is average pooling; large ``p`` tends to max pooling. ``p`` is a fixed number, not a parameter
    (as in OML). Returns ``(B, C)``.
    """

    def __init__(self, p: float, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"gem_p must be positive, got {p}")
        self.p = float(p)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"


def _constructors() -> dict[str, Callable[[], nn.Module]]:
    from torchvision import models  # type: ignore[import-untyped,unused-ignore]

    def projector() -> nn.Module:
        # MoCo v2: the fc layer is a 2-layer MLP 2048 -> 2048 -> 128
        net: nn.Module = models.resnet50(weights=None)
        net.fc = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128))
        return net

    return {
        "resnet18": lambda: models.resnet18(weights=None),
        "resnet34": lambda: models.resnet34(weights=None),
        "resnet50": lambda: models.resnet50(weights=None),
        "resnet101": lambda: models.resnet101(weights=None),
        "resnet152": lambda: models.resnet152(weights=None),
        "resnet50_projector": projector,
    }


class ResnetExtractor(BaseExtractor):
    """ResNet extractor (``resnet``).

    Args:
        weights: ``None`` (random init), a zoo key (``resnet50_imagenet1k_v1``, ``resnet50_moco_v2``...) or a
            checkpoint file (torchvision state dicts, MoCo checkpoints, OML/omlcore/Lightning checkpoints).
        arch: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``, or ``resnet50_projector``
            (resnet50 whose ``fc`` is MoCo v2's MLP head 2048 -> 2048 -> 128).
        gem_p: replace average pooling by GeM pooling with this power (``None``: average pooling).
        remove_fc: drop the ``fc`` head; the embedding is then the pooled last feature map (512 for
            resnet18/34, 2048 for the others). A checkpoint's ``fc`` weights are then left out when loading.
        normalise_features: L2-normalise the embeddings.
    """

    registry_name = "resnet"
    archs = get_args(ResnetArch)

    def __init__(
        self,
        weights: str | Path | None = None,
        arch: ResnetArch = "resnet50",
        gem_p: float | None = None,
        remove_fc: bool = True,
        normalise_features: bool = False,
    ) -> None:
        constructors = _constructors()
        if arch not in constructors:
            raise UnknownArchError(self.registry_name, str(arch), list(constructors))
        super().__init__(normalise_features)
        self.arch = arch
        self.gem_p = gem_p
        self.remove_fc = remove_fc
        self.init_args = {
            "arch": arch,
            "gem_p": gem_p,
            "remove_fc": remove_fc,
            "normalise_features": normalise_features,
        }
        self.model: Any = constructors[arch]()
        if gem_p is not None:
            self.model.avgpool = GeM(gem_p)
        self._backbone_dim = int(self.model.fc.in_features if isinstance(self.model.fc, nn.Linear) else 2048)
        if remove_fc:
            self.model.fc = nn.Identity()
        self._init_weights(weights)

    @property
    def feat_dim(self) -> int:
        fc = self.model.fc
        if isinstance(fc, nn.Identity):
            return self._backbone_dim
        if isinstance(fc, nn.Linear):
            return int(fc.out_features)
        return int(fc[-1].out_features)

    def features(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)
        return out

    def feature_map(self, x: Tensor) -> Tensor:
        """The last convolutional feature map ``(B, C, H/32, W/32)`` (before pooling), e.g. for Grad-CAM."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        out: Tensor = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return out

    def weight_layouts(self) -> list[KeyLayout]:
        # torchvision / MoCo files hold the network's own keys, which this extractor keeps under "model.".
        # With remove_fc, a file's classifier ("fc.*") is known to be unused rather than unexpected.
        def unused(key: str) -> bool:
            return self.remove_fc and key.startswith("fc.")

        native = native_layout()
        native = KeyLayout(native.name, native.rename, lambda key: self.remove_fc and key.startswith("model.fc."))
        return [native, prefixed_layout("torchvision", "model.", ignore=unused)]
