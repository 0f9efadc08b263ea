"""The all-triplets loss computed from the distance matrix (no triplet index tensors) and the lean gathering
path of ``triplet_with_miner``: values, gradients and logs equal an explicit per-triplet float64 reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omlcore_losses import TripletLoss, TripletLossWithMiner
from omlcore_losses import triplet as triplet_module
from omlcore_losses.triplet import all_triplets
from torch.nn import functional as F


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference(
    features: torch.Tensor, labels: torch.Tensor, margin: float | None, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Loop-built triplets, float64 row differences, plain autograd: value, gradient, logs."""
    lab = labels.tolist()
    triplets = [
        (a, p, n)
        for a in range(len(lab))
        for p in range(len(lab))
        for n in range(len(lab))
        if a != p and lab[a] == lab[p] and lab[a] != lab[n]
    ]
    a, p, n = (torch.tensor(t) for t in zip(*triplets, strict=True))
    x = features.detach().double().requires_grad_(True)
    d_ap = (x[a] - x[p]).pow(2).sum(1).sqrt()
    d_an = (x[a] - x[n]).pow(2).sum(1).sqrt()
    values = F.softplus(d_ap - d_an) if margin is None else F.relu(margin + d_ap - d_an)
    value = values.mean() if reduction == "mean" else values.sum()
    value.backward()
    assert x.grad is not None
    logs = {
        "n_triplets": float(len(triplets)),
        "active_tri": float((values > 0).double().mean()) if margin is not None else 1.0,
        "pos_dist": float(d_ap.detach().mean()),
        "neg_dist": float(d_an.detach().mean()),
    }
    return value.detach(), x.grad, logs


def batch(seed: int, size: int, n_labels: int, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(size, dim, generator=g), torch.randint(0, n_labels, (size,), generator=g)


@pytest.mark.parametrize("margin", [0.0, 0.3, 2.0, None])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("seed", "size", "n_labels"), [(0, 9, 3), (1, 17, 2), (2, 24, 6), (3, 12, 11)])
def test_all_triplets_equal_the_reference(margin: Any, reduction: str, seed: int, size: int, n_labels: int) -> None:
    features, labels = batch(seed, size, n_labels)  # uneven label counts, singletons, many positives
    loss = TripletLoss(margin=margin, reduction=reduction)  # type: ignore[arg-type]
    x = features.clone().requires_grad_(True)
    value = loss(x, labels)
    value.backward()
    expected, grad, logs = reference(features, labels, margin, reduction)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
    assert x.grad is not None
    torch.testing.assert_close(x.grad.double(), grad, rtol=1e-4, atol=1e-5)
    for key, ref in logs.items():
        assert loss.last_logs[key] == pytest.approx(ref, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("block", [1, 5, 40])
def test_anchor_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    features, labels = batch(4, 20, 3)
    x0 = features.clone().requires_grad_(True)
    value0 = TripletLoss(margin=0.4)(x0, labels)
    value0.backward()
    monkeypatch.setattr(triplet_module, "_BLOCK", block)
    x1 = features.clone().requires_grad_(True)
    value1 = TripletLoss(margin=0.4)(x1, labels)
    value1.backward()
    torch.testing.assert_close(value1, value0)
    assert x0.grad is not None
    assert x1.grad is not None
    torch.testing.assert_close(x1.grad, x0.grad)


def test_kinks_and_equal_rows_follow_autograd() -> None:
    """Integer features: triplets exactly at the hinge (relu'(0) = 0) and equal rows (distance 0, whose
    gradient autograd through the masked sqrt of ``pairwise_l2`` makes 0)."""
    features = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    for margin in (0.0, 1.0):
        x = features.clone().requires_grad_(True)
        value = TripletLoss(margin=margin)(x, labels)
        value.backward()
        a, p, n = all_triplets(labels)
        y = features.clone().requires_grad_(True)
        dist = triplet_module.pairwise_l2(y)  # the autograd form the loss used before
        expected = F.relu(margin + dist[a, p] - dist[a, n]).mean()
        expected.backward()
        torch.testing.assert_close(value, expected)
        assert x.grad is not None
        assert y.grad is not None
        torch.testing.assert_close(x.grad, y.grad)


def test_nested_all_triplets_miner_takes_the_matrix_path() -> None:
    AllTripletsMiner = pytest.importorskip("omlcore_miners", reason="needs omlcore-miners (tests_all)").AllTripletsMiner

    class Listed:
        """Returns every triplet as index tensors: the generic path."""

        def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return all_triplets(labels)

    features, labels = batch(5, 15, 4)
    results = []
    for miner in (AllTripletsMiner(), Listed(), None):
        loss = TripletLossWithMiner(margin=0.25, miner=miner)
        x = features.clone().requires_grad_(True)
        value = loss(x, labels)
        value.backward()
        results.append((value, x.grad, loss.last_logs))
    (v0, g0, logs0), (v1, g1, _), (v2, g2, _) = results
    torch.testing.assert_close(v0, v1)
    torch.testing.assert_close(v0, v2)
    torch.testing.assert_close(g0, g1)
    torch.testing.assert_close(g0, g2)
    assert logs0["miner/triplets"] == logs0["n_triplets"] == float(all_triplets(labels)[0].numel())


def test_capped_all_triplets_miner_samples() -> None:
    AllTripletsMiner = pytest.importorskip("omlcore_miners", reason="needs omlcore-miners (tests_all)").AllTripletsMiner

    features, labels = batch(6, 15, 4)
    total = all_triplets(labels)[0].numel()
    loss = TripletLossWithMiner(margin=0.25, miner=AllTripletsMiner(max_output_triplets=total // 3, seed=1))
    loss(features, labels)
    assert loss.last_logs["n_triplets"] == float(total // 3)
    assert loss.last_logs["miner/available_triplets"] == float(total)


def test_no_triplet_is_reported_by_the_matrix_path() -> None:
    from omlcore_losses import NoValidTripletsError

    AllTripletsMiner = pytest.importorskip("omlcore_miners", reason="needs omlcore-miners (tests_all)").AllTripletsMiner

    features = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 3])
    with pytest.raises(NoValidTripletsError, match="the miner AllTripletsMiner found no triplet"):
        TripletLossWithMiner(miner=AllTripletsMiner())(features, labels)
    zero = TripletLoss(on_empty="zero")(features.requires_grad_(True), labels)
    assert float(zero.detach()) == 0.0


@pytest.mark.parametrize("entries", [1, 7, 1 << 17])
def test_gathering_path_equals_autograd(monkeypatch: pytest.MonkeyPatch, entries: int) -> None:
    monkeypatch.setattr(triplet_module, "_GATHER_ENTRIES", entries)
    g = gen(7)
    rows = torch.randn(10, 5, generator=g)
    rows[3] = rows[0]  # a zero distance: gradient 0, as autograd's vector_norm gives it
    a = torch.tensor([0, 1, 2, 0, 4, 5, 6, 7, 8, 9])
    p = torch.tensor([3, 2, 1, 1, 5, 4, 7, 6, 9, 8])
    n = torch.tensor([5, 0, 9, 8, 1, 2, 0, 3, 4, 7])
    upstream = torch.randn(10, generator=g), torch.randn(10, generator=g)
    x = rows.clone().requires_grad_(True)
    d_ap, d_an = triplet_module._GatheredDistances.apply(x, a, p, n)
    ((d_ap * upstream[0]).sum() + (d_an * upstream[1]).sum()).backward()
    y = rows.clone().requires_grad_(True)
    r_ap = torch.linalg.vector_norm(y[a] - y[p], dim=1)
    r_an = torch.linalg.vector_norm(y[a] - y[n], dim=1)
    ((r_ap * upstream[0]).sum() + (r_an * upstream[1]).sum()).backward()
    torch.testing.assert_close(d_ap, r_ap)
    torch.testing.assert_close(d_an, r_an)
    assert x.grad is not None
    assert y.grad is not None
    torch.testing.assert_close(x.grad, y.grad)
    assert float(d_ap[0].detach()) == 0.0
