"""Bad inputs and bad arguments fail with messages that name the problem."""

import math

import pytest
import torch
from omlcore_faiss import FaissIvfKnn, FaissKnn

import omlcore
from omlcore.errors import ConfigValidationError

BACKENDS = [FaissKnn, FaissIvfKnn]


@pytest.fixture(params=BACKENDS, ids=["faiss", "faiss_ivf"])
def knn(request: pytest.FixtureRequest):
    return request.param("l2")


@pytest.mark.parametrize(("where", "value"), [("queries", math.nan), ("gallery", math.inf), ("gallery", -math.inf)])
def test_non_finite_values(knn, where: str, value: float) -> None:
    queries, gallery = torch.randn(4, 3), torch.randn(50, 3)
    (queries if where == "queries" else gallery)[2, 1] = value
    with pytest.raises(ValueError, match=rf"{where} contain NaN or inf values in 1 row\(s\): 2"):
        knn.search(queries, gallery, 3)


def test_dimension_mismatch(knn) -> None:
    with pytest.raises(ValueError, match="dimension mismatch: queries have D=4 but gallery has D=3"):
        knn.search(torch.randn(2, 4), torch.randn(10, 3), 1)


@pytest.mark.parametrize("k", [0, -3])
def test_non_positive_k(knn, k: int) -> None:
    with pytest.raises(ValueError, match=f"k must be a positive integer, got {k}"):
        knn.search(torch.randn(2, 3), torch.randn(10, 3), k)


def test_k_of_the_wrong_type(knn) -> None:
    with pytest.raises(TypeError, match="k must be an int, got float"):
        knn.search(torch.randn(2, 3), torch.randn(10, 3), 2.0)


def test_empty_gallery(knn) -> None:
    with pytest.raises(ValueError, match="the gallery is empty"):
        knn.search(torch.randn(2, 3), torch.empty(0, 3), 1)


def test_shapes_and_dtypes(knn) -> None:
    with pytest.raises(ValueError, match=r"queries must be 2-D \(Q, D\), got shape \(3,\)"):
        knn.search(torch.randn(3), torch.randn(10, 3), 1)
    with pytest.raises(TypeError, match="gallery must be a floating tensor, got dtype torch.int64"):
        knn.search(torch.randn(2, 3), torch.ones(10, 3, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="queries must be a torch.Tensor"):
        knn.search([[1.0, 2.0, 3.0]], torch.randn(10, 3), 1)


def test_estimate_recall_checks_its_arguments() -> None:
    knn = FaissIvfKnn()
    with pytest.raises(ValueError, match="n_sample must be a positive integer, got 0"):
        knn.estimate_recall(torch.randn(5, 3), torch.randn(50, 3), 2, n_sample=0)
    with pytest.raises(ValueError, match="needs at least one query"):
        knn.estimate_recall(torch.empty(0, 3), torch.randn(50, 3), 2)


@pytest.mark.parametrize(
    ("name", "args", "path"),
    [
        ("faiss", {"metric": "dot"}, "knn.args.metric"),
        ("faiss", {"query_chunk": "many"}, "knn.args.query_chunk"),
        ("faiss_ivf", {"nprobe": 1.5}, "knn.args.nprobe"),
        ("faiss_ivf", {"quantizer": "pq"}, "knn.args.quantizer"),
        ("faiss_ivf", {"nlists": 10}, "knn.args.nlists"),
    ],
)
def test_config_args_are_validated(name: str, args: dict, path: str) -> None:
    with pytest.raises(ConfigValidationError, match=path):
        omlcore.build("knn", {"name": name, "args": args})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FaissKnn("dot"), "metric must be one of"),
        (lambda: FaissKnn(query_chunk=0), "query_chunk must be a positive integer"),
        (lambda: FaissKnn(num_threads=0), "num_threads must be a positive integer"),
        (lambda: FaissKnn(tie_margin=-1), "tie_margin must be a non-negative integer"),
        (lambda: FaissIvfKnn(nlist=0), "nlist must be a positive integer"),
        (lambda: FaissIvfKnn(nprobe=0), "nprobe must be a positive integer"),
        (lambda: FaissIvfKnn(quantizer="pq"), "quantizer must be 'flat' or 'hnsw'"),
        (lambda: FaissIvfKnn(recall_sample=-1), "recall_sample must be a non-negative integer"),
    ],
)
def test_constructor_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
