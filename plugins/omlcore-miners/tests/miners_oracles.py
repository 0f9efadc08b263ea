"""Brute-force oracles (plain Python loops, float64) and random batches for the miners' tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

Triplet = tuple[int, int, int]


def random_batch(seed: int, integer_features: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 2..20 rows with 1..5 labels of uneven sizes (singletons included)."""
    g = torch.Generator().manual_seed(seed)
    size = int(torch.randint(2, 21, (1,), generator=g))
    n_labels = int(torch.randint(1, 6, (1,), generator=g))
    labels = torch.randint(0, n_labels, (size,), generator=g) * 7 - 3  # non-contiguous, negative values too
    if integer_features:
        features = torch.randint(-2, 3, (size, 3), generator=g).float()  # many exact ties
    else:
        features = torch.randn(size, 5, generator=g)
    return features, labels


def dist(x: Sequence[float], y: Sequence[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y, strict=True)))


def rows(features: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in features.double()]


def oracle_all(labels: list[int]) -> list[Triplet]:
    n = len(labels)
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if p != a and labels[p] == labels[a] and labels[q] != labels[a]
    ]


def ranks(spec: Any) -> tuple[int, int]:
    return (1, spec) if isinstance(spec, int) else (spec[0], spec[1])


def oracle_n_hard(
    anchor_rows: list[list[float]],
    anchor_labels: list[int],
    pool_rows: list[list[float]],
    pool_labels: list[int],
    n_positive: Any,
    n_negative: Any,
) -> list[Triplet]:
    """Anchor ``i`` is pool row ``i`` (the anchors are the first rows of the pool)."""
    (p_first, p_last), (n_first, n_last) = ranks(n_positive), ranks(n_negative)
    out = []
    for a, (row, label) in enumerate(zip(anchor_rows, anchor_labels, strict=True)):
        pos = [j for j in range(len(pool_rows)) if j != a and pool_labels[j] == label]
        neg = [j for j in range(len(pool_rows)) if pool_labels[j] != label]
        pos.sort(key=lambda j: (-dist(row, pool_rows[j]), j))
        neg.sort(key=lambda j: (dist(row, pool_rows[j]), j))
        for p in pos[p_first - 1 : p_last]:
            for q in neg[n_first - 1 : n_last]:
                out.append((a, p, q))
    return out


def as_triplets(result: Sequence[torch.Tensor]) -> list[Triplet]:
    a, p, n = result
    return list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
