"""Peer side of the retrieval-metrics benchmark (run in the peer venv): OML 4.0 and PML 2.9.

Usage: ``benchmarks/.venv-peers/bin/python peer_runner.py {oml,pml} [--dump PATH]``. Generates the SOP-sized data
(``common.make_sop``), warms the library up on 512 rows, then times one full self-retrieval evaluation and
prints one ``RESULT {json}`` line. Imports nothing from omlcore.

- ``oml``: ``batched_knn(emb, ids_query=arange, ids_gallery=arange, top_n=5, labels_gt=labels)``
  (Euclidean distance, query batches of ``BS_KNN``; a row never retrieves itself since the ids match),
  then ``calc_retrieval_metrics(retrieved_ids, gt_ids, cmc_top_k=(1, 5), precision_top_k=(5,),
  map_top_k=(5,), reduce=False)``, averaged here. ``--dump`` saves the per-query values (torch.save).
- ``pml``: ``AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
  k="max_bin_count").get_accuracy(emb, labels)`` (query = reference, so each row's own match is dropped;
  default ``FaissKNN``: ``faiss.IndexFlatL2``, 2 OpenMP threads). The clustering metrics (AMI, NMI) are
  left out: they are not retrieval metrics and need k-means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import THREADS, emit, make_sop, measure, rss_now_mb


def run_oml(emb: torch.Tensor, labels: torch.Tensor, dump: str | None) -> dict[str, Any]:
    from oml.functional.knn import batched_knn
    from oml.functional.metrics import calc_retrieval_metrics

    def once(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        ids = torch.arange(len(x))
        _, retrieved, gt_ids = batched_knn(x, ids_query=ids, ids_gallery=ids, top_n=5, labels_gt=y)
        assert gt_ids is not None
        m = calc_retrieval_metrics(
            retrieved, gt_ids, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,), reduce=False, verbose=False
        )
        per_query = {f"{name}/{k}": v.double() for name, d in m.items() for k, v in d.items()}
        return per_query

    once(emb[:512], labels[:512])
    rss = rss_now_mb()
    holder: dict[str, Any] = {}

    def timed() -> dict[str, Any]:
        holder.update(once(emb, labels))
        return {}

    rec = measure(timed, rss)
    rec["values"] = {key: float(v.mean()) for key, v in holder.items()}
    if dump:
        torch.save(holder, dump)
    return rec


def run_pml(emb: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    import faiss
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    faiss.omp_set_num_threads(THREADS)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
    calc.get_accuracy(emb[:512], labels[:512])
    rss = rss_now_mb()
    holder: dict[str, Any] = {}

    def timed() -> dict[str, Any]:
        holder.update(calc.get_accuracy(emb, labels))
        return {}

    rec = measure(timed, rss)
    rec["values"] = {
        "cmc/1": float(holder["precision_at_1"]),
        "map_at_r": float(holder["mean_average_precision_at_r"]),
    }
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", choices=("oml", "pml"))
    parser.add_argument("--dump", default=None)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    emb, labels = make_sop()
    rec = run_oml(emb, labels, args.dump) if args.library == "oml" else run_pml(emb, labels)
    rec["library"] = args.library
    emit(rec)


if __name__ == "__main__":
    main()
