"""Values against independent references: torch's own losses, plain loops and hand-computed cases."""

import math
from importlib import metadata

import omlcore_losses
import pytest
import torch
from omlcore_losses import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    MultiSimilarityLoss,
    SupConLoss,
    SurrogatePrecisionLoss,
    TripletLoss,
    TripletLossPlain,
    TripletLossWithMiner,
)
from omlcore_losses.classification import smooth_targets
from omlcore_losses.triplet import all_triplets
from torch.nn import functional as F

from omlcore.registry import EXTRA_HINTS, KINDS, get_registry


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_version_matches_metadata() -> None:
    assert omlcore_losses.__version__ == metadata.version("omlcore-losses")


def test_every_entry_point_resolves() -> None:
    names = {ep.name for ep in metadata.distribution("omlcore-losses").entry_points if ep.group == KINDS["loss"].group}
    assert len(names) == 12
    for name in names:
        assert callable(get_registry().resolve("loss", name))


def test_entry_points_match_the_core_hint_list() -> None:
    names = {ep.name for ep in metadata.distribution("omlcore-losses").entry_points if ep.group == KINDS["loss"].group}
    assert names == {n for (k, n), extra in EXTRA_HINTS.items() if k == "loss" and extra == "losses"}


def test_all_triplets_matches_a_loop() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    expected = {
        (a, p, n)
        for a in range(6)
        for p in range(6)
        for n in range(6)
        if a != p and labels[a] == labels[p] and labels[a] != labels[n]
    }
    got = set(zip(*(t.tolist() for t in all_triplets(labels)), strict=True))
    assert got == expected


@pytest.mark.parametrize("margin", [0.05, 0.3, 1.0])
def test_triplet_equals_torch_triplet_margin_loss(margin: float) -> None:
    a, p, n = (torch.randn(20, 5, generator=gen(i)) for i in range(3))
    ours = TripletLoss(margin=margin).triplet_loss(a, p, n)
    reference = torch.nn.TripletMarginLoss(margin=margin, p=2, eps=0.0)(a, p, n)
    torch.testing.assert_close(ours, reference)


def test_triplet_on_labels_equals_torch_on_the_same_triplets() -> None:
    features = torch.randn(10, 4, generator=gen(0))
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    a, p, n = all_triplets(labels)
    reference = torch.nn.TripletMarginLoss(margin=0.5, p=2, eps=0.0)(features[a], features[p], features[n])
    torch.testing.assert_close(TripletLoss(margin=0.5)(features, labels), reference)
    torch.testing.assert_close(TripletLossWithMiner(margin=0.5)(features, labels), reference)
    summed = TripletLoss(margin=0.5, reduction="sum")(features, labels)
    torch.testing.assert_close(summed, reference * a.numel())


def test_soft_triplet_is_log1p_exp() -> None:
    a, p, n = (torch.randn(15, 3, generator=gen(10 + i)) for i in range(3))
    d_ap, d_an = (a - p).norm(dim=1), (a - n).norm(dim=1)
    expected = torch.log1p(torch.exp(d_ap - d_an)).mean()
    torch.testing.assert_close(TripletLoss(margin=None).triplet_loss(a, p, n), expected)


def test_triplet_hand_computed_and_logs() -> None:
    # 1-D points: anchors 0 and 1 (label 0) and one negative at 3 (label 1).
    features = torch.tensor([[0.0], [1.0], [3.0]])
    loss = TripletLoss(margin=1.0)
    value = loss(features, torch.tensor([0, 0, 1]))
    # triplets (0,1,2): relu(1 + 1 - 3) = 0; (1,0,2): relu(1 + 1 - 2) = 0 -> mean 0, no active triplet
    assert value.item() == 0.0
    assert loss.last_logs["active_tri"] == 0.0
    loss = TripletLoss(margin=2.0)
    value = loss(features, torch.tensor([0, 0, 1]))
    assert value.item() == pytest.approx((0.0 + 1.0) / 2)
    assert loss.last_logs == {
        "n_triplets": 2.0,
        "empty_batch": 0.0,
        "active_tri": 0.5,
        "pos_dist": 1.0,
        "neg_dist": 2.5,
    }


def test_triplet_plain_equals_triplet_loss_on_stacked_rows() -> None:
    x = torch.randn(9, 4, generator=gen(3))
    expected = TripletLoss(margin=0.2).triplet_loss(x[0::3], x[1::3], x[2::3])
    torch.testing.assert_close(TripletLossPlain(margin=0.2)(x, torch.tensor([0, 0, 1, 2, 2, 0, 1, 1, 2])), expected)


def test_miner_logs_are_merged() -> None:
    class Fixed:
        last_logs = {"bank_size": 3}

        def sample(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.tensor([0]), torch.tensor([1]), torch.tensor([2])

    loss = TripletLossWithMiner(margin=None, miner=Fixed())
    x = torch.randn(3, 2, generator=gen(4))
    value = loss(x, torch.tensor([5, 5, 6]))
    torch.testing.assert_close(value, F.softplus((x[0] - x[1]).norm() - (x[0] - x[2]).norm()))
    assert loss.last_logs["miner/bank_size"] == 3.0


def arcface_reference(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: float, s: float) -> torch.Tensor:
    """ArcFace written the straightforward way, one sample at a time, with acos."""
    total = torch.zeros(())
    for xi, yi in zip(x, y, strict=True):
        cos = F.normalize(w, dim=1) @ F.normalize(xi, dim=0)
        theta = torch.acos(cos[yi].clamp(-1 + 1e-7, 1 - 1e-7))
        target = torch.cos(theta + m) if theta + m <= math.pi else cos[yi] - m * math.sin(m)
        logits = s * torch.cat([cos[:yi], target[None], cos[yi + 1 :]])
        total = total - torch.log_softmax(logits, dim=0)[yi]
    return total / len(y)


@pytest.mark.parametrize("m", [0.0, 0.2, 0.5])
def test_arcface_equals_functional_reference(m: float) -> None:
    loss = ArcFaceLoss(in_features=6, num_classes=5, m=m, s=10.0)
    x = torch.randn(12, 6, generator=gen(5))
    y = torch.randint(0, 5, (12,), generator=gen(6))
    torch.testing.assert_close(loss(x, y), arcface_reference(x, loss.weight.detach(), y, m, 10.0), rtol=1e-4, atol=1e-4)
    assert 0.0 <= loss.last_logs["accuracy"] <= 1.0


def test_arcface_past_pi_uses_the_linear_fallback() -> None:
    loss = ArcFaceLoss(in_features=2, num_classes=2, m=0.5, s=1.0)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[-1.0, 0.01]])  # theta to class 0 is about pi
    torch.testing.assert_close(
        loss(x, torch.tensor([0])), arcface_reference(x, loss.weight.detach(), torch.tensor([0]), 0.5, 1.0)
    )


def test_smoothing_restricted_to_category() -> None:
    categories = torch.tensor([0, 0, 0, 1])
    targets = smooth_targets(torch.tensor([1, 3]), 4, 0.3, categories)
    torch.testing.assert_close(targets[0], torch.tensor([0.1, 0.8, 0.1, 0.0]))
    torch.testing.assert_close(targets[1], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    plain = smooth_targets(torch.tensor([1]), 4, 0.4)
    torch.testing.assert_close(plain[0], torch.tensor([0.1, 0.7, 0.1, 0.1]))


def test_arcface_label_smoothing_is_a_soft_cross_entropy() -> None:
    loss = ArcFaceLoss(4, 3, m=0.0, s=5.0, smoothing_epsilon=0.3)
    x = torch.randn(6, 4, generator=gen(7))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = 5.0 * F.normalize(x, dim=1) @ F.normalize(loss.weight.detach(), dim=1).T
    torch.testing.assert_close(loss(x, y), F.cross_entropy(logits, y, label_smoothing=0.3))


def test_cosface_reference() -> None:
    loss = CosFaceLoss(4, 3, m=0.2, s=8.0)
    x = torch.randn(6, 4, generator=gen(8))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cos = F.normalize(x, dim=1) @ F.normalize(loss.weight.detach(), dim=1).T
    logits = 8.0 * (cos - 0.2 * F.one_hot(y, 3))
    torch.testing.assert_close(loss(x, y), F.cross_entropy(logits, y))


def test_supcon_equals_a_loop() -> None:
    x = torch.randn(8, 5, generator=gen(9))
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    z = F.normalize(x, dim=1)
    terms = []
    for i in range(8):
        positives = [j for j in range(8) if j != i and y[j] == y[i]]
        if not positives:
            continue
        denominator = torch.logsumexp(torch.stack([z[i] @ z[a] / 0.2 for a in range(8) if a != i]), dim=0)
        terms.append(-torch.stack([z[i] @ z[p] / 0.2 - denominator for p in positives]).mean())
    torch.testing.assert_close(SupConLoss(temperature=0.2)(x, y), torch.stack(terms).mean())


def test_contrastive_hand_computed() -> None:
    x = torch.tensor([[0.0], [0.5], [1.0]])
    loss = ContrastiveLoss(pos_margin=0.1, neg_margin=1.0, normalize=False)
    value = loss(x, torch.tensor([0, 0, 1]))
    # positive pair d=0.5 -> (0.4)^2; negatives d=1.0 -> 0, d=0.5 -> (0.5)^2; means: 0.16 + 0.125
    assert value.item() == pytest.approx(0.16 + 0.125)
    assert loss.last_logs["n_pos_pairs"] == 1.0
    assert loss.last_logs["n_neg_pairs"] == 2.0


def test_multi_similarity_equals_a_loop_without_mining() -> None:
    x = torch.randn(6, 3, generator=gen(11))
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    z = F.normalize(x, dim=1)
    sim = z @ z.T
    alpha, beta, base = 2.0, 10.0, 0.5
    terms = []
    for i in range(6):
        pos = [sim[i, j] for j in range(6) if j != i and y[j] == y[i]]
        neg = [sim[i, j] for j in range(6) if y[j] != y[i]]
        terms.append(
            torch.log(1 + sum(torch.exp(-alpha * (s - base)) for s in pos)) / alpha
            + torch.log(1 + sum(torch.exp(beta * (s - base)) for s in neg)) / beta
        )
    expected = torch.stack(terms).mean()
    ours = MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, epsilon=None)(x, y)
    torch.testing.assert_close(ours, expected)


def test_surrogate_precision_limit_is_precision_at_k_plus_one() -> None:
    # 1-D, two far clusters, no distance ties: in each query's list self is rank 1, then ranks 2 and 3
    # (positives), then the other cluster. With small temperatures the soft rank becomes the hard rank and
    # the step sigmoid((K - rank) / t1), K = k + 1 = 3, gives 1 for ranks 1-2 and 1/2 exactly at rank 3.
    x = torch.tensor([[0.0], [0.1], [0.25], [10.0], [10.1], [10.25]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    loss = SurrogatePrecisionLoss(k=2, temperature1=0.01, temperature2=1e-4)
    assert loss(x, y).item() == pytest.approx(1 - 2.5 / 3, abs=1e-3)
    # labels mixed across the clusters: only self and at most one neighbour are hits
    assert loss(x, torch.tensor([0, 1, 0, 1, 0, 1])).item() > 1 - 2.5 / 3 + 0.1
