"""Tiny extractors for the ONNX tests: quick to export, and each built to show one behaviour."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GemConvNet(nn.Module):
    """Conv + batch norm + ReLU, GeM pooling with a learnable power, optional L2 normalisation."""

    def __init__(self, channels: int = 8, im_size: int = 32, normalise_features: bool = True) -> None:
        super().__init__()
        self.im_size = im_size
        self.normalise_features = normalise_features
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
        )
        self.p = nn.Parameter(torch.tensor(3.0))
        self.head = nn.Linear(channels, channels)
        # non-trivial running statistics, so that train-mode and eval-mode outputs differ
        self.body[1].running_mean.fill_(0.3)
        self.body[1].running_var.fill_(2.0)

    @property
    def feat_dim(self) -> int:
        return int(self.head.out_features)

    def extract(self, x: Tensor) -> Tensor:
        f = self.body(x).clamp(min=1e-6).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
        f = self.head(f)
        return nn.functional.normalize(f, dim=1) if self.normalise_features else f


class MlpExtractor(nn.Module):
    """An MLP over vectors (no image input): declares ``input_shape = (in_dim,)``."""

    def __init__(self, in_dim: int = 16, hidden: int = 32, out_dim: int = 8) -> None:
        super().__init__()
        self.input_shape = (in_dim,)
        self.feat_dim = out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(0.5), nn.Linear(hidden, out_dim))

    def extract(self, x: Tensor) -> Tensor:
        return self.net(x)


class FixedSizeNet(nn.Module):
    """Adds a position map of one size (as a ViT without interpolation does): other sizes cannot work."""

    feat_dim = 4
    fixed_input_size = True

    def __init__(self, im_size: int = 12) -> None:
        super().__init__()
        self.input_size = im_size
        self.pos = nn.Parameter(torch.randn(1, 3, im_size, im_size))
        self.proj = nn.Linear(3, 4)

    def extract(self, x: Tensor) -> Tensor:
        return self.proj((x + self.pos).mean(dim=(2, 3)))


class UndeclaredSizeNet(FixedSizeNet):
    """Like :class:`FixedSizeNet` but says nothing about its size."""

    fixed_input_size = False

    def __init__(self, im_size: int = 12) -> None:
        super().__init__(im_size)
        del self.input_size


class DriftingNet(nn.Module):
    """Multiplies by a Python counter that grows at every call: the exported graph keeps one value of it."""

    feat_dim = 4
    input_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.lin = nn.Linear(4, 4)

    def extract(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.lin(x) * float(self.calls) + 1.0


class UnexportableNet(nn.Module):
    """Uses an operator no ONNX exporter of torch knows (Airy's Ai function)."""

    feat_dim = 4
    input_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def extract(self, x: Tensor) -> Tensor:
        return torch.special.airy_ai(self.lin(x))


class FlatOutputNet(nn.Module):
    """Breaks the Extractor protocol: one value per batch instead of ``(B, D)``."""

    feat_dim = 1
    input_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def extract(self, x: Tensor) -> Tensor:
        return self.lin(x).sum()


class PlainExtractor:
    """An extractor that is not an ``nn.Module``: a fixed random projection held in a tensor."""

    feat_dim = 3
    input_shape = (5,)

    def __init__(self) -> None:
        self.weight = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))

    def extract(self, x: Tensor) -> Tensor:
        return torch.tanh(x @ self.weight)
