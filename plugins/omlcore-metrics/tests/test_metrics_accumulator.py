"""EmbeddingMetrics: OML's lifecycle, the RetrievalMetric protocol (conformance kit) and the registry."""

from typing import Any

import pytest
import torch
from omlcore_metrics.accumulator import EmbeddingMetrics, flatten_metrics
from omlcore_metrics.functional import retrieval_metrics

import omlcore
from omlcore.protocols import RetrievalMetric
from omlcore.schemas import MetricsSection
from omlcore.testing.conformance import RetrievalMetricConformance


class TestConformance(RetrievalMetricConformance):
    kind_name = "retrieval"
    args = {"cmc_top_k": [1, 5], "precision_top_k": [3], "map_top_k": [5], "fmr_vals": [0.1]}
    expected_keys = ("OVERALL/cmc/1", "OVERALL/cmc/5", "OVERALL/precision/3", "OVERALL/map/5", "OVERALL/fnmr@fmr/0.1")


class TestConformanceWithCategories(RetrievalMetricConformance):
    kind_name = "retrieval"
    args = {"cmc_top_k": [1], "categories_key": "category"}
    expected_keys = ("OVERALL/cmc/1", "even/cmc/1", "odd/cmc/1")

    @pytest.fixture
    def metric_data(self) -> dict[str, Any]:
        data = super().metric_data.__wrapped__(self)  # type: ignore[attr-defined]
        data["categories"] = ["even" if int(label) % 2 == 0 else "odd" for label in data["labels"]]
        return data


def make_data(n_labels: int = 5, per_label: int = 4, dim: int = 6, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_labels).repeat_interleave(per_label)
    emb = 2.0 * torch.randn(n_labels, dim, generator=g)[labels] + torch.randn(labels.numel(), dim, generator=g)
    is_query = torch.arange(labels.numel()) % 2 == 0
    return {
        "embeddings": emb,
        "labels": labels,
        "is_query": is_query,
        "is_gallery": torch.ones_like(is_query),
        "idx": torch.arange(labels.numel()),
        "categories": ["a" if int(x) < 2 else "b" for x in labels],
        "paths": [f"img_{i}.png" for i in range(labels.numel())],
    }


def take(data: dict[str, Any], index: list[int]) -> dict[str, Any]:
    t = torch.tensor(index)
    return {k: v[t] if isinstance(v, torch.Tensor) else [v[i] for i in index] for k, v in data.items()}


ARGS: dict[str, Any] = {
    "cmc_top_k": (1, 3),
    "precision_top_k": (3,),
    "map_top_k": (3,),
    "fmr_vals": (0.2,),
    "pcf_variance": (0.5,),
}


def test_lifecycle_matches_the_functional_result() -> None:
    data = make_data()
    n = len(data["labels"])
    metric = EmbeddingMetrics(extra_keys=("paths",), **ARGS)
    metric.setup(num_samples=n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    for start in range(0, n, 6):
        part = order[start : start + 6]
        batch = take(data, part)
        indices = batch.pop("idx")
        metric.update_data(batch, indices)
    got = metric.compute_metrics()
    expected = retrieval_metrics(
        data["embeddings"], data["labels"], data["is_query"], data["is_gallery"], categories=data["categories"], **ARGS
    )
    assert flatten_metrics(got) == pytest.approx(expected.flat())
    assert metric.metrics is got
    assert set(metric.metrics) == {"OVERALL", "a", "b"}
    assert metric.metrics_unreduced is not None
    torch.testing.assert_close(metric.metrics_unreduced["OVERALL"]["cmc"][1], expected.unreduced["OVERALL"]["cmc"][1])
    assert metric.storage["paths"] == data["paths"]  # restored to dataset order
    assert metric.compute() == pytest.approx(expected.flat())


def test_setup_count_is_enforced() -> None:
    data = make_data()
    metric = EmbeddingMetrics(**ARGS)
    metric.setup(num_samples=len(data["labels"]) + 1)
    metric.update_data(data)
    with pytest.raises(RuntimeError, match="expected 21 distinct samples"):
        metric.compute_metrics()


def test_repeated_indices_count_once() -> None:
    data = make_data()
    metric = EmbeddingMetrics(**ARGS)
    metric.setup(num_samples=len(data["labels"]))
    metric.update(data)
    metric.update(take(data, [0, 1, 2]))  # padding repeats the first items
    reference = EmbeddingMetrics(**ARGS)
    reference.update(data)
    assert metric.compute() == reference.compute()


def test_no_data_and_inconsistent_batches_fail_clearly() -> None:
    metric = EmbeddingMetrics()
    with pytest.raises(RuntimeError, match="no data"):
        metric.compute()
    data = make_data()
    metric.update(take(data, [0, 1]))
    without_idx = take(data, [2, 3])
    del without_idx["idx"]
    with pytest.raises(ValueError, match="dataset indices"):
        metric.update(without_idx)
    with pytest.raises(KeyError, match="labels"):
        metric.update({"embeddings": data["embeddings"]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cmc_top_k": (0,)}, "positive integer"),
        ({"map_top_k": (-3,)}, "positive integer"),
        ({"fmr_vals": (1.5,)}, r"\[0, 1\]"),
        ({"pcf_variance": (0.0,)}, r"\(0, 1\]"),
        ({"cmc_top_k": (), "precision_top_k": (), "map_top_k": (), "pcf_variance": ()}, "no metric"),
        ({"no_positive": "ignore"}, "no_positive"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddingMetrics(**kwargs)


def test_sequence_minus_one_means_none() -> None:
    data = make_data()
    data["sequence"] = torch.full((len(data["labels"]),), -1)
    data["sequence"][:2] = 7  # rows 0 and 1 (a query and its positive) share a sequence
    metric = EmbeddingMetrics(**ARGS)
    metric.update(data)
    got = metric.compute()
    seq = [7, 7] + [None] * (len(data["labels"]) - 2)
    expected = retrieval_metrics(
        data["embeddings"], data["labels"], data["is_query"], data["is_gallery"], categories=data["categories"],
        sequence=seq, **ARGS,
    ).flat()  # fmt: skip
    assert got == pytest.approx(expected)


def test_built_from_the_config_section() -> None:
    section = MetricsSection(cmc_top_k=[1, 2], categories_key="category").model_dump()
    metric = omlcore.build("metric", {"name": "retrieval", "args": section})
    assert isinstance(metric, RetrievalMetric)
    data = make_data()
    metric.update(data)  # batches carry "categories"; the config names the column "category"
    result = metric.compute()
    assert {"OVERALL/cmc/2", "a/cmc/2", "b/pcf/0.5"} <= set(result)


def test_only_overall_and_worst_queries() -> None:
    data = make_data()
    metric = EmbeddingMetrics(return_only_overall_category=True, **ARGS)
    metric.update(data)
    assert set(metric.compute_metrics()) == {"OVERALL"}
    worst = metric.get_worst_queries_ids("cmc@1", 3)
    values = metric.metrics_unreduced["OVERALL"]["cmc"][1]  # type: ignore[index]
    assert len(worst) == 3
    assert all(values[w] <= values[i] for w in worst for i in range(len(values)) if i not in worst)
    with pytest.raises(ValueError, match="available: cmc/1, cmc/3"):
        metric.get_worst_queries_ids("recall/1", 3)
    metric.update(data)
    with pytest.raises(RuntimeError, match="has not run"):
        metric.get_worst_queries_ids("cmc/1", 1)
