"""omlcore's KnnBackend conformance suite, for both names and both metrics, built through the registry."""

from omlcore.testing.conformance import KnnBackendConformance


class TestFaissL2Conformance(KnnBackendConformance):
    kind_name = "faiss"
    args = {"metric": "l2"}


class TestFaissCosineConformance(KnnBackendConformance):
    kind_name = "faiss"
    args = {"metric": "cosine", "num_threads": 1}


class TestFaissIvfL2Conformance(KnnBackendConformance):
    kind_name = "faiss_ivf"
    args = {"metric": "l2"}


class TestFaissIvfCosineHnswConformance(KnnBackendConformance):
    kind_name = "faiss_ivf"
    args = {"metric": "cosine", "quantizer": "hnsw", "nprobe": 2}
