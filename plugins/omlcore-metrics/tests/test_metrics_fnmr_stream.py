"""fnmr@fmr's one-pass bracket select against a naive full-matrix reference and the two-pass radix select.

The stream reads its distances from ``TorchKnn.blocks``; with one block covering everything those are the
bits of ``pair_distances`` on the whole matrix, which the reference uses. Module constants are patched so
that small data goes through the sampled brackets (and, on purpose, through brackets that miss).
"""

import math
from typing import Any

import numpy as np
import pytest
import torch
from omlcore_metrics import functional
from omlcore_metrics.functional import retrieval_metrics
from omlcore_metrics.knn import pair_distances

FMRS = (0.0, 0.01, 0.1, 0.5, 1.0)


def make_case(seed: int, n_labels: int, n: int = 500, dim: int = 8) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    labels = [int(x) for x in rng.integers(0, n_labels, n)]
    emb = torch.from_numpy(rng.normal(size=(n, dim))).float()
    emb[3] = emb[7]  # exact ties among the distances
    return {
        "emb": emb,
        "labels": labels,
        "is_query": [bool(x) for x in rng.random(n) < 0.7],
        "is_gallery": [bool(x) for x in rng.random(n) < 0.8],
        "sequence": [int(x) for x in rng.integers(0, n // 3, n)] if seed % 2 else None,
        "ignore": [[int(j) for j in rng.integers(0, n, 3)] for _ in range(n)] if seed % 3 == 0 else None,
        "categories": [f"c{int(x)}" for x in rng.integers(0, 3, n)],
    }


def naive_fnmr(case: dict[str, Any], metric: str) -> dict[str, dict[float, float]]:
    """Every admissible pair's float32 distance from one pair_distances call; numpy quantiles per group."""
    emb, labels = case["emb"], np.asarray(case["labels"])
    q = np.flatnonzero(case["is_query"])
    g = np.flatnonzero(case["is_gallery"])
    dist = pair_distances(emb[torch.from_numpy(q)], emb[torch.from_numpy(g)], metric).double().numpy()
    ok = q[:, None] != g[None, :]
    if case["sequence"] is not None:
        seq = np.asarray(case["sequence"])
        ok &= seq[q][:, None] != seq[g][None, :]
    if case["ignore"] is not None:
        for i, row in enumerate(q):
            ok[i, np.isin(g, case["ignore"][row])] = False
    same = labels[q][:, None] == labels[g][None, :]
    cats = np.asarray(case["categories"])[q]
    out: dict[str, dict[float, float]] = {}
    for name in ["OVERALL", *sorted(set(cats))]:
        rows = np.ones(len(q), dtype=bool) if name == "OVERALL" else cats == name
        pos, neg = dist[rows][(same & ok)[rows]], dist[rows][(~same & ok)[rows]]
        out[name] = {f: float(np.mean(pos >= np.quantile(neg, f))) if len(pos) and len(neg) else math.nan for f in FMRS}
    return out


def run(case: dict[str, Any], metric: str) -> dict[str, dict[float, float]]:
    from omlcore_metrics.knn import TorchKnn

    res = retrieval_metrics(
        case["emb"], case["labels"], case["is_query"], case["is_gallery"], sequence=case["sequence"],
        ignore=case["ignore"], categories=case["categories"], cmc_top_k=(1,), precision_top_k=(), map_top_k=(),
        fmr_vals=FMRS, no_positive="miss", backend=TorchKnn(metric),  # type: ignore[arg-type]
    )  # fmt: skip
    return {group: dict(values["fnmr@fmr"]) for group, values in res.reduced.items()}


@pytest.fixture
def radix_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = functional._stream_fnmr_radix

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(functional, "_stream_fnmr_radix", spy)
    return calls


def assert_same(got: dict[str, dict[float, float]], want: dict[str, dict[float, float]]) -> None:
    assert set(got) == set(want)
    for group, values in want.items():
        for f, v in values.items():
            assert got[group][f] == pytest.approx(v, abs=1e-12, nan_ok=True), (group, f)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize(("seed", "n_labels"), [(0, 150), (1, 4), (2, 60), (3, 2)])
def test_sampled_brackets_match_the_reference(
    seed: int, n_labels: int, metric: str, monkeypatch: pytest.MonkeyPatch, radix_calls: list[int]
) -> None:
    """Sampling forced on (sparse labels: positives as pairs; 2-4 labels: positives as a block mask)."""
    monkeypatch.setattr(functional, "_FNMR_SMALL", 0)
    monkeypatch.setattr(functional, "_FNMR_ROWS", 200)
    monkeypatch.setattr(functional, "_FNMR_COLS", 150)
    monkeypatch.setattr(functional, "_FNMR_PAD", 4)
    case = make_case(seed, n_labels)
    assert_same(run(case, metric), naive_fnmr(case, metric))
    assert radix_calls == [], "wide enough brackets should not need the radix select"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_missed_brackets_fall_back_to_the_radix_select(
    metric: str, monkeypatch: pytest.MonkeyPatch, radix_calls: list[int]
) -> None:
    monkeypatch.setattr(functional, "_FNMR_SMALL", 0)
    monkeypatch.setattr(functional, "_FNMR_ROWS", 8)
    monkeypatch.setattr(functional, "_FNMR_COLS", 8)
    monkeypatch.setattr(functional, "_FNMR_Z", 0.0)
    monkeypatch.setattr(functional, "_FNMR_PAD", 0)
    case = make_case(5, 40)
    assert_same(run(case, metric), naive_fnmr(case, metric))
    assert radix_calls, "zero-width brackets from an 8 x 8 grid should have missed"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_too_many_kept_values_use_the_radix_select(monkeypatch: pytest.MonkeyPatch, radix_calls: list[int]) -> None:
    monkeypatch.setattr(functional, "_FNMR_KEEP", 0)
    case = make_case(6, 30)
    assert_same(run(case, "l2"), naive_fnmr(case, "l2"))
    assert radix_calls == [1]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_small_groups_keep_everything_without_the_radix_select(seed: int, radix_calls: list[int]) -> None:
    case = make_case(seed, 50)
    assert_same(run(case, "l2"), naive_fnmr(case, "l2"))
    assert radix_calls == []
