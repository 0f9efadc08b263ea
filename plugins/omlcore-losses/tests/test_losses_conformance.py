"""The core's conformance kit, run on every loss of the distribution through the real registry."""

from typing import Any

import pytest
import torch
from omlcore_losses import TripletLossWithMiner

from omlcore.registry import Registry
from omlcore.testing.conformance import LossConformance


class TestTriplet(LossConformance):
    kind_name = "triplet"
    args = {"margin": 0.2}


class TestTripletSoft(LossConformance):
    kind_name = "triplet"
    args = {"margin": None}


class TestTripletWithMinerDefault(LossConformance):
    kind_name = "triplet_with_miner"
    args = {"margin": 0.2}


class HardestNegativeMiner:
    """A toy miner for the tests: for each anchor, its first positive and its closest negative."""

    def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool)
        pos = same & ~eye
        dist = torch.cdist(features.detach(), features.detach()).masked_fill(same, float("inf"))
        anchors = pos.any(dim=1).nonzero().flatten()
        positives = pos[anchors].float().argmax(dim=1)
        negatives = dist[anchors].argmin(dim=1)
        return anchors, positives, negatives


class TestTripletWithNestedMiner(LossConformance):
    kind_name = "triplet_with_miner"
    args = {"margin": 0.2, "miner": {"name": "hardest_negative"}}

    @pytest.fixture
    def conformance_registry(self, omlcore_sandbox: Any) -> Registry:
        omlcore_sandbox.add("loss", "triplet_with_miner", TripletLossWithMiner, distribution="omlcore-losses")
        omlcore_sandbox.add("miner", "hardest_negative", HardestNegativeMiner)
        registry: Registry = omlcore_sandbox.registry
        return registry


class TestTripletPlain(LossConformance):
    kind_name = "triplet_plain"
    args = {"margin": 0.2}

    @pytest.fixture
    def loss_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.randn(12, self.feat_dim, generator=torch.Generator().manual_seed(0))
        return features, torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])

    def test_two_labels_two_items(self, component: Any) -> None:
        """A plain triplet batch needs a multiple of 3 rows in (x, x, y) order; checked on (0, 0, 1)."""
        features = torch.randn(3, self.feat_dim).requires_grad_(True)
        self.check_scalar(component(features, torch.tensor([0, 0, 1])), features)


class TestContrastive(LossConformance):
    kind_name = "contrastive"
    args = {"neg_margin": 1.5}


class TestMultiSimilarity(LossConformance):
    kind_name = "multi_similarity"
    args: dict[str, Any] = {}


class TestMultiSimilarityNoMining(LossConformance):
    kind_name = "multi_similarity"
    args = {"epsilon": None}


class TestSupCon(LossConformance):
    kind_name = "supcon"
    args = {"temperature": 0.1}


class TestSurrogatePrecision(LossConformance):
    kind_name = "surrogate_precision"
    args = {"k": 3, "temperature2": 0.5}


class TestArcFace(LossConformance):
    kind_name = "arcface"
    args = {"in_features": 8, "num_classes": 4, "s": 16.0}


class TestArcFaceSmoothedByCategory(LossConformance):
    kind_name = "arcface"
    args = {
        "in_features": 8,
        "num_classes": 4,
        "smoothing_epsilon": 0.2,
        "label2category": {0: "shoes", 1: "shoes", 2: "bags", 3: "bags"},
    }


class TestMlpArcFace(LossConformance):
    kind_name = "mlp_arcface"
    args = {"in_features": 8, "num_classes": 4, "mlp_features": [16, 6], "s": 16.0}


class TestCosFace(LossConformance):
    kind_name = "cosface"
    args = {"in_features": 8, "num_classes": 4, "s": 16.0}


class TestProxyAnchor(LossConformance):
    kind_name = "proxy_anchor"
    args = {"in_features": 8, "num_classes": 4}


class TestDistributedSingleProcess(LossConformance):
    kind_name = "distributed"
    args = {"loss": {"name": "triplet", "args": {"margin": 0.2}}}
