"""Shared fixtures and the brute-force reference the tests compare against."""

from collections.abc import Iterator

import pytest
import torch

from omlcore.registry import Registry, use_registry


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


def brute_force(queries: torch.Tensor, gallery: torch.Tensor, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Exhaustive kNN in float64, rounded to the queries' dtype, rows ordered by (distance, index)."""
    q, g = queries.double(), gallery.double()
    if metric == "l2":
        full = ((q[:, None, :] - g[None]) ** 2).sum(-1).sqrt()
    else:
        # q.g / sqrt(|q|^2 |g|^2): on small-integer data only the square root and the division round
        norms = (q.square().sum(1)[:, None] * g.square().sum(1)[None]).sqrt()
        cos = torch.where(norms > 0, (q @ g.T) / norms.clamp_min(1e-300), torch.zeros_like(norms))
        full = (1.0 - cos).clamp(0.0, 2.0)
    full = full.to(queries.dtype)
    order = full.sort(dim=1, stable=True)  # stable over ascending gallery indices: ties keep the smaller
    k = min(k, gallery.shape[0])
    return order.values[:, :k], order.indices[:, :k]
