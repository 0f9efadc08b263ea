"""Every offered loss and miner builds from a config and runs; pair conversion; argument validation."""

from importlib import metadata
from typing import Any

import pytest
import torch
from conftest import REQUIRED_ARGS
from omlcore_pml.miners import pairs_to_pml
from pytorch_metric_learning import miners as pml_miners  # type: ignore[import-untyped]

import omlcore
from omlcore.errors import ConfigValidationError
from omlcore.registry import KINDS, Registry

# PML's own warnings (deprecated indexing and NumPy calls inside PML), not this plugin's.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def names(kind: str) -> list[str]:
    group = KINDS[kind].group
    return sorted(ep.name for ep in metadata.distribution("omlcore-pml").entry_points if ep.group == group)


def test_required_args_table_names_only_offered_losses() -> None:
    assert set(REQUIRED_ARGS) <= set(names("loss"))


@pytest.mark.parametrize("name", names("loss"))
def test_loss_builds_runs_and_backpropagates(name: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    loss = omlcore.build("loss", {"name": name, "args": REQUIRED_ARGS.get(name, {})})
    features = batch[0].clone().requires_grad_(True)
    value = loss(features, batch[1])
    assert value.shape == ()
    assert value.dtype == features.dtype
    assert bool(torch.isfinite(value))
    value.backward()
    assert features.grad is not None
    assert bool(torch.isfinite(features.grad).all())
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in loss.last_logs.items())


@pytest.mark.parametrize("name", names("miner"))
def test_triplet_miner_gives_valid_triplets(name: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    a, p, n = omlcore.build("miner", {"name": name}).sample(features, labels)
    assert a.dtype == p.dtype == n.dtype == torch.long
    assert a.numel() == p.numel() == n.numel() > 0
    assert bool((labels[a] == labels[p]).all())
    assert bool((a != p).all())
    assert bool((labels[a] != labels[n]).all())


@pytest.mark.parametrize("name", names("pair_miner"))
def test_pair_miner_gives_valid_pairs(name: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    ids1, ids2, is_negative = omlcore.build("pair_miner", {"name": name}).sample(features, labels)
    assert ids1.dtype == ids2.dtype == torch.long
    assert is_negative.dtype == torch.bool
    assert ids1.numel() == ids2.numel() == is_negative.numel() > 0
    assert bool((ids1 != ids2).all())
    assert torch.equal(labels[ids1] != labels[ids2], is_negative)


def test_pair_conversion_round_trips(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    features, labels = batch
    direct = pml_miners.MultiSimilarityMiner(epsilon=0.2)(features, labels)
    wrapped = omlcore.build("pair_miner", {"name": "pml_multi_similarity_miner", "args": {"epsilon": 0.2}})
    for got, want in zip(pairs_to_pml(*wrapped.sample(features, labels)), direct, strict=True):
        assert torch.equal(got, want)


ARC = REQUIRED_ARGS["pml_arcface"]
BAD_ARGS: list[tuple[str, dict[str, Any], str]] = [
    ("pml_triplet_margin", {"margn": 0.1}, "loss.args.margn"),
    ("pml_triplet_margin", {"margin": "abc"}, "loss.args.margin"),
    ("pml_triplet_margin", {"triplets_per_anchor": "some"}, "loss.args.triplets_per_anchor"),
    ("pml_triplet_margin", {"distance": "cosin"}, "loss.args.distance"),
    ("pml_triplet_margin", {"distance": {"name": "lp", "args": {"q": 1}}}, "loss.args.distance.args.q"),
    ("pml_triplet_margin", {"reducer": {"name": "threshold"}}, "loss.args.reducer"),
    ("pml_triplet_margin", {"reducer": {"name": "mean", "args": {"low": 0.1}}}, "loss.args.reducer"),
    ("pml_arcface", {"num_classes": 4.5, "embedding_size": 8}, "loss.args.num_classes"),
    ("pml_arcface", {"num_classes": 4}, "loss.args.embedding_size"),
    (
        "pml_arcface",
        {**REQUIRED_ARGS["pml_arcface"], "weight_regularizer": "regular_faces"},
        "loss.args.weight_regularizer",
    ),
    ("pml_contrastive", {"weight_regularizer": "regular_face"}, "loss.args.weight_regularizer"),
    ("pml_pnp", {"variant": "X"}, "loss.args.variant"),
    (
        "pml_triplet_margin",
        {"miner": {"name": "pml_triplet_margin_miner", "args": {"type_of_triplets": "semi"}}},
        "loss.args.miner.args.type_of_triplets",
    ),
    ("pml_triplet_margin", {"miner": {"name": "pml_no_such_miner"}}, "loss.args.miner.name"),
    ("pml_manifold", {"l": 8, "miner": {"name": "pml_batch_hard_miner"}}, "loss.args.miner"),
]


@pytest.mark.parametrize(("name", "args", "path"), BAD_ARGS)
def test_validation_reports_the_config_path(
    name: str, args: dict[str, Any], path: str, installed_registry: Registry
) -> None:
    issues = installed_registry.validate("loss", {"name": name, "args": args}, "loss")
    assert path in [i.path for i in issues], issues
    with pytest.raises(ConfigValidationError):
        omlcore.build("loss", {"name": name, "args": args})


def test_miner_validation(installed_registry: Registry) -> None:
    issues = installed_registry.validate("miner", {"name": "pml_triplet_margin_miner", "args": {"margins": 1}})
    assert [i.path for i in issues] == ["miner.args.margins"]
    issues = installed_registry.validate(
        "pair_miner", {"name": "pml_batch_easy_hard_miner", "args": {"pos_strategy": "hardest"}}
    )
    assert [i.path for i in issues] == ["pair_miner.args.pos_strategy"]


def test_specs_reach_pml() -> None:
    loss = omlcore.build(
        "loss",
        {
            "name": "pml_triplet_margin",
            "args": {
                "distance": {"name": "lp", "args": {"p": 1, "normalize_embeddings": False}},
                "reducer": {"name": "threshold", "args": {"low": 0.1}},
            },
        },
    )
    assert type(loss.pml.distance).__name__ == "LpDistance"
    assert loss.pml.distance.p == 1
    assert loss.pml.distance.normalize_embeddings is False
    assert type(loss.pml.reducer).__name__ == "ThresholdReducer"
    assert loss.pml.reducer.low == 0.1
    spec = {"name": "pml_contrastive", "args": {"embedding_regularizer": {"name": "lp"}, "embedding_reg_weight": 0.5}}
    regularized = omlcore.build("loss", spec)
    assert type(regularized.pml.embedding_regularizer).__name__ == "LpRegularizer"
    assert regularized.pml.embedding_reg_weight == 0.5
    arc = omlcore.build(
        "loss", {"name": "pml_arcface", "args": {**REQUIRED_ARGS["pml_arcface"], "weight_regularizer": "regular_face"}}
    )
    assert type(arc.pml.weight_regularizer).__name__ == "RegularFaceRegularizer"


def test_pml_assertions_become_build_errors() -> None:
    with pytest.raises(omlcore.errors.ComponentBuildError, match="CosineSimilarity"):
        omlcore.build("loss", {"name": "pml_arcface", "args": {**REQUIRED_ARGS["pml_arcface"], "distance": "lp"}})


def test_class_weights_are_parameters() -> None:
    loss = omlcore.build("loss", {"name": "pml_arcface", "args": REQUIRED_ARGS["pml_arcface"]})
    assert [tuple(p.shape) for p in loss.parameters()] == [(8, 4)]


def test_collect_stats_fills_last_logs(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    plain = omlcore.build("loss", {"name": "pml_triplet_margin"})
    plain(*batch)
    assert plain.last_logs == {}
    loss = omlcore.build("loss", {"name": "pml_triplet_margin", "args": {"collect_stats": True}})
    loss(*batch)
    assert loss.last_logs["reducer.num_past_filter"] > 0
    assert "distance.final_avg_query_norm" in loss.last_logs
