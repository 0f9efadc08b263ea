"""Re-ranking cost: it must grow with Q x top_n, not with the gallery size G (OML issue #599).

For each gallery size G (queries Q and top_n fixed) the script times, on random data:

- ``search``: the exact streaming top-k (``omlcore_metrics.TorchKnn``, k = top_n): grows with Q x G;
- ``rerank``: ``pairwise_embeddings`` with a ``linear_siamese`` model re-scoring the top_n of every query
  (``process`` on the (Q, top_n) top-k): should not depend on G;
- ``full-matrix`` (up to ``--full-max-gallery``): the same re-ranking done the way OML 2.x did, on a full
  Q x G distance matrix (top_n taken from it, re-scored, every other distance of the row shifted and written
  back), re-implemented here as a reference for what a Q x G design costs.

Then Q and top_n are varied at a fixed G to show that ``rerank`` grows linearly with Q x top_n.
Times are the median of ``--repeat`` runs (wall clock, ``torch.set_num_threads(--threads)``).

    .venv/bin/python benchmarks/reranking/bench_cost.py --json benchmarks/reranking/results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omlcore_metrics.knn import TorchKnn, pair_distances
from omlcore_reranking import LinearSiamese, PairwiseEmbeddingsReranker


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _data(n_queries: int, n_gallery: int, dim: int, seed: int) -> torch.Tensor:
    """Rows 0..Q-1 are the queries, Q..Q+G-1 the gallery (one tensor: the re-ranker's dataset)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_queries + n_gallery, dim, generator=g)


def _full_matrix_rerank(queries: torch.Tensor, gallery: torch.Tensor, top_n: int, model: LinearSiamese) -> torch.Tensor:
    """OML 2.x's design: a full (Q, G) matrix; re-score the top_n, shift the rest of each row, write back."""
    dist = pair_distances(queries, gallery, "l2")
    top_i = torch.topk(dist, top_n, dim=1, largest=False).indices
    with torch.no_grad():
        new = model.predict(queries.repeat_interleave(top_n, 0), gallery[top_i.flatten()]).view(-1, top_n)
    kth = torch.topk(dist, top_n + 1, dim=1, largest=False).values[:, -1]
    shift = (new.max(dim=1).values - kth).clamp(min=0) + 1e-5
    dist += shift[:, None]
    dist.scatter_(1, top_i, new)
    return dist


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    dim, top_n, n_q = args.dim, args.top_n, args.queries
    model = LinearSiamese(dim, identity_init=False).eval()
    knn = TorchKnn()
    rows: list[dict[str, Any]] = []

    def measure(n_queries: int, n_gallery: int, n_top: int, full: bool) -> dict[str, Any]:
        emb = _data(n_queries, n_gallery, dim, seed=n_gallery)
        queries, gallery = emb[:n_queries], emb[n_queries:]
        pp = PairwiseEmbeddingsReranker(top_n=n_top, pairwise_model=model, batch_size=args.batch_size)
        search_s = _median_seconds(lambda: knn.search(queries, gallery, n_top), args.repeat)
        dist, idx = knn.search(queries, gallery, n_top)
        qids = torch.arange(n_queries)
        rerank_s = _median_seconds(lambda: pp.process(dist, idx + n_queries, qids, emb), args.repeat)
        row: dict[str, Any] = {
            "Q": n_queries,
            "G": n_gallery,
            "top_n": n_top,
            "pairs": n_queries * n_top,
            "search_s": search_s,
            "rerank_s": rerank_s,
            "rerank_us_per_pair": rerank_s / (n_queries * n_top) * 1e6,
        }
        if full:
            row["full_matrix_s"] = _median_seconds(
                lambda: _full_matrix_rerank(queries, gallery, n_top, model), args.repeat
            )
        print(json.dumps(row), flush=True)
        return row

    for n_g in args.gallery:
        rows.append({"sweep": "G", **measure(n_q, n_g, top_n, n_g <= args.full_max_gallery)})
    for n_queries in args.sweep_queries:
        rows.append({"sweep": "Q", **measure(n_queries, args.sweep_gallery, top_n, False)})
    for n_top in args.sweep_top_n:
        rows.append({"sweep": "top_n", **measure(n_q, args.sweep_gallery, n_top, False)})
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads},
        "torch": torch.__version__,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": rows,
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--top-n", type=int, default=5)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--gallery", type=_ints, default=_ints("1000,10000,100000,1000000"))
    parser.add_argument("--full-max-gallery", type=int, default=100000)
    parser.add_argument("--sweep-gallery", type=int, default=10000)
    parser.add_argument("--sweep-queries", type=_ints, default=_ints("250,500,1000,2000,4000"))
    parser.add_argument("--sweep-top-n", type=_ints, default=_ints("2,5,10,20,40"))
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
