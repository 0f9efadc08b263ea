"""Bad input gives a clear error naming the problem, never a silent 0 or NaN."""

from typing import Any

import pytest
import torch
from omlcore_losses import LossInputError, NoValidPairsError, NoValidTripletsError, NoValidTuplesError

from omlcore.errors import OmlcoreError
from omlcore.registry import get_registry

ALL: dict[str, dict[str, Any]] = {
    "triplet": {"margin": 0.2},
    "triplet_with_miner": {"margin": None},
    "contrastive": {},
    "multi_similarity": {},
    "supcon": {},
    "surrogate_precision": {"k": 2},
    "arcface": {"in_features": 4, "num_classes": 3},
    "mlp_arcface": {"in_features": 4, "num_classes": 3, "mlp_features": [5]},
    "cosface": {"in_features": 4, "num_classes": 3},
    "proxy_anchor": {"in_features": 4, "num_classes": 3},
    "distributed": {"loss": {"name": "supcon"}},
}
PAIR_BASED = ["triplet", "triplet_with_miner", "contrastive", "multi_similarity", "supcon", "surrogate_precision"]
CLASS_BASED = ["arcface", "mlp_arcface", "cosface", "proxy_anchor"]


def build(name: str, **overrides: Any) -> Any:
    return get_registry().build("loss", {"name": name, "args": {**ALL[name], **overrides}})


GOOD_X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
GOOD_Y = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (GOOD_X, GOOD_Y[:, None], r"labels must have shape \(B,\), got \(6, 1\)"),
        (GOOD_X, GOOD_Y.float(), "labels must be an integer tensor"),
        (GOOD_X, GOOD_Y.bool(), "labels must be an integer tensor"),
        (GOOD_X, GOOD_Y[:5], "features have 6 rows but labels have 5 entries"),
        (GOOD_X[0], GOOD_Y, r"features must have shape \(B, D\)"),
        (GOOD_X.long(), GOOD_Y, "features must be a floating tensor"),
        (
            torch.where(torch.arange(6)[:, None] == 2, float("nan"), GOOD_X),
            GOOD_Y,
            r"NaN values in 1 of 6 rows \(first rows: \[2\]\)",
        ),
        (torch.where(torch.arange(6)[:, None] == 4, float("inf"), GOOD_X), GOOD_Y, "inf values"),
        (GOOD_X[:0], GOOD_Y[:0], "the batch is empty"),
    ],
)
def test_malformed_input_is_named(name: str, features: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(LossInputError, match=message) as info:
        build(name)(features, labels)
    assert isinstance(info.value, OmlcoreError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", PAIR_BASED)
@pytest.mark.parametrize(
    ("labels", "why"),
    [(torch.tensor([3, 3, 3, 3]), "one label"), (torch.tensor([0, 1, 2, 3]), "one sample per label")],
)
def test_batch_without_pairs_raises_by_default(name: str, labels: torch.Tensor, why: str) -> None:
    with pytest.raises(NoValidTuplesError, match=r"4 samples, \d labels, counts \{") as info:
        build(name)(GOOD_X[:4], labels)
    expected = NoValidTripletsError if name.startswith("triplet") else NoValidPairsError
    assert isinstance(info.value, expected), why


@pytest.mark.parametrize("name", PAIR_BASED)
def test_on_empty_zero_gives_a_flagged_zero_in_the_graph(name: str) -> None:
    loss = build(name, on_empty="zero")
    x = GOOD_X[:4].clone().requires_grad_(True)
    value = loss(x, torch.tensor([0, 1, 2, 3]))
    assert value.item() == 0.0
    assert value.requires_grad
    value.backward()
    assert x.grad is not None
    assert bool((x.grad == 0).all())
    assert loss.last_logs["empty_batch"] == 1.0
    loss(GOOD_X, GOOD_Y)
    assert loss.last_logs["empty_batch"] == 0.0


def test_miner_returning_nothing_is_named() -> None:
    class Nothing:
        def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return (torch.zeros(0, dtype=torch.long),) * 3

    loss = build("triplet_with_miner", miner=Nothing())
    with pytest.raises(NoValidTripletsError, match="the miner Nothing found no triplet"):
        loss(GOOD_X, GOOD_Y)


@pytest.mark.parametrize("name", CLASS_BASED)
def test_class_losses_accept_singleton_labels(name: str) -> None:
    value = build(name)(GOOD_X[:3], torch.tensor([0, 1, 2]))
    assert torch.isfinite(value)


@pytest.mark.parametrize("name", CLASS_BASED)
@pytest.mark.parametrize("bad", [3, 7, -1])
def test_class_labels_out_of_range(name: str, bad: int) -> None:
    with pytest.raises(LossInputError, match=rf"labels must lie in 0..2 \(num_classes=3\), got \[{bad}\]"):
        build(name)(GOOD_X[:3], torch.tensor([0, bad, 1]))


@pytest.mark.parametrize("name", CLASS_BASED)
def test_class_losses_check_the_feature_size(name: str) -> None:
    with pytest.raises(LossInputError, match="features have 5 columns, in_features is 4"):
        build(name)(torch.randn(3, 5), torch.tensor([0, 1, 2]))


def test_triplet_plain_layout_errors() -> None:
    loss = get_registry().build("loss", {"name": "triplet_plain", "args": {"margin": 0.1}})
    with pytest.raises(LossInputError, match="not a multiple of 3"):
        loss(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(LossInputError, match=r"triplet 1 \(rows 3..5\) has labels \[1, 2, 3\]"):
        loss(torch.randn(6, 2), torch.tensor([0, 0, 1, 1, 2, 3]))


def test_label2category_must_cover_every_label() -> None:
    with pytest.raises(Exception, match=r"label2category lacks labels \[2\]"):
        build("arcface", label2category={0: 0, 1: 0})


def test_config_errors_are_reported_with_paths() -> None:
    issues = get_registry().validate("loss", {"name": "triplet_with_miner", "args": {"margn": 0.1}})
    assert any(i.path == "loss.args.margn" for i in issues)
    issues = get_registry().validate("loss", {"name": "arcface", "args": {"in_features": 4}})
    assert any("num_classes" in i.path for i in issues)
    issues = get_registry().validate("loss", {"name": "triplet", "args": {"reduction": "none"}})
    assert any(i.path == "loss.args.reduction" for i in issues)
