"""The conformance kit, through the real registry, for every miner."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from omlcore.testing.conformance import ComponentFactory, MinerConformance, PairMinerConformance


class TestAllTriplets(MinerConformance):
    kind_name = "all_triplets"


class TestAllTripletsLimited(MinerConformance):
    kind_name = "all_triplets"
    args: ClassVar[dict[str, Any]] = {"max_output_triplets": 20, "seed": 3}
    deterministic = False  # successive calls draw different subsets (documented)


class TestHardTriplets(MinerConformance):
    kind_name = "hard_triplets"


class TestNHardTriplets(MinerConformance):
    kind_name = "n_hard_triplets"
    args: ClassVar[dict[str, Any]] = {"n_positive": [1, 2], "n_negative": 3}


class TestTripletsWithMemory(MinerConformance):
    """With ``tri_expand_k = 1`` (default) the memory adds nothing, so a repeated call is identical."""

    kind_name = "triplets_with_memory"
    args: ClassVar[dict[str, Any]] = {"bank_size_in_batches": 2}


class _FreshInstanceDeterminism:
    """Stateful miners: determinism means two fresh miners fed the same batches agree."""

    def test_deterministic(self, make_component: ComponentFactory, miner_batch: Any) -> None:
        features, labels = miner_batch
        for _ in range(2):
            first, second = make_component(), make_component()
            for _ in range(3):
                for x, y in zip(first.sample(features, labels), second.sample(features, labels), strict=True):
                    assert torch.equal(x, y)


class TestMinerWithBank(_FreshInstanceDeterminism, MinerConformance):
    kind_name = "miner_with_bank"
    args: ClassVar[dict[str, Any]] = {"bank_size_in_batches": 1, "n_positive": 2}


class TestTripletsWithMemoryExpanded(_FreshInstanceDeterminism, MinerConformance):
    kind_name = "triplets_with_memory"
    args: ClassVar[dict[str, Any]] = {"bank_size_in_batches": 2, "tri_expand_k": 3, "seed": 1}


class TestHardCluster(MinerConformance):
    """Anchors and negatives are label centres (indices >= B): checked against ``[batch; centres]``."""

    kind_name = "hard_cluster"

    def _check(self, component: Any, features: torch.Tensor, labels: torch.Tensor) -> int:
        result = component.sample(features, labels)
        memory = component.last_memory()
        rows = torch.cat([features, memory.features])
        return self.check_triplets(result, rows, torch.cat([labels, memory.labels]))

    def test_returns_valid_triplets(self, component: Any, miner_batch: Any) -> None:
        features, labels = miner_batch
        assert self._check(component, features, labels) == 4

    def test_smallest_mixed_batch(self, component: Any) -> None:
        assert self._check(component, torch.randn(4, self.feat_dim), torch.tensor([0, 1, 0, 1])) == 2

    def test_single_label_batch_gives_no_triplets(self, component: Any) -> None:
        assert self._check(component, torch.randn(6, self.feat_dim), torch.full((6,), 3)) == 0


class TestPairs(PairMinerConformance):
    kind_name = "pairs"


class TestAllPairs(PairMinerConformance):
    kind_name = "pairs"
    args: ClassVar[dict[str, Any]] = {"hard_mining": False}


@pytest.mark.parametrize("name", ["miner_with_bank", "triplets_with_memory"])
def test_bank_args_are_required(name: str, installed_registry: Any) -> None:
    issues = installed_registry.validate("miner", {"name": name, "args": {}})
    assert any("bank_size_in_batches" in str(issue.path) + issue.message for issue in issues)
