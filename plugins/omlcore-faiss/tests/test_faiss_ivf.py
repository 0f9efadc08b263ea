"""``faiss_ivf`` (approximate): recall on clustered data, the recall it reports, fallback and index reuse."""

import pytest
import torch
from conftest import brute_force
from omlcore_faiss import FaissIvfKnn

import omlcore


def clustered(seed: int, n_queries: int = 400, n_gallery: int = 6000, dim: int = 32, n_centers: int = 60):
    """Gaussian blobs around random centres; queries drawn like the gallery."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_centers, dim, generator=g) * 4
    gallery = centers[torch.randint(n_centers, (n_gallery,), generator=g)] + torch.randn(n_gallery, dim, generator=g)
    queries = centers[torch.randint(n_centers, (n_queries,), generator=g)] + torch.randn(n_queries, dim, generator=g)
    return queries, gallery


def direct_recall(approx: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx.tolist(), exact.tolist(), strict=True))
    return hits / exact.numel()


@pytest.mark.parametrize(
    ("metric", "quantizer"), [("l2", "flat"), ("cosine", "flat"), ("l2", "hnsw")]
)  # fmt: skip
def test_recall_on_clustered_data(metric: str, quantizer: str) -> None:
    queries, gallery = clustered(0)
    knn = omlcore.build("knn", {"name": "faiss_ivf", "args": {"metric": metric, "quantizer": quantizer}})
    distances, indices = knn.search(queries, gallery, 10)
    assert knn.last_logs["nlist"] > 1
    exact_d, exact_i = brute_force(queries, gallery, 10, metric)
    recall = direct_recall(indices, exact_i)
    assert recall >= 0.9, recall
    assert knn.estimate_recall(queries, gallery, 10, n_sample=len(queries)) == pytest.approx(recall, abs=1e-12)
    # the distances are exact figures for the neighbours returned, in (distance, index) order
    assert bool((distances[:, 1:] >= distances[:, :-1]).all())
    assert bool((distances >= exact_d - 1e-5).all())


def test_reported_recall_equals_a_direct_computation_when_it_is_low() -> None:
    g = torch.Generator().manual_seed(1)
    queries, gallery = torch.randn(300, 16, generator=g), torch.randn(4000, 16, generator=g)
    knn = FaissIvfKnn("l2", nlist=64, nprobe=1)
    reported = knn.estimate_recall(queries, gallery, 20, n_sample=10_000)
    assert knn.last_recall == reported
    assert knn.last_logs["recall"] == reported
    assert knn.last_logs["recall_k"] == 20.0
    assert knn.last_logs["recall_queries"] == 300.0
    _, approx = knn.search(queries, gallery, 20)
    expected = direct_recall(approx, brute_force(queries, gallery, 20, "l2")[1])
    assert expected < 0.9  # one list of 64 misses many neighbours of unstructured data
    assert reported == pytest.approx(expected, abs=1e-12)


def test_recall_on_a_sample_of_queries() -> None:
    queries, gallery = clustered(2, n_queries=500, n_gallery=3000)
    knn = FaissIvfKnn("l2", nprobe=2, recall_sample=64)
    knn.search(queries, gallery, 5)
    assert knn.last_logs["recall_queries"] == 64.0
    assert 0.0 <= knn.last_logs["recall"] <= 1.0
    assert knn.last_logs["nprobe"] == 2.0
    again = knn.estimate_recall(queries, gallery, 5, n_sample=64)
    assert again == knn.last_recall


def test_rows_the_probed_lists_cannot_fill_are_searched_exactly() -> None:
    queries, gallery = clustered(3, n_queries=50, n_gallery=400, dim=8)
    knn = FaissIvfKnn("l2", nlist=40, nprobe=1, train_size=400)
    _, indices = knn.search(queries, gallery, 60)
    assert knn.last_logs["exact_fallback_rows"] > 0
    _, ref_i = brute_force(queries, gallery, 60, "l2")
    short = int(knn.last_logs["exact_fallback_rows"])
    assert short <= 50
    assert indices.shape == (50, 60)
    assert bool((indices >= 0).all())
    rows_exact = (indices == ref_i).all(dim=1)
    assert int(rows_exact.sum()) >= short


def test_index_is_reused_for_the_same_gallery_and_rebuilt_after_a_change() -> None:
    queries, gallery = clustered(4, n_queries=20, n_gallery=2000)
    knn = FaissIvfKnn("l2")
    knn.search(queries, gallery, 5)
    first = knn._built
    knn.search(queries, gallery, 5)
    assert knn._built is first
    gallery.mul_(2.0)
    knn.search(queries, gallery, 5)
    assert knn._built is not first
    knn.reset()
    assert knn._built is None


def test_seeded_index_is_deterministic() -> None:
    queries, gallery = clustered(5, n_queries=100, n_gallery=3000)
    a = FaissIvfKnn("cosine", nprobe=1, seed=3).search(queries, gallery, 7)
    b = FaissIvfKnn("cosine", nprobe=1, seed=3).search(queries, gallery.clone(), 7)
    assert torch.equal(a[1], b[1])
    assert torch.equal(a[0], b[0])
