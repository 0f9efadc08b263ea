"""Losses with trainable class centres: ArcFace (plain and with an MLP head), CosFace, Proxy-Anchor.

Their parameters must be trained with the model: give ``loss.parameters()`` to the optimizer too.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._base import LossInputError, MetricLoss, Reduction, check_batch, check_class_labels, reduce

__all__ = ["ArcFaceLoss", "ArcFaceLossWithMLP", "CosFaceLoss", "ProxyAnchorLoss", "smooth_targets"]


def smooth_targets(labels: Tensor, num_classes: int, epsilon: float, categories: Tensor | None = None) -> Tensor:
    """Soft targets ``(B, num_classes)``: ``1 - epsilon`` on the label, ``epsilon`` spread uniformly over
    every class, or, with ``categories`` (long ``(num_classes,)``, the category of each class), only over
    the classes of the label's category (the label included)."""
    one_hot = F.one_hot(labels, num_classes).float()
    if epsilon == 0:
        return one_hot
    if categories is None:
        spread = torch.full_like(one_hot, 1.0 / num_classes)
    else:
        same = (categories[labels][:, None] == categories[None, :]).float()
        spread = same / same.sum(dim=1, keepdim=True)
    return (1.0 - epsilon) * one_hot + epsilon * spread


class _ClassLoss(MetricLoss):
    def __init__(self, in_features: int, num_classes: int, reduction: Reduction) -> None:
        super().__init__()
        self._check_reduction(reduction)
        if in_features < 1 or num_classes < 2:
            raise ValueError(f"need in_features >= 1 and num_classes >= 2, got {in_features} and {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.reduction = reduction

    def _check(self, features: Tensor, labels: Tensor) -> None:
        check_batch(self.loss_name, features, labels)
        if features.shape[1] != self.in_features:
            raise LossInputError(
                f"{self.loss_name}: features have {features.shape[1]} columns, in_features is {self.in_features}"
            )
        check_class_labels(self.loss_name, labels, self.num_classes)


class ArcFaceLoss(_ClassLoss):
    """ArcFace (Deng et al. 2019): softmax cross-entropy on ``s * cos(theta + m)`` for the true class.

    ``cos(theta)`` is between the L2-normalised features and the L2-normalised class centres
    ``weight (num_classes, in_features)`` (xavier-initialised). Where ``theta + m`` would pass ``pi`` the
    usual linear fallback ``cos(theta) - m sin(m)`` keeps the logit monotonic.

    Args:
        in_features: embedding size ``D``.
        num_classes: number of training labels; labels must lie in ``0..num_classes-1``.
        m: additive angular margin (radians).
        s: logit scale.
        smoothing_epsilon: label smoothing; ``0`` disables it.
        label2category: ``{label: category}`` for every label; the smoothing mass then goes only to the
            classes of the label's own category.
        reduction: ``mean`` or ``sum`` over samples.
    """

    loss_name = "arcface"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        m: float = 0.5,
        s: float = 64.0,
        smoothing_epsilon: float = 0.0,
        label2category: dict[int, int | str] | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(in_features, num_classes, reduction)
        if not 0 <= smoothing_epsilon < 1:
            raise ValueError(f"smoothing_epsilon must be in [0, 1), got {smoothing_epsilon}")
        if not 0 <= m < math.pi / 2:
            raise ValueError(f"m must be in [0, pi/2), got {m}")
        self.m = m
        self.s = s
        self.smoothing_epsilon = smoothing_epsilon
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.categories: Tensor | None
        if label2category is None:
            self.categories = None
        else:
            missing = sorted(set(range(num_classes)) - {int(k) for k in label2category})
            if missing:
                raise ValueError(f"label2category lacks labels {missing[:10]} (it must cover 0..{num_classes - 1})")
            codes: dict[int | str, int] = {}
            cats = [codes.setdefault(label2category[i], len(codes)) for i in range(num_classes)]
            self.register_buffer("categories", torch.tensor(cats, dtype=torch.long), persistent=False)

    def logits(self, features: Tensor, labels: Tensor) -> Tensor:
        """``(B, num_classes)``: ``s * cos`` with the margin applied to each row's true class."""
        cos = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-7))
        with_margin = cos * math.cos(self.m) - sin * math.sin(self.m)
        with_margin = torch.where(cos > -math.cos(self.m), with_margin, cos - math.sin(self.m) * self.m)
        true = F.one_hot(labels, self.num_classes).bool()
        return self.s * torch.where(true, with_margin, cos)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the margin logits against the (smoothed) targets."""
        self._check(features, labels)
        logits = self.logits(features, labels)
        targets = smooth_targets(labels, self.num_classes, self.smoothing_epsilon, self.categories)
        per_sample = -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1)
        with torch.no_grad():
            cos_true = logits.gather(1, labels[:, None]).squeeze(1) / self.s
            self.last_logs = {
                "accuracy": float((logits.argmax(dim=1) == labels).float().mean()),
                "mean_true_logit_cos": float(cos_true.mean()),
            }
        return reduce(per_sample, self.reduction)


class ArcFaceLossWithMLP(MetricLoss):
    """ArcFace after a small MLP head: ``Linear -> ReLU -> ... -> Linear`` with sizes
    ``in_features -> mlp_features[0] -> ... -> mlp_features[-1]``; ArcFace then runs on
    ``mlp_features[-1]``-dimensional vectors. The head is trained with the loss and not used at
    inference. Other arguments as :class:`ArcFaceLoss`.
    """

    loss_name = "mlp_arcface"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        mlp_features: list[int],
        m: float = 0.5,
        s: float = 64.0,
        smoothing_epsilon: float = 0.0,
        label2category: dict[int, int | str] | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        if not mlp_features or any(f < 1 for f in mlp_features):
            raise ValueError(f"mlp_features must be a non-empty list of positive sizes, got {mlp_features}")
        sizes = [in_features, *mlp_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.in_features = in_features
        self.mlp = nn.Sequential(*layers)
        self.arcface = ArcFaceLoss(mlp_features[-1], num_classes, m, s, smoothing_epsilon, label2category, reduction)
        self.arcface.loss_name = self.loss_name

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """ArcFace on ``mlp(features)``."""
        check_batch(self.loss_name, features, labels)
        if features.shape[1] != self.in_features:
            raise LossInputError(
                f"{self.loss_name}: features have {features.shape[1]} columns, in_features is {self.in_features}"
            )
        value: Tensor = self.arcface(self.mlp(features), labels)
        self.last_logs = dict(self.arcface.last_logs)
        return value


class CosFaceLoss(_ClassLoss):
    """CosFace / large-margin cosine loss (Wang et al. 2018): cross-entropy on ``s * (cos - m)`` for the
    true class and ``s * cos`` for the others; centres as in :class:`ArcFaceLoss`.

    Args:
        in_features, num_classes, reduction: as :class:`ArcFaceLoss`.
        m: additive cosine margin.
        s: logit scale.
    """

    loss_name = "cosface"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        m: float = 0.35,
        s: float = 64.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(in_features, num_classes, reduction)
        self.m = m
        self.s = s
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the margin logits."""
        self._check(features, labels)
        cos = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))
        logits = self.s * (cos - self.m * F.one_hot(labels, self.num_classes).to(cos.dtype))
        per_sample = F.cross_entropy(logits, labels, reduction="none")
        with torch.no_grad():
            self.last_logs = {
                "accuracy": float((cos.argmax(dim=1) == labels).float().mean()),
                "mean_true_cos": float(cos.gather(1, labels[:, None]).mean()),
            }
        return reduce(per_sample, self.reduction)


class ProxyAnchorLoss(_ClassLoss):
    """Proxy-Anchor loss (Kim et al. 2020): one trainable proxy per class, cosine similarity ``s(x, p)``.

    ``(1/|P+|) sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - margin)))
    + (1/C) sum_{p} log(1 + sum_{x in X_p-} exp(alpha (s(x,p) + margin)))`` where ``P+`` are the proxies of
    the labels present in the batch, ``X_p+`` the samples of class ``p`` and ``X_p-`` the others.

    Args:
        in_features, num_classes: as :class:`ArcFaceLoss`.
        margin: ``delta``.
        alpha: scale.
        reduction: ``mean`` (the formula) or ``sum`` (the two proxy sums, not divided).
    """

    loss_name = "proxy_anchor"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        margin: float = 0.1,
        alpha: float = 32.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(in_features, num_classes, reduction)
        self.margin = margin
        self.alpha = alpha
        self.proxies = nn.Parameter(torch.randn(num_classes, in_features) / math.sqrt(in_features))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The loss of the batch against every proxy."""
        self._check(features, labels)
        sim = F.linear(F.normalize(features, dim=1), F.normalize(self.proxies, dim=1))  # (B, C)
        member = F.one_hot(labels, self.num_classes).bool()
        zeros = torch.zeros_like(sim[:1])
        pos_exp = (-self.alpha * (sim - self.margin)).masked_fill(~member, float("-inf"))
        neg_exp = (self.alpha * (sim + self.margin)).masked_fill(member, float("-inf"))
        pos_term = torch.logsumexp(torch.cat([zeros, pos_exp], dim=0), dim=0)  # (C,)
        neg_term = torch.logsumexp(torch.cat([zeros, neg_exp], dim=0), dim=0)
        present = member.any(dim=0)
        pos_part = pos_term[present]
        with torch.no_grad():
            self.last_logs = {
                "n_proxies_with_positives": float(present.sum()),
                "pos_sim": float(sim[member].mean()),
                "neg_sim": float(sim[~member].mean()),
                "accuracy": float((sim.argmax(dim=1) == labels).float().mean()),
            }
        return reduce(pos_part, self.reduction) + reduce(neg_term, self.reduction)
