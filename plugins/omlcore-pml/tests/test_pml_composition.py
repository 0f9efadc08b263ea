"""Nested miners inside pml_ losses, from a spec and from a config, equal PML called directly."""

from typing import Any

import pytest
import torch
from conftest import FEAT_DIM
from pytorch_metric_learning import losses as pml_losses  # type: ignore[import-untyped]
from pytorch_metric_learning import miners as pml_miners  # type: ignore[import-untyped]

import omlcore
from omlcore.errors import ComponentBuildError
from omlcore.registry import Registry

SEMIHARD = {
    "name": "pml_triplet_margin",
    "args": {
        "margin": 0.2,
        "miner": {"name": "pml_triplet_margin_miner", "args": {"margin": 0.2, "type_of_triplets": "semihard"}},
    },
}


def test_nested_triplet_miner_equals_pml_direct(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    loss = omlcore.build("loss", SEMIHARD)
    got = loss(features, labels)
    miner = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    indices = miner(features, labels)
    want = pml_losses.TripletMarginLoss(margin=0.2)(features, labels, indices)
    torch.testing.assert_close(got, want)
    assert loss.last_logs["mined_triplets"] == float(indices[0].numel())


def test_nested_pair_miner_equals_pml_direct(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    spec = {"name": "pml_multi_similarity", "args": {"pair_miner": {"name": "pml_multi_similarity_miner"}}}
    loss = omlcore.build("loss", spec)
    got = loss(features, labels)
    indices = pml_miners.MultiSimilarityMiner()(features, labels)
    want = pml_losses.MultiSimilarityLoss()(features, labels, indices)
    torch.testing.assert_close(got, want)
    assert loss.last_logs["mined_pos_pairs"] == float(indices[0].numel())
    assert loss.last_logs["mined_neg_pairs"] == float(indices[2].numel())


def test_any_omlcore_miner_can_be_nested(
    batch: tuple[torch.Tensor, torch.Tensor], installed_registry: Registry
) -> None:
    class FirstTriplet:
        """A minimal non-PML miner: the first valid triplet of the batch."""

        def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            a = 0
            p = int(next(i for i in range(1, len(labels)) if labels[i] == labels[a]))
            n = int(next(i for i in range(len(labels)) if labels[i] != labels[a]))
            return torch.tensor([a]), torch.tensor([p]), torch.tensor([n])

    installed_registry.register("miner", "first_triplet", FirstTriplet)
    loss = omlcore.build("loss", {"name": "pml_triplet_margin", "args": {"miner": {"name": "first_triplet"}}})
    features, labels = batch
    got = loss(features, labels)
    want = pml_losses.TripletMarginLoss()(features, labels, FirstTriplet().sample(features, labels))
    torch.testing.assert_close(got, want)


def test_miner_and_pair_miner_are_exclusive() -> None:
    spec = {
        "name": "pml_contrastive",
        "args": {"miner": {"name": "pml_batch_hard_miner"}, "pair_miner": {"name": "pml_pair_margin_miner"}},
    }
    with pytest.raises(ComponentBuildError, match="not both"):
        omlcore.build("loss", spec)


def test_loss_slot_of_a_config_validates_nested_miner(installed_registry: Registry) -> None:
    config: dict[str, Any] = {"loss": SEMIHARD}
    assert installed_registry.validate("loss", config["loss"], "loss") == []
    bad = {
        **SEMIHARD,
        "args": {**SEMIHARD["args"], "miner": {"name": "pml_triplet_margin_miner", "args": {"margn": 1}}},
    }
    assert [i.path for i in installed_registry.validate("loss", bad, "loss")] == ["loss.args.miner.args.margn"]


def test_cross_batch_memory_matches_pml(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    spec = {
        "name": "pml_cross_batch_memory",
        "args": {
            "loss": {"name": "pml_contrastive", "args": {"neg_margin": 0.8}},
            "embedding_size": FEAT_DIM,
            "memory_size": 24,
            "miner": {"name": "pml_batch_hard_miner"},
        },
    }
    ours = omlcore.build("loss", spec)
    theirs = pml_losses.CrossBatchMemory(
        pml_losses.ContrastiveLoss(neg_margin=0.8), FEAT_DIM, memory_size=24, miner=pml_miners.BatchHardMiner()
    )
    for step in range(3):  # the memory fills and wraps around
        x = features + step
        torch.testing.assert_close(ours(x, labels), theirs(x, labels))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"loss": {"name": "pml_contrastive", "args": {"miner": {"name": "pml_batch_hard_miner"}}}}, "inner loss"),
        ({"loss": {"name": "pml_contrastive"}, "miner": {"name": "plain"}}, "pml_ miner"),
    ],
)
def test_cross_batch_memory_rejects_what_pml_cannot_run(
    args: dict[str, Any], message: str, installed_registry: Registry
) -> None:
    class Plain:
        def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty, empty

    installed_registry.register("miner", "plain", Plain)
    with pytest.raises(ComponentBuildError, match=message):
        omlcore.build("loss", {"name": "pml_cross_batch_memory", "args": {"embedding_size": FEAT_DIM, **args}})
