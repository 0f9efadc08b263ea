"""Tests of the focal triplet loss: a case computed by hand, a naive loop as oracle, and the plugin wiring.

Run them against the installed package: ``pip install ".[test]"`` then ``pytest`` in this folder.
"""

from __future__ import annotations

import itertools
import math
from importlib import metadata
from typing import Literal

import pytest
import torch
from mylab_losses.focal import FocalTripletLoss, batch_hard_triplets
from torch import Tensor

import omlcore
from omlcore.protocols import Loss, Miner
from omlcore.testing import PluginSandbox


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class AllTripletsMiner:
    """Every valid (anchor, positive, negative) triplet of the batch, in loop order."""

    def __init__(self) -> None:
        self.saw_grad = False

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.saw_grad = self.saw_grad or features.requires_grad
        rows = range(len(labels))
        found = [
            (a, p, n)
            for a, p, n in itertools.product(rows, rows, rows)
            if a != p and labels[a] == labels[p] and labels[a] != labels[n]
        ]
        if not found:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty, empty
        a, p, n = (torch.tensor(col, dtype=torch.long) for col in zip(*found, strict=True))
        return a, p, n


def naive_loss(
    features: Tensor,
    labels: Tensor,
    triplets: list[tuple[int, int, int]],
    margin: float,
    gamma: float,
    temperature: float,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """The formula of the module docstring, one triplet at a time, with scalar tensor operations."""
    terms = []
    for a, p, n in triplets:
        d_ap = torch.sqrt(((features[a] - features[p]) ** 2).sum())
        d_an = torch.sqrt(((features[a] - features[n]) ** 2).sum())
        gap = d_ap - d_an
        hinge = torch.clamp(gap + margin, min=0.0)
        weight = torch.sigmoid(gap / temperature) ** gamma
        terms.append(weight * hinge)
    total = torch.stack(terms).sum()
    return total / len(terms) if reduction == "mean" else total


def naive_batch_hard(features: Tensor, labels: Tensor) -> list[tuple[int, int, int]]:
    """For each anchor with a positive and a negative: farthest positive, nearest negative."""
    out = []
    for a in range(len(labels)):
        dist = [math.dist(features[a].tolist(), features[j].tolist()) for j in range(len(labels))]
        pos = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        if pos and neg:
            out.append((a, max(pos, key=lambda j: dist[j]), min(neg, key=lambda j: dist[j])))
    return out


def random_batch(seed: int, n_labels: int = 4, per_label: int = 3, dim: int = 5) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n_labels * per_label, dim, generator=gen, dtype=torch.float64)
    labels = torch.arange(n_labels).repeat_interleave(per_label)
    perm = torch.randperm(len(labels), generator=gen)
    return features[perm].clone(), labels[perm].clone()


# -- a batch small enough to compute by hand ------------------------------------------------------
# Four points on a line: A=0 and B=1 (label 0), C=3 and D=6 (label 1); margin 1.5, temperature 1.
#   anchor A: farthest positive B (d=1), nearest negative C (d=3): gap -2, hinge max(0, -0.5) = 0
#   anchor B: positive A (d=1), nearest negative C (d=2):          gap -1, hinge 0.5
#   anchor C: positive D (d=3), nearest negative B (d=2):          gap +1, hinge 2.5
#   anchor D: positive C (d=3), nearest negative B (d=5):          gap -2, hinge 0
HAND_FEATURES = [[0.0], [1.0], [3.0], [6.0]]
HAND_LABELS = [0, 0, 1, 1]


def hand_batch() -> tuple[Tensor, Tensor]:
    return torch.tensor(HAND_FEATURES, dtype=torch.float64, requires_grad=True), torch.tensor(HAND_LABELS)


def test_batch_hard_triplets_of_the_hand_case() -> None:
    features, labels = hand_batch()
    anchors, positives, negatives = batch_hard_triplets(features, labels)
    assert anchors.tolist() == [0, 1, 2, 3]
    assert positives.tolist() == [1, 0, 3, 2]
    assert negatives.tolist() == [2, 2, 1, 1]


def test_hand_case_gamma_zero_is_the_plain_triplet_loss() -> None:
    features, labels = hand_batch()
    loss_fn = FocalTripletLoss(margin=1.5, gamma=0.0, temperature=1.0)
    loss = loss_fn(features, labels)
    assert loss.item() == pytest.approx((0 + 0.5 + 2.5 + 0) / 4)
    loss.backward()
    # d/dx of (hinge_B + hinge_C) / 4 with hinge_B = (xB - xA) - (xC - xB) + 1.5 and
    # hinge_C = (xD - xC) - (xC - xB) + 1.5
    assert features.grad is not None
    assert features.grad.flatten().tolist() == pytest.approx([-0.25, 0.75, -0.75, 0.25])
    assert loss_fn.last_logs == pytest.approx({"triplets": 4.0, "active_fraction": 0.5, "mean_weight": 1.0})


def test_hand_case_focal_weights() -> None:
    features, labels = hand_batch()
    loss_fn = FocalTripletLoss(margin=1.5, gamma=2.0, temperature=1.0)
    loss = loss_fn(features, labels)
    expected = (0.5 * sigmoid(-1) ** 2 + 2.5 * sigmoid(1) ** 2) / 4
    assert loss.item() == pytest.approx(expected)
    mean_weight = (2 * sigmoid(-2) ** 2 + sigmoid(-1) ** 2 + sigmoid(1) ** 2) / 4
    assert loss_fn.last_logs == pytest.approx({"triplets": 4.0, "active_fraction": 0.5, "mean_weight": mean_weight})

    summed = FocalTripletLoss(margin=1.5, gamma=2.0, temperature=1.0, reduction="sum")(features, labels)
    assert summed.item() == pytest.approx(4 * expected)


# -- against the naive loop -----------------------------------------------------------------------
@pytest.mark.parametrize(("margin", "gamma", "temperature"), [(0.2, 2.0, 0.1), (0.5, 0.0, 1.0), (1.0, 0.5, 0.3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_matches_naive_loop(margin: float, gamma: float, temperature: float, seed: int) -> None:
    features, labels = random_batch(seed)
    triplets = naive_batch_hard(features, labels)
    got_x = features.clone().requires_grad_(True)
    want_x = features.clone().requires_grad_(True)

    loss_fn = FocalTripletLoss(margin=margin, gamma=gamma, temperature=temperature)
    got = loss_fn(got_x, labels)
    want = naive_loss(want_x, labels, triplets, margin, gamma, temperature)
    got.backward()
    want.backward()

    assert got.item() == pytest.approx(want.item(), rel=1e-9, abs=1e-12)
    assert got_x.grad is not None
    assert want_x.grad is not None
    torch.testing.assert_close(got_x.grad, want_x.grad)
    assert loss_fn.last_logs["triplets"] == len(triplets)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_miner_triplets_match_naive_loop(reduction: Literal["mean", "sum"]) -> None:
    features, labels = random_batch(seed=3, n_labels=3, per_label=3)
    miner = AllTripletsMiner()
    a, p, n = miner.sample(features, labels)
    triplets = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert len(triplets) == 3 * 3 * 2 * 6  # labels x anchors x positives x negatives

    x = features.clone().requires_grad_(True)
    loss_fn = FocalTripletLoss(margin=0.3, gamma=1.5, temperature=0.2, miner=miner, reduction=reduction)
    got = loss_fn(x, labels)
    want = naive_loss(features, labels, triplets, 0.3, 1.5, 0.2, reduction)
    assert got.item() == pytest.approx(want.item(), rel=1e-9)
    assert loss_fn.last_logs["triplets"] == len(triplets)
    assert not miner.saw_grad, "the miner must get detached features"


def test_gradient_matches_finite_differences() -> None:
    features, labels = random_batch(seed=4, n_labels=3, per_label=2, dim=3)
    loss_fn = FocalTripletLoss(margin=0.5, gamma=2.0, temperature=0.5)
    x = features.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (x,))


# -- edge cases -----------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["one-label", "no-positives"])
def test_no_usable_triplet_gives_a_differentiable_zero(labels: list[int]) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss_fn = FocalTripletLoss()
    loss = loss_fn(x, torch.tensor(labels))
    assert loss.shape == ()
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None
    assert torch.count_nonzero(x.grad) == 0
    assert loss_fn.last_logs == {"triplets": 0.0, "active_fraction": 0.0, "mean_weight": 0.0}


def test_duplicate_points_keep_gradients_finite() -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], requires_grad=True)
    loss = FocalTripletLoss(gamma=0.5, temperature=0.01)(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()


def test_keeps_the_input_dtype() -> None:
    features, labels = random_batch(seed=5)
    loss = FocalTripletLoss()(features.to(torch.bfloat16), labels)
    assert loss.dtype == torch.bfloat16
    assert loss.shape == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": -0.1}, "margin must be >= 0"),
        ({"gamma": -1.0}, "gamma must be >= 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"reduction": "avg"}, "reduction must be"),
    ],
)
def test_constructor_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FocalTripletLoss(**kwargs)  # type: ignore[arg-type]


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected features \(B, D\)"):
        FocalTripletLoss()(torch.randn(4), torch.tensor([0, 0, 1, 1]))


def test_satisfies_the_loss_protocol() -> None:
    loss_fn = FocalTripletLoss()
    assert isinstance(loss_fn, Loss)
    assert isinstance(AllTripletsMiner(), Miner)


# -- the plugin wiring ----------------------------------------------------------------------------
def test_entry_point_is_declared() -> None:
    (ep,) = [ep for ep in metadata.entry_points(group="omlcore.losses") if ep.name == "focal_triplet"]
    assert ep.value == "mylab_losses.focal:FocalTripletLoss"
    assert omlcore.resolve("loss", "focal_triplet") is FocalTripletLoss


def test_builds_from_a_config_spec_with_a_nested_miner(omlcore_sandbox: PluginSandbox) -> None:
    # the sandbox shows only what the test declares: the loss (imported lazily, as an entry point
    # would be) and a stand-in miner
    omlcore_sandbox.add(
        "loss", "focal_triplet", value="mylab_losses.focal:FocalTripletLoss", distribution="mylab-losses"
    )
    omlcore_sandbox.add("miner", "all_triplets", AllTripletsMiner)

    spec = {"name": "focal_triplet", "args": {"margin": 0.3, "miner": {"name": "all_triplets"}}}
    loss_fn = omlcore.build("loss", spec)
    assert isinstance(loss_fn, FocalTripletLoss)
    assert isinstance(loss_fn.miner, AllTripletsMiner)
    assert loss_fn.margin == 0.3

    bad = {"name": "focal_triplet", "args": {"margn": 0.3, "miner": {"name": "all_triplet"}}}
    with pytest.raises(omlcore.ConfigValidationError) as info:
        omlcore.build("loss", bad)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"loss.args.margn", "loss.args.miner.name"}
