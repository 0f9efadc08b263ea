"""`triplet_with_miner` picks row gathering for few triplets and a distance matrix for many: same values."""

from __future__ import annotations

from typing import Any

import torch
from omlcore_losses.triplet import TripletLossWithMiner


class FixedMiner:
    """Returns the triplets it was given, whatever the batch."""

    def __init__(self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> None:
        self.triplets = (a, p, n)

    def sample(self, features: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.triplets


def reference(features: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    d_ap = (features[a] - features[p]).double().pow(2).sum(1).sqrt()
    d_an = (features[a] - features[n]).double().pow(2).sum(1).sqrt()
    return torch.relu(0.2 + d_ap - d_an).mean()


def test_both_paths_agree_with_the_reference() -> None:
    torch.manual_seed(0)
    features = torch.randn(16, 8)
    labels = torch.arange(4).repeat_interleave(4)
    same = labels[:, None] == labels[None, :]
    valid = (same & ~torch.eye(16, dtype=torch.bool))[:, :, None] & ~same[:, None, :]
    a, p, n = valid.nonzero(as_tuple=True)  # 16 * 3 * 12 = 576 triplets: the matrix path
    few = (a[:16], p[:16], n[:16])  # 16 triplets for 16 rows: the gathering path
    for triplets in ((a, p, n), few):
        loss = TripletLossWithMiner(margin=0.2, miner=FixedMiner(*triplets))
        x = features.clone().requires_grad_(True)
        value = loss(x, labels)
        value.backward()
        x_ref = features.clone().double().requires_grad_(True)
        expected = reference(x_ref, *triplets)
        expected.backward()
        assert torch.allclose(value.double(), expected, atol=1e-6)
        assert x.grad is not None
        assert x_ref.grad is not None
        assert torch.allclose(x.grad.double(), x_ref.grad, atol=1e-5)
