"""The selection machinery: float64 squared distances (exact on integer features, duplicates bit-equal) and
the rank selection without a full sort (argmax/argmin for rank 1, tie-aware topk otherwise)."""

from __future__ import annotations

import pytest
import torch
from miners_oracles import as_triplets, oracle_n_hard, rows
from omlcore_miners import HardTripletsMiner, MinerWithBank, NHardTripletsMiner
from omlcore_miners._common import RankRange, _ranked_columns, n_hard, sq_distances


def tie_batch(seed: int, size: int, dim: int = 3, levels: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer features in ``-levels..levels`` (many exact ties and duplicate rows), 2..6 labels."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randint(-levels, levels + 1, (size, dim), generator=g).float()
    labels = torch.randint(0, int(torch.randint(2, 7, (1,), generator=g)), (size,), generator=g)
    return features, labels


def exact_sq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact squared distances of integer-valued rows (int64 arithmetic)."""
    diff = x.long()[:, None, :] - y.long()[None, :, :]
    return (diff * diff).sum(dim=2)


@pytest.mark.parametrize("seed", range(5))
def test_sq_distances_are_exact_on_integer_features(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-1000, 1001, (30, 17), generator=g).float()
    y = torch.randint(-1000, 1001, (11, 17), generator=g).float()
    y[3] = x[5]  # a row shared by x and y
    pool = torch.cat([x, y])
    assert torch.equal(sq_distances(x), exact_sq(x, x).double())
    assert torch.equal(sq_distances(x, y), exact_sq(x, y).double())
    assert torch.equal(sq_distances(x, pool, y_starts_with_x=True), exact_sq(x, pool).double())
    assert sq_distances(x).dtype == torch.float64


@pytest.mark.parametrize("with_y", [False, True])
def test_equal_rows_get_bit_equal_distances_and_zero(with_y: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 64, generator=g)
    x[[7, 19, 33]] = x[2].clone()  # duplicates at scattered positions
    y = torch.randn(9, 64, generator=g)
    y[4] = x[2].clone()
    d2 = sq_distances(x, y) if with_y else sq_distances(x)
    cols = [4] if with_y else [2, 7, 19, 33]
    for i in (7, 19, 33):
        assert torch.equal(d2[i], d2[2])
    for i in (2, 7, 19, 33):
        assert bool((d2[i, cols] == 0).all())
    if not with_y:
        assert torch.equal(d2[:, 7], d2[:, 2])
        assert bool((d2.diagonal() == 0).all())
        assert bool((d2 >= 0).all())
        # far more accurate than float32: matches a float64 direct computation
        reference = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist") ** 2
        torch.testing.assert_close(d2, reference, rtol=1e-12, atol=1e-12)


def test_sq_distances_empty_and_half_precision() -> None:
    assert sq_distances(torch.zeros(0, 4)).shape == (0, 0)
    assert sq_distances(torch.zeros(3, 4), torch.zeros(0, 4)).shape == (3, 0)
    assert sq_distances(torch.zeros(0, 4), torch.zeros(2, 4)).shape == (0, 2)
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]], dtype=torch.bfloat16)
    assert sq_distances(x).tolist() == [[0.0, 25.0], [25.0, 0.0]]


def test_huge_float64_features_stay_finite_and_rank_the_same() -> None:
    features, labels = tie_batch(3, 40)
    features = features.double()
    huge = features * 2.0**900  # squares would overflow float64
    d2 = sq_distances(huge)
    assert bool(torch.isfinite(d2).all())
    for miner in (HardTripletsMiner(), NHardTripletsMiner([1, 3], [2, 4])):
        for x, y in zip(miner.sample(huge, labels), miner.sample(features, labels), strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(
    ("n_positive", "n_negative"), [(1, 1), (2, 3), ([1, 4], [2, 6]), ([3, 5], 1), (1, [4, 9]), (40, 40)]
)
def test_n_hard_equals_oracle_on_larger_batches_with_ties(seed: int, n_positive: object, n_negative: object) -> None:
    """Batches of 30..70 rows of small integer features: many ties exactly at the topk threshold."""
    features, labels = tie_batch(seed, 30 + 4 * seed, dim=2 + seed % 3, levels=1 + seed % 2)
    r, lab = rows(features), labels.tolist()
    expected = oracle_n_hard(r, lab, r, lab, n_positive, n_negative)
    miner = NHardTripletsMiner(n_positive=n_positive, n_negative=n_negative)  # type: ignore[arg-type]
    assert as_triplets(miner.sample(features, labels)) == expected
    if n_positive == 1 and n_negative == 1:
        assert as_triplets(HardTripletsMiner().sample(features, labels)) == expected


@pytest.mark.parametrize("seed", range(4))
def test_miner_with_bank_on_tied_features(seed: int) -> None:
    """The pool path (``y_starts_with_x``), with the same batch pushed again: every row has a duplicate."""
    features, labels = tie_batch(seed, 24)
    miner = MinerWithBank(1, n_positive=[1, 3], n_negative=2)
    miner.sample(features, labels)
    pool = rows(features) + rows(features)
    expected = oracle_n_hard(rows(features), labels.tolist(), pool, labels.tolist() * 2, [1, 3], 2)
    assert as_triplets(miner.sample(features, labels)) == expected


def brute_ranked(key: torch.Tensor, mask: torch.Tensor, first: int, last: int, descending: bool) -> list[list[int]]:
    out = []
    for row, row_mask in zip(key.tolist(), mask.tolist(), strict=True):
        cols = [j for j, m in enumerate(row_mask) if m]
        cols.sort(key=lambda j: (-row[j] if descending else row[j], j))
        out.append(cols[first - 1 : last])
    return out


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize(("first", "last"), [(1, 1), (1, 2), (2, 5), (3, 3), (1, 12), (7, 30)])
def test_ranked_columns_equal_a_stable_sort(descending: bool, first: int, last: int) -> None:
    g = torch.Generator().manual_seed(first * 100 + last)
    d2 = torch.randint(0, 4, (50, 12), generator=g).double()  # ties everywhere
    mask = torch.rand(50, 12, generator=g) < 0.6
    mask[0] = False  # a row without candidates
    mask[1] = False
    mask[1, 5] = True  # a row with one candidate
    cols, valid = _ranked_columns(d2, mask, RankRange(first, last), descending)
    got = [[c for c, v in zip(r, vr, strict=True) if v] for r, vr in zip(cols.tolist(), valid.tolist(), strict=True)]
    assert got == brute_ranked(d2, mask, first, last, descending)
    assert cols.dtype == torch.long
    assert valid.shape == cols.shape == (50, max(0, min(last, 12) - first + 1))


def test_n_hard_with_no_candidate_columns() -> None:
    d2 = torch.zeros(3, 0, dtype=torch.float64)
    empty = torch.zeros(3, 0, dtype=torch.bool)
    for ranks in (RankRange(1, 1), RankRange(2, 3)):
        a, p, n = n_hard(d2, empty, empty, ranks, ranks)
        assert a.numel() == p.numel() == n.numel() == 0
        assert a.dtype == p.dtype == n.dtype == torch.long
