"""Each loss decreases while a small linear model trains on a toy problem (4 Gaussian blobs)."""

from typing import Any

import pytest
import torch

from omlcore.registry import get_registry

CASES: dict[str, dict[str, Any]] = {
    "triplet": {"margin": 0.5},
    "triplet_soft": {"margin": None},
    "triplet_plain": {"margin": 0.5},
    "triplet_with_miner": {"margin": 0.5},
    "contrastive": {},
    "multi_similarity": {"epsilon": None},
    "supcon": {},
    "surrogate_precision": {"k": 3, "temperature2": 0.1},
    "arcface": {"in_features": 8, "num_classes": 4, "s": 8.0, "m": 0.2},
    "mlp_arcface": {"in_features": 8, "num_classes": 4, "mlp_features": [16, 8], "s": 8.0, "m": 0.2},
    "cosface": {"in_features": 8, "num_classes": 4, "s": 8.0, "m": 0.2},
    "proxy_anchor": {"in_features": 8, "num_classes": 4},
    "distributed": {"loss": {"name": "supcon"}},
}


def toy_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(123)) * 0.6
    labels = torch.arange(4).repeat_interleave(6)
    return centres[labels] + torch.randn(24, 16, generator=g), labels


def plain_layout(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (a, p, n): for each label, three (a, p) pairs of it, each with a negative of another label."""
    rows = []
    for c in range(4):
        same = (y == c).nonzero().flatten()
        for i in range(3):
            other = (y == (c + 1 + i) % 4).nonzero().flatten()
            rows += [same[2 * i], same[2 * i + 1], other[i]]
    index = torch.stack(rows)
    return x[index], y[index]


@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_decreases(case: str) -> None:
    torch.manual_seed(0)
    name = case.removesuffix("_soft")
    loss = get_registry().build("loss", {"name": name, "args": CASES[case]})
    model = torch.nn.Linear(16, 8)
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=0.02)
    x_eval, y_eval = toy_batch(999)
    if name == "triplet_plain":
        x_eval, y_eval = plain_layout(x_eval, y_eval)
    with torch.no_grad():
        before = loss(model(x_eval), y_eval).item()
    for step in range(40):
        x, y = toy_batch(step)
        if name == "triplet_plain":
            x, y = plain_layout(x, y)
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        after = loss(model(x_eval), y_eval).item()
    assert after < 0.8 * before, f"{case}: {before:.4f} -> {after:.4f}"
