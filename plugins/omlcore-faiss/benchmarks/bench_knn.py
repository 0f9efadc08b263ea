"""Time exact faiss search (``faiss``), the IVF index (``faiss_ivf``) and a naive torch ``cdist`` + ``topk``.

Run from the repository root::

    .venv/bin/python plugins/omlcore-faiss/benchmarks/bench_knn.py --n 20000 --dim 128 --k 10

Queries and gallery are the same number ``n`` of random Gaussian rows. Prints seconds per method (best of
``--repeat``), whether the naive result agrees with ``faiss``, and the IVF index's recall.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from omlcore_faiss import FaissIvfKnn, FaissKnn


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    queries = torch.randn(args.n, args.dim, generator=g)
    gallery = torch.randn(args.n, args.dim, generator=g)
    print(f"Q=G={args.n} D={args.dim} k={args.k} torch threads={torch.get_num_threads()}")

    def naive() -> tuple[torch.Tensor, torch.Tensor]:
        result = torch.cdist(queries, gallery).topk(args.k, dim=1, largest=False)
        return result.values, result.indices

    t_naive, (_, naive_i) = best_of(args.repeat, naive)
    print(f"torch cdist+topk (full Q x G matrix): {t_naive:.2f} s")
    import faiss  # type: ignore[import-untyped,unused-ignore]

    def raw_faiss() -> Any:
        index = faiss.IndexFlatL2(args.dim)
        index.add(gallery.numpy())
        return index.search(queries.numpy(), args.k)

    t_raw, _ = best_of(args.repeat, raw_faiss)
    print(f"raw faiss IndexFlatL2 (squared L2, no tie order): {t_raw:.2f} s")
    exact = FaissKnn("l2")
    t_exact, (_, exact_i) = best_of(args.repeat, lambda: exact.search(queries, gallery, args.k))
    print(f"faiss (exact, re-scored, tie order): {t_exact:.2f} s; widened rows {exact.last_logs['widened_rows']:.0f}")
    agree = float((naive_i == exact_i).all(dim=1).float().mean())
    print(f"rows identical to cdist+topk: {agree:.4f}")
    ivf = FaissIvfKnn("l2")
    t_ivf, _ = best_of(args.repeat, lambda: FaissIvfKnn("l2").search(queries, gallery, args.k))
    t_ivf_warm, _ = best_of(args.repeat, lambda: ivf.search(queries, gallery, args.k))
    recall = ivf.estimate_recall(queries, gallery, args.k, n_sample=1000)
    print(
        f"faiss_ivf (nlist={ivf.last_logs['nlist']:.0f}, nprobe={ivf.last_logs['nprobe']:.0f}): "
        f"{t_ivf:.2f} s with training, {t_ivf_warm:.2f} s on the built index; recall@{args.k} {recall:.3f}"
    )


if __name__ == "__main__":
    main()
