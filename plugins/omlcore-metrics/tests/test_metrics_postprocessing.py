"""EmbeddingMetrics with a postprocessor: the top-k of every query is post-processed before the per-query
metrics, items are read by dataset index whatever the update order, and bad combinations are refused."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
import torch
from omlcore_metrics import EmbeddingMetrics, PostprocessingError, postprocessed_retrieval_metrics, retrieval_metrics
from omlcore_metrics.functional import OVERALL
from torch import Tensor

ASKED: dict[str, Any] = {
    "cmc_top_k": (1, 3),
    "precision_top_k": (3,),
    "map_top_k": (3,),
    "fmr_vals": (0.2,),
    "pcf_variance": (0.5,),
}


class LabelOracle:
    """Re-orders the first ``top_n`` results of each row: true positives first (former order kept), by
    looking up each item's label in its ``dataset``. ``reads`` says where the labels come from."""

    def __init__(self, top_n: int, reads: Literal["embeddings", "items", "nothing"] = "items") -> None:
        self.top_n: int | None = top_n
        self.reads: Literal["embeddings", "items", "nothing"] = reads
        self.calls = 0

    def _label(self, dataset: Any, row: int) -> int:
        item = dataset[row]
        return int(item["label"]) if isinstance(item, dict) else int(item[0])

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        self.calls += 1
        assert self.top_n is not None
        n = min(self.top_n, distances.shape[1])
        new_r = retrieved.clone()
        for q in range(retrieved.shape[0]):
            q_label = self._label(dataset, int(query_ids[q]))
            top = [int(r) for r in retrieved[q, :n] if int(r) >= 0]
            pos = [r for r in top if self._label(dataset, r) == q_label]
            neg = [r for r in top if self._label(dataset, r) != q_label]
            new_r[q, : len(top)] = torch.tensor(pos + neg, dtype=torch.long)
        return distances.clone(), new_r  # the distances of the columns stay sorted


class _LabelsByIndex:
    """A dataset whose item ``i`` is ``{"label": labels[i]}``, indexed by the sample (dataset) index."""

    def __init__(self, labels: dict[int, int]) -> None:
        self.labels = labels
        self.size = max(labels) + 1

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, int]:
        if i not in self.labels:
            raise IndexError(f"sample {i} does not exist")
        return {"label": self.labels[i]}


def _data(n: int = 90, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    role = torch.randint(0, 3, (n,), generator=g)
    return {
        "embeddings": torch.randint(-3, 4, (n, 5), generator=g).float(),
        "labels": torch.randint(0, 9, (n,), generator=g),
        "is_query": role <= 1,
        "is_gallery": role != 1,
    }


def _feed(metric: EmbeddingMetrics, data: dict[str, Tensor], indices: Tensor, seed: int) -> None:
    """Batches of shuffled rows, each with its (non-contiguous) dataset index."""
    order = torch.randperm(indices.numel(), generator=torch.Generator().manual_seed(seed))
    for chunk in order.split(7):
        batch = {k: v[chunk] for k, v in data.items()}
        metric.update_data(batch, indices=indices[chunk])


def test_an_oracle_lifts_cmc_at_1_where_a_positive_is_in_the_top_n_whatever_the_update_order() -> None:
    data = _data()
    n = data["labels"].numel()
    indices = torch.arange(n) * 3 + 11  # non-contiguous sample indices
    by_index = _LabelsByIndex({int(i): int(label) for i, label in zip(indices, data["labels"], strict=True)})
    top_n = 4
    oracle = LabelOracle(top_n)
    with_pp = EmbeddingMetrics(**ASKED, postprocessor=oracle, postprocessor_dataset=by_index)
    plain = EmbeddingMetrics(**ASKED)
    _feed(with_pp, data, indices, seed=1)
    _feed(plain, data, indices, seed=2)
    with_pp.compute_metrics()
    plain.compute_metrics()
    assert oracle.calls == 1
    assert with_pp.metrics is not None
    assert plain.metrics is not None
    assert with_pp.metrics.keys() == plain.metrics.keys()
    assert {m: set(v) for m, v in with_pp.metrics[OVERALL].items()} == {
        m: set(v) for m, v in plain.metrics[OVERALL].items()
    }  # the metrics asked for, no more (the search went top_n deep for the oracle)
    # which queries have a positive in the top_n, from a search that deep (rows sorted by dataset index)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    deep = retrieval_metrics(*args, cmc_top_k=(top_n,), precision_top_k=(), map_top_k=())
    reachable = deep.gt[:, :top_n].any(dim=1)
    before = plain.result.unreduced[OVERALL]["cmc"][1]  # type: ignore[union-attr]
    after = with_pp.result.unreduced[OVERALL]["cmc"][1]  # type: ignore[union-attr]
    assert bool((after[reachable] == 1).all())
    assert bool((before[reachable] == 0).any()), "the data must leave something to lift"
    assert torch.equal(after[~reachable & ~after.isnan()], before[~reachable & ~before.isnan()])
    for name in ("fnmr@fmr", "pcf"):
        assert with_pp.metrics[OVERALL][name] == plain.metrics[OVERALL][name]
    assert with_pp.metrics[OVERALL]["cmc"][1] > plain.metrics[OVERALL]["cmc"][1]


def test_the_figures_show_the_postprocessed_order() -> None:
    data = _data(seed=3)
    n = data["labels"].numel()
    indices = torch.arange(n) * 2 + 5
    by_index = _LabelsByIndex({int(i): int(label) for i, label in zip(indices, data["labels"], strict=True)})
    metric = EmbeddingMetrics(**ASKED, postprocessor=LabelOracle(3), postprocessor_dataset=by_index)
    _feed(metric, data, indices, seed=4)
    metric.compute_metrics()
    result = metric.result
    assert result is not None
    rows = result.retrieved_rows()
    labels = metric.storage["labels"]
    q_labels = labels[result.query_rows]
    # in every row, a positive among the first 3 results comes before every negative among them
    for q in range(rows.shape[0]):
        hits = [bool(labels[int(r)] == q_labels[q]) for r in rows[q, :3].tolist() if r >= 0]
        assert hits == sorted(hits, reverse=True)
    worst = metric.get_worst_queries_ids("cmc/1", 3)
    assert all(float(result.unreduced[OVERALL]["cmc"][1][q]) == 0.0 for q in worst)


def test_an_embeddings_reading_postprocessor_gets_the_gathered_embeddings() -> None:
    data = _data(seed=5)
    n = data["labels"].numel()
    indices = torch.randperm(n * 2, generator=torch.Generator().manual_seed(0))[:n]
    # the "embeddings" the oracle reads: label in column 0 (the search embeddings themselves would not do)
    labelled = data["embeddings"].clone()
    labelled[:, 0] = data["labels"].float()
    oracle = LabelOracle(3, reads="embeddings")
    metric = EmbeddingMetrics(**ASKED, postprocessor=oracle)
    _feed(metric, {**data, "embeddings": labelled}, indices, seed=6)
    metric.compute_metrics()
    sorted_rows = torch.argsort(indices)
    args = (labelled[sorted_rows], data["labels"][sorted_rows], data["is_query"][sorted_rows])
    expected = postprocessed_retrieval_metrics(
        *args, data["is_gallery"][sorted_rows], LabelOracle(3, reads="embeddings"), **ASKED
    )
    assert metric.result is not None
    assert metric.result.flat().keys() == expected.flat().keys()
    for name, value in expected.flat().items():
        got = metric.result.flat()[name]
        assert (math.isnan(got) and math.isnan(value)) or got == value, name


def test_items_postprocessor_needs_a_dataset_and_a_dataset_needs_a_postprocessor() -> None:
    with pytest.raises(ValueError, match="reads dataset items"):
        EmbeddingMetrics(postprocessor=LabelOracle(3))
    with pytest.raises(ValueError, match="without a postprocessor"):
        EmbeddingMetrics(postprocessor_dataset=[1, 2, 3])
    with pytest.raises(TypeError, match="must have process"):
        EmbeddingMetrics(postprocessor=object())  # type: ignore[arg-type]


def test_indices_outside_the_postprocessor_dataset_are_refused() -> None:
    data = _data(seed=7, n=20)
    metric = EmbeddingMetrics(**ASKED, postprocessor=LabelOracle(3), postprocessor_dataset=_LabelsByIndex({0: 1}))
    _feed(metric, data, torch.arange(20) + 100, seed=0)
    with pytest.raises(ValueError, match=r"postprocessor_dataset has 1 items but the metric got dataset indices"):
        metric.compute_metrics()


def test_a_postprocessor_returning_foreign_rows_is_an_error() -> None:
    class Foreign(LabelOracle):
        def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> Any:
            return distances, torch.full_like(retrieved, 10_000)

    data = _data(seed=8, n=30)
    metric = EmbeddingMetrics(**ASKED, postprocessor=Foreign(3, reads="nothing"))
    _feed(metric, data, torch.arange(30), seed=0)
    with pytest.raises(PostprocessingError, match="row ids beyond the 30 rows"):
        metric.compute_metrics()
