"""Metrics after re-ranking, computed with omlcore-metrics' functions: neutral re-rankers change nothing,
an oracle lifts cmc@1 exactly where it can, and the work depends on Q x top_n, not on the gallery size."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from omlcore_metrics import retrieval_metrics
from omlcore_metrics.functional import OVERALL, MetricsResult
from omlcore_reranking import (
    AdaptiveThresholding,
    ConstantThresholding,
    LinearSiamese,
    PairwiseEmbeddingsReranker,
    RerankingError,
    TrivialDistanceSiamese,
    rerank_result,
    reranked_retrieval_metrics,
)
from reranking_helpers import CountingModel, LabelOracle, integer_embeddings
from torch import Tensor

METRICS: dict[str, Any] = {
    "cmc_top_k": (1, 3, 5),
    "precision_top_k": (3, 5),
    "map_top_k": (5,),
    "recall_top_k": (4,),
    "mrr_top_k": (5,),
    "ndcg_top_k": (5,),
    "map_at_r": True,
    "r_precision": True,
    "fmr_vals": (0.1, 0.5),
    "pcf_variance": (0.5,),
}


def _data(n: int = 120, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    role = torch.randint(0, 3, (n,), generator=g)  # 0: query and gallery, 1: query only, 2: gallery only
    return {
        "embeddings": integer_embeddings(n, 6, seed),
        "labels": torch.randint(0, 12, (n,), generator=g),
        "is_query": role <= 1,
        "is_gallery": role != 1,
        "categories": ["even" if i % 2 == 0 else "odd" for i in range(n)],
        "sequence": [None if i % 5 else i // 10 for i in range(n)],
    }


def _same(a: MetricsResult, b: MetricsResult) -> None:
    assert a.flat().keys() == b.flat().keys()
    for name, value in a.flat().items():
        other = b.flat()[name]
        assert (math.isnan(value) and math.isnan(other)) or value == other, name
    for group, metrics in a.unreduced.items():
        for metric, per_key in metrics.items():
            for key, values in per_key.items():
                torch.testing.assert_close(values, b.unreduced[group][metric][key], equal_nan=True, rtol=0, atol=0)
    assert torch.equal(a.retrieved, b.retrieved[:, : a.retrieved.shape[1]])


@pytest.mark.parametrize("top_n", [2, 5, 9, 500])
@pytest.mark.parametrize("model", ["trivial", "linear_identity"])
def test_a_neutral_reranker_leaves_every_metric_unchanged(top_n: int, model: str) -> None:
    data = _data()
    pairwise = TrivialDistanceSiamese() if model == "trivial" else LinearSiamese(6, identity_init=True)
    pp = PairwiseEmbeddingsReranker(top_n=top_n, pairwise_model=pairwise, batch_size=7)
    kwargs = {**METRICS, "categories": data["categories"], "sequence": data["sequence"]}
    plain = retrieval_metrics(data["embeddings"], data["labels"], data["is_query"], data["is_gallery"], **kwargs)
    after = reranked_retrieval_metrics(
        data["embeddings"], data["labels"], data["is_query"], data["is_gallery"], pp, **kwargs
    )
    _same(plain, after)
    assert "even" in after.reduced
    assert after.reduced[OVERALL]["fnmr@fmr"] == plain.reduced[OVERALL]["fnmr@fmr"]


def _top_n_has_positive(result: MetricsResult, top_n: int) -> Tensor:
    return result.gt[:, :top_n].any(dim=1)


@pytest.mark.parametrize("top_n", [2, 4, 7])
def test_an_oracle_lifts_cmc_at_1_exactly_where_a_positive_is_in_the_top_n(top_n: int) -> None:
    data = _data(seed=1)
    labels_as_inputs = data["labels"].float()[:, None]
    pp = PairwiseEmbeddingsReranker(top_n=top_n, pairwise_model=LabelOracle())
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    # depth 10 for the "reachable" mask below; the metrics themselves need only depth 5
    deep = retrieval_metrics(*args, cmc_top_k=(10,), precision_top_k=(), map_top_k=())
    reachable = _top_n_has_positive(deep, top_n)
    plain = retrieval_metrics(*args, **METRICS)
    after = reranked_retrieval_metrics(*args, pp, dataset=labels_as_inputs, **METRICS)
    cmc1_before = plain.unreduced[OVERALL]["cmc"][1]
    cmc1_after = after.unreduced[OVERALL]["cmc"][1]
    assert bool((cmc1_after[reachable] == 1).all())
    assert bool((cmc1_before[reachable] == 0).any()), "the data must leave something to lift"
    others = ~reachable
    for metric, per_key in plain.unreduced[OVERALL].items():
        for key, values in per_key.items():
            torch.testing.assert_close(
                after.unreduced[OVERALL][metric][key][others], values[others], equal_nan=True, rtol=0, atol=0
            )
    # the re-ranked positives come first, in their former order; then the re-ranked negatives
    for q in reachable.nonzero().flatten()[:10].tolist():
        before_top = deep.retrieved[q, :top_n]
        pos = before_top[deep.gt[q, :top_n]].tolist()
        neg = before_top[~deep.gt[q, :top_n]].tolist()
        assert after.retrieved[q, :top_n].tolist() == pos + neg


def test_top_n_deeper_than_the_metrics_is_searched_and_not_reported() -> None:
    data = _data(seed=2)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    pp = PairwiseEmbeddingsReranker(top_n=8, pairwise_model=LabelOracle())
    after = reranked_retrieval_metrics(
        *args, pp, dataset=data["labels"].float()[:, None], cmc_top_k=(1,), precision_top_k=(), map_top_k=()
    )
    assert list(after.flat()) == ["OVERALL/cmc/1"]
    deep = retrieval_metrics(*args, cmc_top_k=(8,), precision_top_k=(), map_top_k=())
    torch.testing.assert_close(after.unreduced[OVERALL]["cmc"][1], deep.unreduced[OVERALL]["cmc"][8])


@pytest.mark.parametrize("n_gallery", [10, 100, 1000, 4000])
def test_pairs_scored_grow_with_queries_times_top_n_not_with_the_gallery(n_gallery: int) -> None:
    n_queries, top_n = 30, 6
    emb = torch.randn(n_queries + n_gallery, 8, generator=torch.Generator().manual_seed(n_gallery))
    labels = torch.arange(n_queries + n_gallery) % 7
    is_query = torch.arange(n_queries + n_gallery) < n_queries
    model = CountingModel()
    pp = PairwiseEmbeddingsReranker(top_n=top_n, pairwise_model=model, batch_size=64)
    reranked_retrieval_metrics(emb, labels, is_query, ~is_query, pp, cmc_top_k=(1,), precision_top_k=(), map_top_k=())
    assert model.pairs == n_queries * min(top_n, n_gallery)
    assert model.calls == math.ceil(n_queries * min(top_n, n_gallery) / 64)


def test_query_chunks_give_the_same_result() -> None:
    data = _data(seed=3)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    pp = PairwiseEmbeddingsReranker(top_n=4, pairwise_model=LabelOracle())
    dataset = data["labels"].float()[:, None]
    whole = reranked_retrieval_metrics(*args, pp, dataset=dataset, **METRICS)
    chunked = reranked_retrieval_metrics(*args, pp, dataset=dataset, query_chunk=7, **METRICS)
    _same(whole, chunked)


def test_thresholding_in_the_metrics() -> None:
    data = _data(seed=4)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    nothing = reranked_retrieval_metrics(*args, ConstantThresholding(th=-1.0), cmc_top_k=(5,), map_top_k=(5,))
    assert nothing.reduced[OVERALL]["cmc"][5] == 0.0
    assert bool((nothing.retrieved == -1).all())
    everything = reranked_retrieval_metrics(*args, ConstantThresholding(th=1e9), cmc_top_k=(5,), map_top_k=(5,))
    _same(retrieval_metrics(*args, cmc_top_k=(5,), map_top_k=(5,)), everything)
    adaptive = AdaptiveThresholding(n_std=0.5)
    after = reranked_retrieval_metrics(*args, adaptive, cmc_top_k=(5,), map_top_k=(5,))
    plain = retrieval_metrics(*args, cmc_top_k=(5,), map_top_k=(5,))
    kept = adaptive.keep_counts(plain.distances, plain.retrieved)
    assert torch.equal((after.retrieved >= 0).sum(dim=1), kept)
    assert bool((after.unreduced[OVERALL]["cmc"][5] <= plain.unreduced[OVERALL]["cmc"][5]).all())


@pytest.mark.parametrize("policy", ["skip", "miss"])
def test_queries_without_positives_keep_their_policy(policy: str) -> None:
    emb = integer_embeddings(30, 4, 5)
    labels = torch.arange(30) % 6
    labels[0] = 99  # a query without any positive
    is_query = torch.ones(30, dtype=torch.bool)
    pp = PairwiseEmbeddingsReranker(top_n=3, pairwise_model=TrivialDistanceSiamese())
    with pytest.warns(RuntimeWarning, match="no positive"):
        plain = retrieval_metrics(emb, labels, is_query, is_query, no_positive=policy)
    with pytest.warns(RuntimeWarning, match="no positive"):
        after = reranked_retrieval_metrics(emb, labels, is_query, is_query, pp, no_positive=policy)
    _same(plain, after)


def test_a_too_shallow_result_is_refused() -> None:
    data = _data(seed=6)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    shallow = retrieval_metrics(*args, cmc_top_k=(1,), precision_top_k=(), map_top_k=())
    pp = PairwiseEmbeddingsReranker(top_n=4, pairwise_model=TrivialDistanceSiamese())
    with pytest.raises(RerankingError, match=r"holds 1 neighbours per query but the postprocessor re-ranks top_n=4"):
        rerank_result(shallow, data["labels"], pp, data["embeddings"])


def test_string_labels_work() -> None:
    data = _data(seed=7)
    names = [f"item-{int(v)}" for v in data["labels"]]
    args = (data["embeddings"], names, data["is_query"], data["is_gallery"])
    pp = PairwiseEmbeddingsReranker(top_n=3, pairwise_model=TrivialDistanceSiamese())
    _same(retrieval_metrics(*args), reranked_retrieval_metrics(*args, pp))


def test_an_items_reranker_needs_its_dataset() -> None:
    from omlcore_reranking import PairwiseImagesReranker

    data = _data(seed=8)
    args = (data["embeddings"], data["labels"], data["is_query"], data["is_gallery"])
    pp = PairwiseImagesReranker(top_n=3, pairwise_model=TrivialDistanceSiamese())
    with pytest.raises(ValueError, match="reads dataset items"):
        reranked_retrieval_metrics(*args, pp)


# ---- through omlcore-metrics' EmbeddingMetrics (what `omlcore validate` uses) ------------------------------


@pytest.mark.parametrize("top_n", [2, 7])
def test_embedding_metrics_with_a_trivial_reranker_equal_those_without(top_n: int) -> None:
    from omlcore_metrics import EmbeddingMetrics

    from omlcore.registry import build

    data = _data(seed=11)
    n = data["labels"].numel()
    indices = torch.randperm(3 * n, generator=torch.Generator().manual_seed(1))[:n]
    asked = {k: v for k, v in METRICS.items() if k != "map_at_r" and k != "r_precision"}
    # built from a config, as a pipeline does: the postprocessor is a nested {name, args} slot
    spec = {
        "name": "pairwise_embeddings",
        "args": {"top_n": top_n, "pairwise_model": {"name": "trivial_distance_siamese"}},
    }
    with_pp = build("metric", {"name": "retrieval", "args": {**asked, "postprocessor": spec}})
    assert isinstance(with_pp, EmbeddingMetrics)
    assert isinstance(with_pp.postprocessor, PairwiseEmbeddingsReranker)
    plain = EmbeddingMetrics(**asked)
    for metric, seed in ((with_pp, 2), (plain, 3)):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for chunk in order.split(16):
            batch = {"embeddings": data["embeddings"][chunk], "labels": data["labels"][chunk]}
            batch |= {"is_query": data["is_query"][chunk], "is_gallery": data["is_gallery"][chunk]}
            batch["categories"] = [data["categories"][i] for i in chunk.tolist()]
            metric.update_data(batch, indices=indices[chunk])
        metric.compute_metrics()
    assert with_pp.result is not None
    assert plain.result is not None
    _same(plain.result, with_pp.result)
    assert with_pp.compute() == plain.compute()


def test_omlcore_evaluate_with_a_trivial_reranker_gives_the_same_json(tmp_path: Any) -> None:
    import json

    import numpy as np

    from omlcore.cli import main

    data = _data(seed=12, n=40)
    lines = ["label,path,split,is_query,is_gallery"]
    for i in range(40):
        q, g = bool(data["is_query"][i]), bool(data["is_gallery"][i])
        lines.append(f"{int(data['labels'][i])},img_{i}.png,validation,{q},{g}")
    (tmp_path / "df.csv").write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "emb.npy", data["embeddings"].numpy())
    common = ["evaluate", "--embeddings", str(tmp_path / "emb.npy"), "--csv", str(tmp_path / "df.csv")]
    common += ["--cmc", "1,3", "--map", "3", "--fmr", "0.5"]
    neutral = "{name: pairwise_embeddings, args: {top_n: 4, pairwise_model: {name: trivial_distance_siamese}}}"
    assert main([*common, "--out", str(tmp_path / "plain.json")]) == 0
    assert main([*common, "--postprocessor", neutral, "--out", str(tmp_path / "reranked.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert json.loads((tmp_path / "reranked.json").read_text()) == plain
    assert plain["OVERALL"]["cmc"]["1"] < plain["OVERALL"]["cmc"]["3"]  # something a re-ranker could change
    images = "{name: pairwise_images, args: {top_n: 4, pairwise_model: {name: trivial_distance_siamese}}}"
    assert main([*common, "--postprocessor", images]) == 2
