"""The float32 fast path of the n-hard miners: the selection must equal the float64 one (and the brute-force
oracle) whatever the float32 rounding does, including near ties, equal rows, several anchor blocks and the
cases where the fast path must step aside."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from miners_oracles import as_triplets, oracle_all, oracle_n_hard, rows
from omlcore_miners import AllTripletsMiner, HardTripletsMiner, MinerWithBank, NHardTripletsMiner, _common
from omlcore_miners._common import (
    RankRange,
    all_triplets,
    count_all_triplets,
    n_hard,
    n_hard_from_rows,
    sq_distances,
)

RANKS = [((1, 1), (1, 1)), ((1, 2), (1, 3)), ((2, 4), (1, 1)), ((1, 1), (3, 6)), ((1, 50), (1, 50))]


class Recorder:
    """Wraps ``_pair_sq_distances`` to count how many pairs the float64 re-check computed."""

    def __init__(self) -> None:
        self.pairs = 0
        self._original = _common._pair_sq_distances

    def __call__(self, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.pairs += int(r.numel())
        return self._original(x, y, r, c)


@pytest.fixture
def recheck(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(_common, "_pair_sq_distances", recorder)
    return recorder


def float64_selection(
    x: torch.Tensor,
    pool: torch.Tensor,
    labels: torch.Tensor,
    pool_labels: torch.Tensor,
    positives: RankRange,
    negatives: RankRange,
) -> list[tuple[int, int, int]]:
    """The float64 path (``sq_distances`` + ``n_hard``), which the fast path must reproduce."""
    same = labels[:, None] == pool_labels[None, :]
    pos = same.clone()
    pos[:, : x.shape[0]].fill_diagonal_(False)
    d2 = sq_distances(x.double(), pool.double(), y_starts_with_x=True)
    return as_triplets(n_hard(d2, pos, ~same, positives, negatives))


def near_tie_batch(seed: int, size: int = 48, dim: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``noise + c * e_0`` where the noise is one of 4 vectors and ``c`` one of 7 values ``1e-4``
    apart: from an anchor, rows with the same noise are at squared distances (~500) that differ by about
    1e-8, far below the float32 error of the Gram form (~1e-2 here) and far above float64 rounding (~1e-13),
    so float32 cannot order them and float64 can (rows with the same noise and ``c`` are equal: exact ties)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(4, dim, generator=g)
    features = base[torch.randint(0, 4, (size,), generator=g)].clone()
    features[:, 0] = torch.randint(-3, 4, (size,), generator=g).float() * 1e-4
    labels = torch.randint(0, 5, (size,), generator=g)
    return features, labels


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("positives", "negatives"), RANKS)
def test_fast_path_equals_float64_and_oracle_on_random_floats(seed: int, positives: Any, negatives: Any) -> None:
    g = torch.Generator().manual_seed(seed)
    size = 20 + 9 * seed
    features = torch.randn(size, 16, generator=g)
    labels = torch.randint(0, 2 + seed, (size,), generator=g)
    ranks = RankRange(*positives), RankRange(*negatives)
    got = as_triplets(n_hard_from_rows(features, features, labels, labels, *ranks))
    assert got == float64_selection(features, features, labels, labels, *ranks)
    r = rows(features)
    assert got == oracle_n_hard(r, labels.tolist(), r, labels.tolist(), list(positives), list(negatives))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("positives", "negatives"), RANKS)
def test_near_ties_are_settled_in_float64(recheck: Recorder, seed: int, positives: Any, negatives: Any) -> None:
    features, labels = near_tie_batch(seed)
    ranks = RankRange(*positives), RankRange(*negatives)
    got = as_triplets(n_hard_from_rows(features, features, labels, labels, *ranks))
    assert recheck.pairs > 0  # the float32 keys could not decide: the re-check ran
    r = rows(features)
    assert got == oracle_n_hard(r, labels.tolist(), r, labels.tolist(), list(positives), list(negatives))


def test_float32_alone_would_get_near_ties_wrong() -> None:
    """The test above is meaningful: on these batches the float32 Gram form misorders some distances."""
    features, _ = near_tie_batch(0)
    x = features
    gram32 = (x * x).sum(1)[None, :] - 2.0 * (x @ x.T)
    exact = sq_distances(x.double())
    disagree = 0
    for i in range(x.shape[0]):
        order32 = sorted(range(x.shape[0]), key=lambda j: (float(gram32[i, j]), j))
        order64 = sorted(range(x.shape[0]), key=lambda j: (float(exact[i, j]), j))
        disagree += order32 != order64
    assert disagree > 0


def test_a_clear_winner_needs_no_float64(recheck: Recorder) -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(64, 32, generator=g)
    labels = torch.arange(16).repeat_interleave(4)
    HardTripletsMiner().sample(features, labels)
    assert recheck.pairs == 0


@pytest.mark.parametrize("block", [1, 7, 64])
def test_anchor_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    features, labels = near_tie_batch(3, size=40)
    expected = as_triplets(HardTripletsMiner().sample(features, labels))
    monkeypatch.setattr(_common, "_BLOCK_ENTRIES", block * 40)
    assert as_triplets(HardTripletsMiner().sample(features, labels)) == expected
    r = rows(features)
    assert expected == oracle_n_hard(r, labels.tolist(), r, labels.tolist(), 1, 1)


def test_equal_rows_tie_to_the_smaller_index() -> None:
    g = torch.Generator().manual_seed(1)
    features = torch.randn(12, 8, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    features[[4, 7, 10]] = features[1].clone()  # equal rows of other labels: nearest negatives of 0 and 2
    features[5] = features[3].clone()  # equal positives
    a, p, n = HardTripletsMiner().sample(features, labels)
    r = rows(features)
    assert as_triplets((a, p, n)) == oracle_n_hard(r, labels.tolist(), r, labels.tolist(), 1, 1)
    assert int(n[1]) == 4  # rows 4, 7 and 10 equal row 1: at distance 0 from it, the smallest index wins


def test_bank_pool_with_duplicates_of_the_batch() -> None:
    features, labels = near_tie_batch(5, size=24)
    miner = MinerWithBank(1, n_positive=[1, 2], n_negative=2)
    miner.sample(features, labels)
    got = as_triplets(miner.sample(features, labels))  # the bank is this batch again: every row twice
    pool = rows(features) + rows(features)
    expected = oracle_n_hard(rows(features), labels.tolist(), pool, labels.tolist() * 2, [1, 2], 2)
    assert got == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    features = torch.randn(30, 8, generator=g).to(dtype)
    labels = torch.randint(0, 4, (30,), generator=g)
    r = rows(features)
    for miner, spec in ((HardTripletsMiner(), (1, 1)), (NHardTripletsMiner([1, 2], 3), ([1, 2], 3))):
        expected = oracle_n_hard(r, labels.tolist(), r, labels.tolist(), *spec)
        assert as_triplets(miner.sample(features, labels)) == expected


def test_float64_features_and_extreme_magnitudes_take_the_float64_path(recheck: Recorder) -> None:
    g = torch.Generator().manual_seed(4)
    features, labels = torch.randn(30, 8, generator=g), torch.randint(0, 4, (30,), generator=g)
    r = rows(features)
    expected = oracle_n_hard(r, labels.tolist(), r, labels.tolist(), 1, 1)
    assert as_triplets(HardTripletsMiner().sample(features.double(), labels)) == expected
    assert recheck.pairs == 0  # float64 input: decided in float64 from the start
    assert as_triplets(HardTripletsMiner().sample(features, labels)) == expected
    for scale in (2.0**70, 2.0**-40):  # squared norms outside the float32 range of the fast path
        assert as_triplets(HardTripletsMiner().sample(features * scale, labels)) == expected
    assert recheck.pairs == 0


def test_reduced_precision_matmul_disables_the_fast_path(recheck: Recorder) -> None:
    g = torch.Generator().manual_seed(5)
    features, labels = torch.randn(30, 8, generator=g), torch.randint(0, 4, (30,), generator=g)
    expected = as_triplets(HardTripletsMiner().sample(features, labels))
    recheck.pairs = 0
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        assert not _common._exact_float32_matmul(torch.device("cpu"))
        assert as_triplets(HardTripletsMiner().sample(features, labels)) == expected
        assert recheck.pairs == 0
    finally:
        torch.set_float32_matmul_precision(previous)
    assert _common._exact_float32_matmul(torch.device("cpu"))


@pytest.mark.parametrize("seed", range(8))
def test_all_triplets_without_the_cube_mask(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 1 + seed % 5, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g)
    expected = oracle_all(labels.tolist())
    assert as_triplets(all_triplets(labels)) == expected
    assert count_all_triplets(labels) == len(expected)
    assert all(t.dtype == torch.long for t in all_triplets(labels))


def test_takes_all_triplets() -> None:
    features = torch.randn(10, 3)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    total = len(oracle_all(labels.tolist()))
    miner = AllTripletsMiner()
    assert miner.takes_all_triplets(features, labels)
    assert miner.last_logs == {"available_triplets": float(total), "triplets": float(total)}
    capped = AllTripletsMiner(max_output_triplets=total)
    assert capped.takes_all_triplets(features, labels)
    subset = AllTripletsMiner(max_output_triplets=total - 1, seed=3)
    state = subset._generator.get_state()
    assert not subset.takes_all_triplets(features, labels)
    assert torch.equal(subset._generator.get_state(), state)  # no draw was made
    assert subset.last_logs == {}
    with pytest.raises(ValueError, match="NaN or infinite"):
        miner.takes_all_triplets(torch.full((10, 3), float("nan")), labels)
