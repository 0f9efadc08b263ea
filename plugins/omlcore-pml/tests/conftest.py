"""Shared fixtures and tables: the tests see the real installed entry points, none disabled."""

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from omlcore.registry import Registry, use_registry

FEAT_DIM = 8
N_LABELS = 4

# Arguments each component needs to build (its required parameters, sized for FEAT_DIM / N_LABELS).
_CLASSES = {"num_classes": N_LABELS, "embedding_size": FEAT_DIM}
REQUIRED_ARGS: dict[str, dict[str, Any]] = {
    "pml_arcface": _CLASSES,
    "pml_cosface": _CLASSES,
    "pml_large_margin_softmax": _CLASSES,
    "pml_normalized_softmax": _CLASSES,
    "pml_proxy_anchor": _CLASSES,
    "pml_proxy_nca": _CLASSES,
    "pml_soft_triple": _CLASSES,
    "pml_sphereface": _CLASSES,
    "pml_sub_center_arcface": _CLASSES,
    "pml_p2sgrad": {"num_classes": N_LABELS, "descriptors_dim": FEAT_DIM},
    "pml_manifold": {"l": FEAT_DIM, "K": 5},  # PML requires l == embedding size, K < batch size
    "pml_ranked_list": {"margin": 0.4, "Tn": 10.0},
    "pml_cross_batch_memory": {"loss": {"name": "pml_contrastive"}, "embedding_size": FEAT_DIM, "memory_size": 32},
}


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """A registry over the installed distributions' entry points, none disabled, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Random float features ``(16, FEAT_DIM)`` and labels, 4 labels x 4 items, shuffled."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N_LABELS).repeat_interleave(4)
    return torch.randn(16, FEAT_DIM, generator=g), labels[torch.randperm(16, generator=g)]
