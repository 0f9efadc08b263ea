"""``faiss`` (exact) against a brute-force torch reference: ties, k > G, chunking, dtypes, threads."""

import pytest
import torch
from conftest import brute_force
from omlcore_faiss import FaissKnn

import omlcore


def integer_data(seed: int, n_queries: int, n_gallery: int, dim: int, low: int = -2, high: int = 3):
    """Small-integer embeddings: float32 arithmetic on them is exact, so distances tie exactly and often."""
    g = torch.Generator().manual_seed(seed)
    queries = torch.randint(low, high, (n_queries, dim), generator=g).float()
    gallery = torch.randint(low, high, (n_gallery, dim), generator=g).float()
    return queries, gallery


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 4, 10, 33])
def test_integer_data_with_many_ties(metric: str, seed: int, k: int) -> None:
    queries, gallery = integer_data(seed, 60, 400, 5)
    knn = omlcore.build("knn", {"name": "faiss", "args": {"metric": metric}})
    distances, indices = knn.search(queries, gallery, k)
    ref_d, ref_i = brute_force(queries, gallery, k, metric)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(distances, ref_d, rtol=0, atol=0)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ties_beyond_the_margin_widen_the_search(metric: str) -> None:
    """40 copies of the nearest row, k=5, no margin: the kept five are the five smallest indices."""
    g = torch.Generator().manual_seed(3)
    gallery = torch.randn(300, 8, generator=g) * 10
    nearest = torch.ones(8)
    copies = torch.randperm(300, generator=g)[:40]
    gallery[copies] = nearest
    queries = nearest[None] * 1.5
    knn = FaissKnn(metric, tie_margin=0)
    _, indices = knn.search(queries, gallery, 5)
    assert indices[0].tolist() == sorted(copies.tolist())[:5]
    assert knn.last_logs["widened_rows"] == 1.0
    assert torch.equal(indices, brute_force(queries, gallery, 5, metric)[1])


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_k_larger_than_gallery_is_clipped(metric: str) -> None:
    queries, gallery = integer_data(4, 7, 12, 3)
    distances, indices = FaissKnn(metric).search(queries, gallery, 50)
    assert distances.shape == indices.shape == (7, 12)
    ref_d, ref_i = brute_force(queries, gallery, 50, metric)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(distances, ref_d, rtol=0, atol=0)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_random_float_data_matches(metric: str) -> None:
    g = torch.Generator().manual_seed(5)
    queries, gallery = torch.randn(300, 64, generator=g), torch.randn(3000, 64, generator=g)
    distances, indices = FaissKnn(metric).search(queries, gallery, 20)
    ref_d, ref_i = brute_force(queries, gallery, 20, metric)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(distances, ref_d, rtol=1e-6, atol=1e-6)


def test_results_do_not_depend_on_the_query_chunk() -> None:
    queries, gallery = integer_data(6, 100, 300, 4)
    whole = FaissKnn("l2").search(queries, gallery, 9)
    chunked = FaissKnn("l2", query_chunk=7).search(queries, gallery, 9)
    assert torch.equal(whole[0], chunked[0])
    assert torch.equal(whole[1], chunked[1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_distances_keep_the_input_dtype(dtype: torch.dtype) -> None:
    queries, gallery = integer_data(7, 20, 200, 6)
    queries, gallery = queries.to(dtype), gallery.to(dtype)
    distances, indices = FaissKnn("l2").search(queries, gallery, 15)
    assert distances.dtype == dtype
    ref_d, ref_i = brute_force(queries, gallery, 15, "l2")
    assert torch.equal(indices, ref_i)
    assert torch.equal(distances, ref_d)


def test_distance_definitions() -> None:
    """l2 is the Euclidean distance (not squared); cosine is 1 - cos; a zero row is at cosine distance 1."""
    queries = torch.tensor([[3.0, 4.0]])
    gallery = torch.tensor([[0.0, 0.0], [3.0, 0.0], [-3.0, -4.0]])
    d, i = FaissKnn("l2").search(queries, gallery, 3)
    assert i.tolist() == [[1, 0, 2]]
    torch.testing.assert_close(d, torch.tensor([[4.0, 5.0, 10.0]]))
    d, i = FaissKnn("cosine").search(queries, gallery, 3)
    assert i.tolist() == [[1, 0, 2]]
    torch.testing.assert_close(d, torch.tensor([[0.4, 1.0, 2.0]]))


def test_empty_query_set() -> None:
    distances, indices = FaissKnn().search(torch.empty(0, 4), torch.randn(10, 4), 3)
    assert distances.shape == indices.shape == (0, 3)


def test_gradients_and_inputs_untouched() -> None:
    queries = torch.randn(5, 4, requires_grad=True)
    gallery = torch.randn(30, 4)
    distances, _ = FaissKnn().search(queries, gallery, 3)
    assert not distances.requires_grad


def test_thread_count_is_restored() -> None:
    import faiss  # type: ignore[import-untyped,unused-ignore]

    before = faiss.omp_get_max_threads()
    queries, gallery = integer_data(8, 10, 50, 3)
    one = FaissKnn("l2", num_threads=1).search(queries, gallery, 4)
    assert faiss.omp_get_max_threads() == before
    default = FaissKnn("l2").search(queries, gallery, 4)
    assert torch.equal(one[1], default[1])
