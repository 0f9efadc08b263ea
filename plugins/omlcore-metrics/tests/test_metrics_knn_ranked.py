"""TorchKnn's ranked search: candidates from one-product ranking keys, exact float64 re-scoring, near-ties.

The reference here is independent of the search: a naive float64 distance matrix (written out below, not
the plugin's helpers), cast to the queries' dtype, excluded pairs at ``inf``, a stable sort by distance
after a sort by index. Every case must match it exactly (indices and distances), whatever the chunks.
"""

import math
from typing import Any

import pytest
import torch
from omlcore_metrics import knn as knn_module
from omlcore_metrics.knn import (
    Exclusions,
    TorchKnn,
    _merge,
    _select,
    exact_distances,
    exact_pair_distances,
    knn_with_exclusions,
)
from torch import Tensor

CHUNKS = ((3, 97), (7, 64), (64, 333), (1000, 1000), (16, 1500))


def naive_distances(queries: Tensor, gallery: Tensor, metric: str) -> Tensor:
    """Float64 ``(Q, G)`` distances by explicit loops over pairs of rows, vectorised only over D."""
    q, g = queries.double(), gallery.double()
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.double)
    for i in range(q.shape[0]):
        if metric == "l2":
            out[i] = ((g - q[i]) ** 2).sum(1).sqrt()
        elif metric == "cosine":
            qn = q[i].square().sum()
            norms = (qn * g.square().sum(1)).sqrt()
            dots = (g * q[i]).sum(1)
            cos = torch.where(norms > 0, dots / norms.clamp(min=1e-300), torch.zeros_like(dots))
            out[i] = (1.0 - cos).clamp(0.0, 2.0)
        else:
            out[i] = -(g * q[i]).sum(1)
    return out


def reference(
    queries: Tensor, gallery: Tensor, k: int, metric: str, excluded: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Exact top-k by (distance in the queries' dtype, index), excluded pairs left out, padding inf / -1."""
    d = naive_distances(queries, gallery, metric).to(queries.dtype)
    if excluded is not None:
        d = d.masked_fill(excluded, math.inf)
    values, idx = d.sort(dim=1, stable=True)
    k = min(k, gallery.shape[0])
    values, idx = values[:, :k], idx[:, :k].clone()
    if excluded is not None:
        idx[torch.isinf(values)] = -1
    return values, idx


def check(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    metric: str,
    exclude: Exclusions | None = None,
    excluded: Tensor | None = None,
    chunks: tuple[tuple[int, int], ...] = CHUNKS,
) -> None:
    ref_d, ref_i = reference(queries, gallery, k, metric, excluded)
    first: Tensor | None = None
    for qc, gc in chunks:
        d, i = TorchKnn(metric, query_chunk=qc, gallery_chunk=gc).search(  # type: ignore[arg-type]
            queries, gallery, k, exclude=exclude
        )
        assert torch.equal(i, ref_i), (metric, k, qc, gc, (i != ref_i).any(1).nonzero().flatten()[:5].tolist())
        assert d.dtype == queries.dtype
        if queries.dtype == torch.float64:
            # float64 output shows the last bit of the float64 sums, whose order differs from the reference's
            finite = torch.isfinite(ref_d)
            assert torch.equal(torch.isfinite(d), finite)
            assert torch.allclose(d[finite], ref_d[finite], rtol=1e-12, atol=1e-12), (metric, k, qc, gc)
            if first is not None:
                assert torch.equal(d, first), "float64 distances must not depend on the chunks"
            first = d
        else:
            assert torch.equal(d, ref_d), (metric, k, qc, gc)


@pytest.fixture
def count_rescans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the queries that needed the second pass (near-ties at the k-th place)."""
    calls: list[int] = []
    original = knn_module._RankedSearch._rescan

    def spy(self: Any, rows: Tensor, limit: Tensor) -> tuple[Tensor, Tensor]:
        calls.append(rows.numel())
        return original(self, rows, limit)

    monkeypatch.setattr(knn_module._RankedSearch, "_rescan", spy)
    return calls


# ---- the selection of candidates --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 9, 40, 1200, 3000, 4100])
def test_select_keeps_the_smallest_keys_and_a_valid_bound(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    keys = torch.randint(0, 50, (6, n), generator=g).float()  # many exact ties
    keys[0, ::7] = math.inf
    p = 8
    pool_k, pool_c, bound = _select(keys, p)
    for r in range(keys.shape[0]):
        valid = pool_c[r] >= 0
        assert torch.equal(keys[r, pool_c[r][valid]], pool_k[r][valid])
        assert sorted(pool_k[r].tolist()) == sorted(keys[r].tolist())[:p] + [math.inf] * (p - min(p, n))
        rest = torch.ones(n, dtype=torch.bool)
        rest[pool_c[r][valid]] = False
        assert len(set(pool_c[r][valid].tolist())) == int(valid.sum())
        if bool(rest.any()):
            assert bool((keys[r, rest] >= bound[r]).all())
        assert bool((pool_k[r] <= bound[r]).all())


def test_merge_keeps_the_smallest_and_bounds_the_rest() -> None:
    g = torch.Generator().manual_seed(3)
    keys = torch.randint(0, 20, (4, 3000), generator=g).float()
    p = 6
    a = _select(keys[:, :1700], p)
    b = _select(keys[:, 1700:], p)
    b = (b[0], b[1] + 1700, b[2])
    pool_k, pool_i, bound = _merge(a, b, p)
    for r in range(4):
        assert sorted(pool_k[r].tolist()) == sorted(keys[r].tolist())[:p]
        assert torch.equal(keys[r, pool_i[r]], pool_k[r])
        rest = torch.ones(3000, dtype=torch.bool)
        rest[pool_i[r]] = False
        assert bool((keys[r, rest] >= bound[r]).all())


# ---- exactness against the naive reference -------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize("k", [1, 5, 17])
def test_random_data_wide_gallery(metric: str, k: int) -> None:
    """Galleries wide enough for the two-level selection (with a tail of columns outside the groups)."""
    g = torch.Generator().manual_seed(k)
    queries, gallery = torch.randn(23, 12, generator=g), torch.randn(3011, 12, generator=g)
    check(queries, gallery, k, metric, chunks=((1000, 1000), (16, 1500), (23, 3011), (5, 4096)))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_normalised_rows_use_the_plain_product_and_stay_exact(metric: str) -> None:
    """Unit rows (norms equal up to rounding): l2 ranks by -2 q.g alone; the norm spread is accounted for."""
    g = torch.Generator().manual_seed(5)
    gallery = torch.nn.functional.normalize(torch.randn(2500, 16, generator=g), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(30, 16, generator=g), dim=1)
    search = knn_module._RankedSearch(TorchKnn(metric), queries, gallery, 5, None)  # type: ignore[arg-type]
    assert search.use_bias is False
    check(queries, gallery, 5, metric, chunks=((8, 1000), (30, 2500)))
    # norms differing by ~1e-6: still the plain product, still exact
    wobble = gallery * (1.0 + 1e-6 * torch.rand(2500, 1, generator=g))
    check(queries, wobble, 5, metric, chunks=((8, 1000),))


def test_rows_of_different_norms_use_the_bias() -> None:
    g = torch.Generator().manual_seed(6)
    gallery = torch.randn(2500, 16, generator=g) * torch.rand(2500, 1, generator=g) * 10
    queries = torch.randn(30, 16, generator=g)
    search = knn_module._RankedSearch(TorchKnn("l2"), queries, gallery, 5, None)
    assert search.use_bias is True
    check(queries, gallery, 5, "l2", chunks=((8, 1000), (30, 2500)))


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_near_ties_below_float32_resolution_are_settled_exactly(metric: str, count_rescans: list[int]) -> None:
    """Gallery rows at distances that differ by ~1e-9 relative (far below the float32 product's rounding):
    the float64 re-scoring orders them, the second pass makes sure none is missed at the k-th place."""
    g = torch.Generator().manual_seed(11)
    base = torch.nn.functional.normalize(torch.randn(1, 24, dtype=torch.double, generator=g), dim=1)
    # 400 rows at (almost) the same distance from the query: rotations of the query's direction by the same
    # angle, lengths perturbed by tiny amounts; plus 2600 far rows
    directions = torch.randn(400, 24, dtype=torch.double, generator=g)
    directions -= (directions @ base.T) * base
    directions = torch.nn.functional.normalize(directions, dim=1)
    near = 0.8 * base + 0.6 * directions
    near *= 1.0 + 1e-9 * torch.randint(-3, 4, (400, 1), generator=g).double()
    far = -3.0 * base + 0.5 * torch.randn(2600, 24, dtype=torch.double, generator=g)
    gallery = torch.cat([far[:1300], near, far[1300:]]).float()
    queries = torch.cat([base, 0.5 * base, base + 1e-3 * torch.randn(3, 24, dtype=torch.double, generator=g)]).float()
    for k in (1, 5, 40):
        check(queries, gallery, k, metric, chunks=((1, 700), (5, 3000), (2, 1024)))
    assert sum(count_rescans) > 0, "the near-ties should have needed the second pass"


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_exact_ties_across_chunk_boundaries(metric: str) -> None:
    """Copies of the same rows scattered over several gallery chunks: the smaller indices win the k-th place."""
    g = torch.Generator().manual_seed(2)
    distinct = torch.randn(7, 5, generator=g)
    layout = torch.randint(0, 7, (2400,), generator=g)
    gallery = distinct[layout]
    queries = torch.cat([distinct[:3], torch.randn(4, 5, generator=g)])
    for k in (1, 4, 30, 350, 2400):
        check(queries, gallery, k, metric, chunks=((3, 7), (7, 97), (2, 1200), (7, 2400)))


def test_integer_grid_has_many_exact_ties_between_distinct_rows() -> None:
    """Integer coordinates: many distinct gallery rows at exactly the same distance."""
    g = torch.Generator().manual_seed(4)
    gallery = torch.randint(-3, 4, (3000, 3), generator=g).float()
    queries = torch.randint(-3, 4, (12, 3), generator=g).float()
    for k in (1, 6, 50):
        check(queries, gallery, k, "l2")
        check(queries, gallery, k, "dot", chunks=((5, 700), (12, 3000)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(8)
    queries = torch.randn(9, 10, generator=g).to(dtype)
    gallery = torch.randn(2000, 10, generator=g).to(dtype)
    for metric in ("l2", "cosine"):
        check(queries, gallery, 6, metric, chunks=((4, 900), (9, 2000)))


def test_cosine_zero_and_tiny_rows() -> None:
    g = torch.Generator().manual_seed(9)
    gallery = torch.randn(1500, 6, generator=g)
    gallery[::50] = 0.0
    gallery[7] = 1e-30 * gallery[8]  # the same direction as row 8: distance-tie with it
    queries = torch.cat([torch.zeros(1, 6), gallery[8:9] * 1e-20, torch.randn(3, 6, generator=g)])
    check(queries, gallery, 40, "cosine", chunks=((2, 500), (5, 1500)))


def test_reduced_precision_matmul_stays_exact() -> None:
    """With TF32/bfloat16 float32 products allowed, the bounds widen and the result does not change."""
    g = torch.Generator().manual_seed(10)
    queries = torch.randn(20, 32, generator=g)
    gallery = torch.randn(2600, 32, generator=g)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        check(queries, gallery, 5, "l2", chunks=((20, 2600), (7, 1000)))
        check(queries, gallery, 5, "cosine", chunks=((20, 2600),))
    finally:
        torch.set_float32_matmul_precision(before)


# ---- exclusions through the ranked search ------------------------------------------------------------------------


def test_self_exclusion_unique_ids_wide_gallery() -> None:
    g = torch.Generator().manual_seed(12)
    emb = torch.randn(2100, 8, generator=g)
    emb[100] = emb[5]  # a duplicate: row 5's nearest is row 100 at distance 0, and vice versa
    ids = torch.arange(2100)
    excl = Exclusions(query_ids=ids, gallery_ids=ids)
    check(emb, emb, 5, "l2", excl, torch.eye(2100, dtype=torch.bool), chunks=((256, 1024), (2100, 2100)))
    _, idx = TorchKnn().search(emb, emb, 1, exclude=excl)
    assert idx[5, 0] == 100
    assert idx[100, 0] == 5


def test_repeated_ids_sequences_and_ignore_lists_wide_gallery() -> None:
    g = torch.Generator().manual_seed(13)
    n_q, n_g = 17, 2200
    queries, gallery = torch.randn(n_q, 6, generator=g), torch.randn(n_g, 6, generator=g)
    gallery[1::3] = gallery[0]
    q_ids, g_ids = torch.randint(0, 3, (n_q,), generator=g), torch.randint(0, 3, (n_g,), generator=g)
    q_seq, g_seq = torch.randint(0, 40, (n_q,), generator=g), torch.randint(0, 40, (n_g,), generator=g)
    ignore = [torch.randint(0, n_g, (int(i) % 5,), generator=g).tolist() for i in range(n_q)]
    mask = (q_ids[:, None] == g_ids[None, :]) | (q_seq[:, None] == g_seq[None, :])
    for qi, row in enumerate(ignore):
        mask[qi, row] = True
    excl = Exclusions(q_ids, g_ids, q_seq, g_seq, ignore)  # ids shared by ~700 rows: the block-compare path
    for k in (1, 9, 1500):
        check(queries, gallery, k, "l2", excl, mask, chunks=((4, 1000), (17, 2200)))
    only_ignore = Exclusions(ignore=ignore)
    ignore_mask = torch.zeros(n_q, n_g, dtype=torch.bool)
    for qi, row in enumerate(ignore):
        ignore_mask[qi, row] = True
    check(queries, gallery, 9, "cosine", only_ignore, ignore_mask, chunks=((4, 1000),))


def test_rows_with_fewer_admissible_neighbours_are_padded() -> None:
    emb = torch.randn(6, 3)
    seq = torch.tensor([0, 0, 0, 1, 1, 2])
    excl = Exclusions(query_sequence=seq, gallery_sequence=seq)
    d, i = TorchKnn(gallery_chunk=2).search(emb, emb, 5, exclude=excl)
    assert (i[0] == -1).tolist() == [False, False, False, True, True]
    assert torch.isinf(d[0, 3:]).all()
    assert (i[5] >= 0).sum() == 5


def test_other_backends_see_the_same_rows() -> None:
    """knn_with_exclusions with a non-TorchKnn backend gives TorchKnn's answer on tie-free data."""

    class Sorting:
        metric = "l2"

        def search(self, q: Tensor, g: Tensor, k: int) -> tuple[Tensor, Tensor]:
            d = exact_pair_distances(q, g, "l2").to(q.dtype)
            values, idx = d.sort(dim=1, stable=True)
            return values[:, :k], idx[:, :k]

    g = torch.Generator().manual_seed(14)
    emb = torch.randn(300, 5, generator=g)
    ids = torch.arange(300)
    excl = Exclusions(query_ids=ids, gallery_ids=ids)
    a = knn_with_exclusions(emb, emb, 7, TorchKnn(gallery_chunk=128), excl)
    b = knn_with_exclusions(emb, emb, 7, Sorting(), excl)
    assert torch.equal(a[1], b[1])
    assert torch.equal(a[0], b[0])


def test_exact_distances_do_not_depend_on_the_batch() -> None:
    g = torch.Generator().manual_seed(15)
    queries, gallery = torch.randn(9, 300, generator=g), torch.randn(50, 300, generator=g)
    for metric in ("l2", "cosine", "dot"):
        full = exact_pair_distances(queries, gallery, metric)
        for r in range(9):
            idx = torch.tensor([[7, 3, 7, 49]])
            one = exact_distances(queries[r : r + 1], gallery, idx, metric)
            assert torch.equal(one[0], full[r, idx[0]])
        assert torch.allclose(full, naive_distances(queries, gallery, metric), rtol=1e-12, atol=1e-12)
    assert torch.isinf(exact_distances(queries[:1], gallery, torch.tensor([[-1, 0]]), "l2")[0, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_inputs_are_not_modified(metric: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(16)
    queries, gallery = torch.randn(5, 4, generator=g).to(dtype), torch.randn(1300, 4, generator=g).to(dtype)
    gallery[3] = gallery[4]
    q0, g0 = queries.clone(), gallery.clone()
    excl = Exclusions(query_ids=torch.arange(5), gallery_ids=torch.arange(1300))
    TorchKnn(metric, query_chunk=2, gallery_chunk=700).search(queries, gallery, 9, exclude=excl)  # type: ignore[arg-type]
    assert torch.equal(queries, q0)
    assert torch.equal(gallery, g0)
