"""The per-query helpers on hand-computed cases, fnmr/pcf values, policies, clipping and bad input."""

import math

import numpy as np
import pytest
import torch
from omlcore_metrics.functional import (
    MetricsResult,
    cmc_at_k,
    fnmr_at_fmr,
    map_at_k,
    map_at_r,
    mrr_at_k,
    ndcg_at_k,
    pcf,
    precision_at_k,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)


def gt_rows(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def test_map_examples_from_oml() -> None:
    """Hits at ranks 1, 2, 4 give 11/12; hits at 2, 3 give 7/12 (normalised by hits in the top k)."""
    gt = gt_rows([1, 1, 0, 1, 0], [0, 1, 1, 0, 0])
    assert torch.allclose(map_at_k(gt, 5), torch.tensor([11 / 12, 7 / 12], dtype=torch.double))
    assert map_at_k(gt_rows([0, 0, 0]), 3).tolist() == [0.0]


def test_helpers_on_one_ranking() -> None:
    gt = gt_rows([0, 1, 0, 1, 1, 0])
    n_pos = torch.tensor([4])
    assert cmc_at_k(gt, 1).item() == 0.0
    assert cmc_at_k(gt, 2).item() == 1.0
    assert precision_at_k(gt, n_pos, 5).item() == pytest.approx(3 / 4)  # min(5, 4)
    assert precision_at_k(gt, torch.tensor([2]), 5).item() == pytest.approx(3 / 2)  # OML's formula, unclamped
    assert recall_at_k(gt, n_pos, 4).item() == pytest.approx(2 / 4)
    assert mrr_at_k(gt, 6).item() == pytest.approx(1 / 2)
    assert mrr_at_k(gt, 1).item() == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(6)
    idcg = sum(1 / math.log2(i + 1) for i in range(1, 5))
    assert ndcg_at_k(gt, n_pos, 6).item() == pytest.approx(dcg / idcg)
    assert map_at_r(gt, n_pos).item() == pytest.approx((1 / 2 + 2 / 4) / 4)
    assert r_precision(gt, n_pos).item() == pytest.approx(2 / 4)
    nan = torch.tensor([0])
    assert math.isnan(precision_at_k(gt, nan, 3).item())
    assert math.isnan(map_at_r(gt, nan).item())


def test_fnmr_doctest_values() -> None:
    pos = torch.tensor([0, 0, 1, 1, 2, 2, 5, 5, 9, 9], dtype=torch.float)
    neg = torch.tensor([3, 3, 4, 4, 6, 6, 7, 7, 8, 8], dtype=torch.float)
    out = fnmr_at_fmr(pos, neg, (0.1, 0.5))
    assert out == {0.1: pytest.approx(0.4), 0.5: pytest.approx(0.2)}
    quantiles = [np.quantile(neg.numpy(), f) for f in (0.0, 0.33, 1.0)]
    for f, q in zip((0.0, 0.33, 1.0), quantiles, strict=False):
        assert fnmr_at_fmr(pos, neg, (f,))[f] == pytest.approx(float((pos.numpy() >= q).mean()))


def test_pcf_doctest_and_sklearn() -> None:
    assert pcf(torch.eye(4, 10), (0.5, 1.0)) == {0.5: pytest.approx(0.2), 1.0: pytest.approx(0.5)}
    decomposition = pytest.importorskip("sklearn.decomposition")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 12, generator=g) @ torch.randn(12, 12, generator=g)
    ratios = np.cumsum(decomposition.PCA().fit(x.double().numpy()).explained_variance_ratio_)
    variances = (0.1, 0.5, 0.8, 0.95, 0.99)
    got = pcf(x, variances)
    for r in variances:
        expected = min(int(np.searchsorted(ratios, r, side="right")) + 1, 12) / 12
        assert got[r] == pytest.approx(expected)


def _self_retrieval(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.arange(n) % 3, torch.ones(n, dtype=torch.bool)


def test_result_shape_and_flat_keys() -> None:
    emb, labels, ones = _self_retrieval()
    res = retrieval_metrics(emb, labels, ones, ones, cmc_top_k=(1, 2), categories=["a", "b"] * 6, map_at_r=True)
    assert isinstance(res, MetricsResult)
    flat = res.flat()
    assert {"OVERALL/cmc/1", "OVERALL/cmc/2", "a/cmc/1", "b/map/5", "OVERALL/map_at_r/R"} <= set(flat)
    assert res.unreduced["OVERALL"]["cmc"][1].shape == (12,)
    assert res.unreduced["a"]["cmc"][1].shape == (6,)
    assert res.retrieved.shape == res.distances.shape == res.gt.shape
    rows = res.retrieved_rows()
    assert not bool((rows == res.query_rows[:, None]).any()), "self-matches are removed"
    only = retrieval_metrics(emb, labels, ones, ones, categories=["a", "b"] * 6, return_only_overall=True)
    assert set(only.reduced) == {"OVERALL"}


def test_k_above_gallery_is_clipped_and_keeps_its_key() -> None:
    emb, labels, ones = _self_retrieval()
    with pytest.warns(UserWarning, match="clipped"):
        res = retrieval_metrics(emb, labels, ones, ones, cmc_top_k=(100,), precision_top_k=(), map_top_k=())
    assert res.reduced["OVERALL"]["cmc"][100] == 1.0


def test_no_positive_policies() -> None:
    emb = torch.randn(6, 3)
    labels = [0, 0, 1, 1, 2, 3]  # labels 2 and 3 have a single row: no positive for those queries
    ones = torch.ones(6, dtype=torch.bool)
    with pytest.raises(ValueError, match="no positive"):
        retrieval_metrics(emb, labels, ones, ones, no_positive="raise")
    with pytest.warns(RuntimeWarning, match="left out"):
        skip = retrieval_metrics(emb, labels, ones, ones, cmc_top_k=(5,), no_positive="skip")
    with pytest.warns(RuntimeWarning, match="misses"):
        miss = retrieval_metrics(emb, labels, ones, ones, cmc_top_k=(5,), no_positive="miss")
    assert skip.no_positive_queries.tolist() == [4, 5]
    assert skip.reduced["OVERALL"]["cmc"][5] == 1.0
    assert miss.reduced["OVERALL"]["cmc"][5] == pytest.approx(4 / 6)
    assert math.isnan(skip.unreduced["OVERALL"]["cmc"][5][4].item())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embeddings": torch.tensor([[0.0, math.nan]] * 4)}, ValueError, "NaN or inf"),
        ({"embeddings": torch.tensor([[0.0, math.inf]] * 4)}, ValueError, "NaN or inf"),
        ({"is_query": torch.zeros(4, dtype=torch.bool)}, ValueError, "no queries"),
        ({"is_gallery": torch.zeros(4, dtype=torch.bool)}, ValueError, "no gallery"),
        ({"labels": [0, "a", 0, "a"]}, TypeError, "mixes"),
        ({"labels": [0.5, 1.0, 0.5, 1.0]}, TypeError, "integers or strings"),
        ({"labels": [0, 1, 0]}, ValueError, "expected 4"),
        ({"cmc_top_k": (0,)}, ValueError, "positive int"),
        ({"map_top_k": (1.5,)}, ValueError, "positive int"),
        ({"fmr_vals": (2.0,)}, ValueError, r"\[0, 1\]"),
        ({"pcf_variance": (0.0,)}, ValueError, r"\(0, 1\]"),
        ({"no_positive": "ignore"}, ValueError, "no_positive"),
        ({"backend": "no_such_backend"}, Exception, "no_such_backend"),
        ({"cmc_top_k": (), "precision_top_k": (), "map_top_k": ()}, ValueError, "no metric"),
    ],
)
def test_bad_input_is_reported(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    call: dict[str, object] = {
        "embeddings": torch.randn(4, 2),
        "labels": [0, 1, 0, 1],
        "is_query": torch.ones(4, dtype=torch.bool),
        "is_gallery": torch.ones(4, dtype=torch.bool),
    }
    call.update(kwargs)
    with pytest.raises(error, match=match):
        retrieval_metrics(**call)  # type: ignore[arg-type]


def test_string_labels_and_none_sequences() -> None:
    emb, _, ones = _self_retrieval(6)
    as_int = retrieval_metrics(emb, [0, 1, 0, 1, 0, 1], ones, ones, cmc_top_k=(1,))
    as_str = retrieval_metrics(emb, ["x", "y", "x", "y", "x", "y"], ones, ones, cmc_top_k=(1,), sequence=[None] * 6)
    assert as_int.flat() == as_str.flat()
