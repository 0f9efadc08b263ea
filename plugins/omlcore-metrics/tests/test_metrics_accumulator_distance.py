"""EmbeddingMetrics draws missed ground truths with the distance of the backend that computed the metrics."""

from typing import Any

import pytest
import torch
from omlcore_metrics import accumulator
from omlcore_metrics.accumulator import EmbeddingMetrics
from omlcore_metrics.knn import TorchKnn


def _batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(3)
    return {
        "embeddings": torch.randn(4, 5, generator=g)[labels] + 0.1 * torch.randn(12, 5, generator=g),
        "labels": labels,
        "is_query": torch.ones(12, dtype=torch.bool),
        "is_gallery": torch.ones(12, dtype=torch.bool),
        "idx": torch.arange(12),
    }


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_report_distance_is_the_named_backends_metric(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend given by name whose metric is not Euclidean: the report uses that metric, not "l2"."""
    built: list[str] = []

    def resolve(name: Any) -> TorchKnn:
        built.append(name)
        return TorchKnn(metric)  # type: ignore[arg-type]

    monkeypatch.setattr(accumulator, "_resolve_backend", resolve)
    m = EmbeddingMetrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=(), pcf_variance=(), backend="my_knn")
    m.setup(12)
    m.update_data(_batch())
    m.compute_metrics()
    assert built == ["my_knn"]
    assert m.report_data().distance == metric
