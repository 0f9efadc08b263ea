"""Exactness: a hand-computed 6-query case and randomised comparisons with naive full-matrix references."""

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from omlcore_metrics.functional import retrieval_metrics

KS = (1, 2, 3, 4, 5, 10)

# 1-D points with labels [0, 0, 0, 0, 1, 1], every row a query and a gallery item (1 vs rest).
# Rankings (gallery row: distance), worked out by hand; ties go to the smaller row:
#   q0 @0:  r1 1 +, r4 2 -, r2 3 +, r3 7 +, r5 12 -    n_pos = 3
#   q1 @1:  r0 1 +, r4 1 -, r2 2 +, r3 6 +, r5 11 -    n_pos = 3 (r0/r4 tie)
#   q2 @3:  r4 1 -, r1 2 +, r0 3 +, r3 4 +, r5 9 -     n_pos = 3
#   q3 @7:  r2 4 +, r4 5 -, r5 5 -, r1 6 +, r0 7 +     n_pos = 3
#   q4 @2:  r1 1 -, r2 1 -, r0 2 -, r3 5 -, r5 10 +    n_pos = 1
#   q5 @12: r3 5 -, r2 9 -, r4 10 +, r1 11 -, r0 12 -  n_pos = 1
POINTS = [0.0, 1.0, 3.0, 7.0, 2.0, 12.0]
LABELS = [0, 0, 0, 0, 1, 1]
EXPECTED_CMC = [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 1, 1, 1]]
EXPECTED_PRECISION = [
    [1, 1 / 2, 2 / 3, 1, 1],
    [1, 1 / 2, 2 / 3, 1, 1],
    [0, 1 / 2, 2 / 3, 1, 1],
    [1, 1 / 2, 1 / 3, 2 / 3, 1],
    [0, 0, 0, 0, 1],
    [0, 0, 1, 1, 1],
]
EXPECTED_MAP = [
    [1, 1, 5 / 6, 29 / 36, 29 / 36],
    [1, 1, 5 / 6, 29 / 36, 29 / 36],
    [0, 1 / 2, 7 / 12, 23 / 36, 23 / 36],
    [1, 1, 1, 3 / 4, 0.7],
    [0, 0, 0, 0, 1 / 5],
    [0, 0, 1 / 3, 1 / 3, 1 / 3],
]


def test_six_query_hand_computed_case() -> None:
    emb = torch.tensor(POINTS).view(-1, 1)
    ones = torch.ones(6, dtype=torch.bool)
    with pytest.warns(UserWarning, match="clipped"):
        res = retrieval_metrics(emb, LABELS, ones, ones, cmc_top_k=KS, precision_top_k=KS, map_top_k=KS)
    unreduced = res.unreduced["OVERALL"]
    for j, k in enumerate(KS):
        col = min(j, 4)
        for name, expected in (("cmc", EXPECTED_CMC), ("precision", EXPECTED_PRECISION), ("map", EXPECTED_MAP)):
            want = torch.tensor([row[col] for row in expected], dtype=torch.double)
            assert torch.allclose(unreduced[name][k], want), (name, k)
            assert res.reduced["OVERALL"][name][k] == pytest.approx(float(want.mean()))
    assert res.retrieved[1, :2].tolist() == [0, 4], "tie at distance 1 goes to the smaller gallery row"


# ---------------------------------------------------------------------------------------------------
# Naive references: a full float64 distance matrix and plain Python loops.
# ---------------------------------------------------------------------------------------------------


def naive(
    emb: torch.Tensor,
    labels: list[int],
    is_query: list[bool],
    is_gallery: list[bool],
    sequence: list[int] | None,
    ignore: list[list[int]] | None,
    ks: tuple[int, ...],
    fmrs: tuple[float, ...],
) -> dict[str, Any]:
    n = len(labels)
    dist = torch.cdist(emb.double(), emb.double()).numpy()
    q_rows = [i for i in range(n) if is_query[i]]
    g_rows = [j for j in range(n) if is_gallery[j]]
    out: dict[str, dict[Any, list[float]]] = {
        m: {k: [] for k in ks} for m in ("cmc", "precision", "map", "recall", "mrr", "ndcg")
    }
    out["map_at_r"] = {"R": []}
    out["r_precision"] = {"R": []}
    pos_d: list[float] = []
    neg_d: list[float] = []
    for i in q_rows:
        allowed = [
            j
            for j in g_rows
            if j != i and not (sequence is not None and sequence[i] == sequence[j]) and not (ignore and j in ignore[i])
        ]
        ranking = sorted(allowed, key=lambda j: (dist[i, j], j))
        rel = [labels[j] == labels[i] for j in ranking]
        for j, r in zip(ranking, rel, strict=False):
            (pos_d if r else neg_d).append(dist[i, j])
        n_pos = sum(rel)
        if n_pos == 0:
            continue  # contributes pairs to fnmr only
        for k in ks:
            top = rel[:k]
            hits = sum(top)
            out["cmc"][k].append(float(hits > 0))
            out["precision"][k].append(hits / min(k, n_pos))
            ap = sum(sum(top[: r + 1]) / (r + 1) for r in range(len(top)) if top[r])
            out["map"][k].append(ap / hits if hits else 0.0)
            out["recall"][k].append(hits / n_pos)
            first = next((r for r in range(len(top)) if top[r]), None)
            out["mrr"][k].append(0.0 if first is None else 1 / (first + 1))
            dcg = sum(1 / math.log2(r + 2) for r in range(len(top)) if top[r])
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, n_pos)))
            out["ndcg"][k].append(dcg / idcg)
        top_r = rel[:n_pos]
        out["map_at_r"]["R"].append(sum(sum(top_r[: r + 1]) / (r + 1) for r in range(n_pos) if top_r[r]) / n_pos)
        out["r_precision"]["R"].append(sum(top_r) / n_pos)
    result: dict[str, Any] = {m: {k: float(np.mean(v)) for k, v in d.items()} for m, d in out.items()}
    result["fnmr@fmr"] = {f: float(np.mean(np.asarray(pos_d) >= np.quantile(np.asarray(neg_d), f))) for f in fmrs}
    return result


def random_case(seed: int, layout: str) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n_labels = int(rng.integers(5, 10))
    labels = [lab for lab in range(n_labels) for _ in range(int(rng.integers(3, 10)))]
    n = len(labels)
    emb = torch.from_numpy(rng.normal(size=(n, 5)))
    if layout == "overlap":
        is_query = [True] * n
        is_gallery = [True] * n
    elif layout == "partial":
        is_query = list(rng.random(n) < 0.6)
        is_gallery = list(rng.random(n) < 0.8)
    else:  # separate: the first two rows of every label are queries, the rest gallery
        first: dict[int, int] = {}
        is_query = []
        for lab in labels:
            first[lab] = first.get(lab, 0) + 1
            is_query.append(first[lab] <= 2)
        is_gallery = [not q for q in is_query]
    sequence = [int(s) for s in rng.integers(0, n // 2, n)] if seed % 2 else None
    ignore = (
        [[int(j) for j in rng.integers(0, n, int(rng.integers(0, 3)))] for _ in range(n)] if seed % 3 == 0 else None
    )
    return {
        "emb": emb,
        "labels": labels,
        "is_query": is_query,
        "is_gallery": is_gallery,
        "sequence": sequence,
        "ignore": ignore,
    }


@pytest.mark.parametrize("layout", ["overlap", "partial", "separate"])
@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_naive_reference(seed: int, layout: str) -> None:
    case = random_case(seed, layout)
    ks = (1, 3, 5)
    fmrs = (0.05, 0.3, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = retrieval_metrics(
            case["emb"], case["labels"], case["is_query"], case["is_gallery"], sequence=case["sequence"],
            ignore=case["ignore"], cmc_top_k=ks, precision_top_k=ks, map_top_k=ks, recall_top_k=ks, mrr_top_k=ks,
            ndcg_top_k=ks, map_at_r=True, r_precision=True, fmr_vals=fmrs, no_positive="skip",
        )  # fmt: skip
    # The naive reference scores only queries with positives (the "skip" policy).
    keep = [bool(p) for p in (res.n_positives > 0).tolist()]
    q_rows = res.query_rows.tolist()
    is_query = [False] * len(case["labels"])
    for r, kept in zip(q_rows, keep, strict=False):
        is_query[r] = kept
    if not any(is_query):
        pytest.skip("no query with a positive in this draw")
    ref = naive(case["emb"], case["labels"], is_query, case["is_gallery"], case["sequence"], case["ignore"], ks, fmrs)
    for metric, values in ref.items():
        if metric == "fnmr@fmr":
            continue
        for key, want in values.items():
            assert res.reduced["OVERALL"][metric][key] == pytest.approx(want, abs=1e-9), (metric, key)
    # fnmr uses every admissible pair, including those of queries without positives.
    ref_all = naive(
        case["emb"], case["labels"], [r in set(q_rows) for r in range(len(case["labels"]))], case["is_gallery"],
        case["sequence"], case["ignore"], (), fmrs,
    )  # fmt: skip
    for f, want in ref_all["fnmr@fmr"].items():
        assert res.reduced["OVERALL"]["fnmr@fmr"][f] == pytest.approx(want, abs=1e-9), f


def test_categories_equal_metrics_on_the_category_queries() -> None:
    case = random_case(4, "overlap")
    n = len(case["labels"])
    cats = ["even" if i % 2 == 0 else "odd" for i in range(n)]
    kw: dict[str, Any] = {"cmc_top_k": (1, 3), "map_top_k": (3,), "fmr_vals": (0.2,), "no_positive": "miss"}
    res = retrieval_metrics(case["emb"], case["labels"], case["is_query"], case["is_gallery"], categories=cats, **kw)
    for name, parity in (("even", 0), ("odd", 1)):
        only = [i % 2 == parity for i in range(n)]
        sub = retrieval_metrics(case["emb"], case["labels"], only, case["is_gallery"], **kw)
        for metric in ("cmc", "map", "fnmr@fmr"):
            assert res.reduced[name][metric] == pytest.approx(sub.reduced["OVERALL"][metric])


@pytest.mark.filterwarnings("ignore:.*no positive:RuntimeWarning")
def test_invariant_to_chunks_and_gallery_permutation() -> None:
    from omlcore_metrics.knn import TorchKnn

    case = random_case(7, "partial")
    kw: dict[str, Any] = {
        "cmc_top_k": (1, 5),
        "map_top_k": (5,),
        "map_at_r": True,
        "fmr_vals": (0.1,),
        "no_positive": "miss",
    }
    base = retrieval_metrics(
        case["emb"], case["labels"], case["is_query"], case["is_gallery"], sequence=case["sequence"], **kw
    )
    small = TorchKnn(query_chunk=3, gallery_chunk=4)
    chunked = retrieval_metrics(
        case["emb"],
        case["labels"],
        case["is_query"],
        case["is_gallery"],
        sequence=case["sequence"],
        backend=small,
        **kw,
    )
    assert chunked.flat() == base.flat()
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(case["labels"])))

    def take(values: list[Any]) -> list[Any]:
        return [values[i] for i in perm.tolist()]

    permuted = retrieval_metrics(
        case["emb"][perm], take(case["labels"]), take(case["is_query"]), take(case["is_gallery"]),
        sequence=take(case["sequence"]), **kw,
    )  # fmt: skip
    assert permuted.flat() == pytest.approx(base.flat())


def test_sequence_invariants() -> None:
    """Unique sequence ids change nothing; query-only and gallery-only copies sharing a sequence equal 1 vs rest."""
    case = random_case(2, "overlap")
    emb, labels = case["emb"], case["labels"]
    n = len(labels)
    kw: dict[str, Any] = {"cmc_top_k": (1, 3), "precision_top_k": (3,), "map_top_k": (3,), "fmr_vals": (0.1, 0.5)}
    ones = [True] * n
    base = retrieval_metrics(emb, labels, ones, ones, **kw)
    assert retrieval_metrics(emb, labels, ones, ones, sequence=list(range(n)), **kw).flat() == base.flat()
    doubled = retrieval_metrics(
        torch.cat([emb, emb]), labels + labels, ones + [False] * n, [False] * n + ones,
        sequence=list(range(n)) * 2, **kw,
    )  # fmt: skip
    assert doubled.flat() == pytest.approx(base.flat())


def test_fnmr_ignores_excluded_pairs_unlike_oml() -> None:
    """OML 2.1 feeds ignored pairs to the negatives as +inf; here they are left out."""
    emb = torch.tensor([[0.0], [1.0], [5.0], [6.0]])
    labels = [0, 0, 1, 1]
    ones = [True] * 4
    res = retrieval_metrics(emb, labels, ones, ones, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), fmr_vals=(0.5,))
    neg = np.array([5.0, 6.0, 4.0, 5.0] * 2)
    pos = np.array([1.0] * 4)
    assert res.reduced["OVERALL"]["fnmr@fmr"][0.5] == pytest.approx(float(np.mean(pos >= np.quantile(neg, 0.5))))
    neg_oml = np.concatenate([neg, [math.inf] * 4])  # the four self pairs
    assert float(np.mean(pos >= np.quantile(neg_oml, 0.5))) == 0.0  # the same here, but the threshold moved:
    assert np.quantile(neg_oml, 0.5) != np.quantile(neg, 0.5)
