"""TorchKnn: the KnnBackend conformance suite, chunk invariance, the tie order and exact exclusions."""

import math

import pytest
import torch
from omlcore_metrics.knn import Exclusions, TorchKnn, knn_with_exclusions
from torch import Tensor

from omlcore.registry import build
from omlcore.testing.conformance import KnnBackendConformance


class TestTorchKnnL2Conformance(KnnBackendConformance):
    kind_name = "torch"
    args = {"metric": "l2"}


class TestTorchKnnCosineConformance(KnnBackendConformance):
    kind_name = "torch"
    args = {"metric": "cosine"}


class TestTorchKnnDotSmallChunksConformance(KnnBackendConformance):
    kind_name = "torch"
    args = {"metric": "dot", "query_chunk": 2, "gallery_chunk": 7}


class SortingBackend:
    """A brute-force backend that is not a TorchKnn: drives knn_with_exclusions' over-request path."""

    metric = "l2"

    def search(self, queries: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
        d = torch.cdist(queries.double(), gallery.double())
        values, idx = d.sort(dim=1, stable=True)
        k = min(k, gallery.shape[0])
        return values[:, :k], idx[:, :k]


def reference_excluded(queries: Tensor, gallery: Tensor, k: int, excluded: Tensor) -> tuple[Tensor, Tensor]:
    """Full-matrix reference: excluded pairs at +inf, stable sort, padding -1/inf."""
    d = torch.cdist(queries.double(), gallery.double()).masked_fill(excluded, math.inf)
    values, idx = d.sort(dim=1, stable=True)
    k = min(k, gallery.shape[0])
    values, idx = values[:, :k], idx[:, :k].clone()
    idx[torch.isinf(values)] = -1
    return values, idx


def test_entry_point_builds_torch_knn() -> None:
    knn = build("knn", {"name": "torch", "args": {"metric": "cosine", "query_chunk": 8}})
    assert isinstance(knn, TorchKnn)
    assert knn.metric == "cosine"
    assert knn.query_chunk == 8


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_chunk_sizes_do_not_change_results(metric: str) -> None:
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(37, 6, generator=g, dtype=torch.double), torch.randn(53, 6, generator=g, dtype=torch.double)
    gal[10] = gal[40]  # an exact tie across gallery chunks
    ref_d, ref_i = TorchKnn(metric).search(q, gal, 12)  # type: ignore[arg-type]
    for qc, gc in ((1, 1), (3, 5), (8, 53), (100, 7)):
        d, i = TorchKnn(metric, query_chunk=qc, gallery_chunk=gc).search(q, gal, 12)  # type: ignore[arg-type]
        assert torch.equal(i, ref_i), (qc, gc)
        assert torch.allclose(d, ref_d)


def test_many_ties_broken_by_index_across_chunks() -> None:
    gallery = torch.zeros(20, 3)
    gallery[::2] = 1.0  # ten equal rows at distance 0 from the query, ten at sqrt(3)
    query = torch.ones(1, 3)
    for gc in (1, 3, 20):
        _, idx = TorchKnn(gallery_chunk=gc).search(query, gallery, 7)
        assert idx.tolist() == [[0, 2, 4, 6, 8, 10, 12]]
        _, idx = TorchKnn(gallery_chunk=gc).search(query, gallery, 13)
        assert idx.tolist() == [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5]]


def _random_exclusions(n_q: int, n_g: int, seed: int) -> tuple[Exclusions, Tensor]:
    g = torch.Generator().manual_seed(seed)
    q_ids, g_ids = torch.randint(0, 6, (n_q,), generator=g), torch.randint(0, 6, (n_g,), generator=g)
    q_seq, g_seq = torch.randint(0, 4, (n_q,), generator=g), torch.randint(0, 4, (n_g,), generator=g)
    ignore = [
        torch.randint(0, n_g, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist() for _ in range(n_q)
    ]
    excl = Exclusions(q_ids, g_ids, q_seq, g_seq, ignore)
    mask = (q_ids[:, None] == g_ids[None, :]) | (q_seq[:, None] == g_seq[None, :])
    for qi, row in enumerate(ignore):
        mask[qi, row] = True
    return excl, mask


@pytest.mark.parametrize("seed", range(4))
def test_exclusions_match_reference_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    q = torch.randn(9, 4, generator=g, dtype=torch.double)
    gal = torch.randn(30, 4, generator=g, dtype=torch.double)
    gal[1::3] = gal[0]  # many exact ties, most of them excluded for some query
    excl, mask = _random_exclusions(9, 30, seed)
    assert torch.equal(excl.counts(9, 30), mask.sum(1))
    for k in (1, 4, 25, 40):
        ref_d, ref_i = reference_excluded(q, gal, k, mask)
        for backend in (TorchKnn(gallery_chunk=7, query_chunk=4), SortingBackend()):
            d, i = knn_with_exclusions(q, gal, k, backend, excl)
            assert torch.equal(i, ref_i), (k, type(backend).__name__)
            finite = ~torch.isinf(ref_d)
            assert torch.allclose(d[finite], ref_d[finite])


def test_search_validation() -> None:
    knn = TorchKnn()
    with pytest.raises(ValueError, match="positive int"):
        knn.search(torch.zeros(2, 3), torch.zeros(4, 3), 0)
    with pytest.raises(ValueError, match="dimension"):
        knn.search(torch.zeros(2, 3), torch.zeros(4, 2), 1)
    with pytest.raises(TypeError, match="floating"):
        knn.search(torch.zeros(2, 3, dtype=torch.long), torch.zeros(4, 3), 1)
    with pytest.raises(ValueError, match="unknown metric"):
        TorchKnn("manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query_chunk"):
        TorchKnn(query_chunk=0)
    with pytest.raises(ValueError, match="ignore"):
        knn.search(torch.zeros(2, 3), torch.zeros(4, 3), 1, exclude=Exclusions(ignore=[[9], []]))
    with pytest.raises(ValueError, match="together"):
        Exclusions(query_ids=torch.zeros(2)).validate(2, 4)


def test_empty_query_set_and_k_above_gallery() -> None:
    d, i = TorchKnn().search(torch.zeros(0, 3), torch.randn(4, 3), 2)
    assert d.shape == (0, 2)
    assert i.shape == (0, 2)
    d, i = TorchKnn().search(torch.randn(2, 3), torch.randn(4, 3), 10)
    assert i.shape == (2, 4)
