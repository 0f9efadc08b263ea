"""Speed and memory of exact self-retrieval metrics: omlcore vs OML 4.0 vs PML 2.9 vs the bare floor.

Every measurement runs in its own fresh subprocess, which generates the same seeded data
(``common.make_sop``: 60,000 x 384 L2-normalised rows, 12,000 labels x 5), warms the library up on 512
rows, then times ONE evaluation (wall clock, data generation excluded). Memory: peak RSS of that subprocess
(``ru_maxrss``) and the same minus the RSS right before the timed call.

Rows (``--rows`` chooses; all by default):

- ``bare``: chunked ``q @ g.T`` (into one reused 1,024 x N buffer) + ``topk(5)`` over 1,024-query chunks, only
  the top-k indices kept, plus vectorised metrics from the top-k labels (the floor: no distances, no tie order);
- ``omlcore``: ``omlcore_metrics.functional.retrieval_metrics(..., cmc_top_k=(1, 5), precision_top_k=(5,),
  map_top_k=(5,), map_at_r=True)``, default backend ``"torch"`` (exact, total tie order);
- ``oml`` / ``pml``: ``peer_runner.py`` in the peer venv (``--peer-python``);
- ``big``: omlcore alone on 10,000 queries x 1,000,000 gallery x 128-d (100,000 labels x 10); data alone
  is ~517 MB, reported separately.

``--repeat N`` runs every row N times (round-robin, so load from other jobs spreads over all of them). Each
record also holds the process's CPU seconds (all threads) and the 1-minute load average before and after.
Checks: omlcore's per-query cmc/precision/map equal OML's (max |difference| printed), map@R and cmc@1
equal PML's mean_average_precision_at_r / precision_at_1 and the bare baseline's.

Usage (from the repo root)::

    .venv/bin/python benchmarks/metrics/bench_retrieval.py --repeat 2 --json benchmarks/metrics/results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import THREADS, bare_topk, emit, make_big, make_sop, measure, metrics_from_topk, rss_now_mb  # noqa: E402

DEFAULT_PEER = HERE.parent / ".venv-peers" / "bin" / "python"
ROWS = ("bare", "omlcore", "oml", "pml", "big")


# ---------------------------------------------------------------- workers (run in a fresh process each)


def _omlcore_call(emb: torch.Tensor, labels: torch.Tensor, is_query: torch.Tensor, is_gallery: torch.Tensor) -> Any:
    from omlcore_metrics.functional import retrieval_metrics

    return retrieval_metrics(
        emb,
        labels,
        is_query,
        is_gallery,
        cmc_top_k=(1, 5),
        precision_top_k=(5,),
        map_top_k=(5,),
        map_at_r=True,
    )


def worker_omlcore(dump: str | None) -> dict[str, Any]:
    emb, labels = make_sop()
    ones = torch.ones(len(labels), dtype=torch.bool)
    _omlcore_call(emb[:512], labels[:512], ones[:512], ones[:512])
    rss = rss_now_mb()
    holder: dict[str, Any] = {}

    def timed() -> dict[str, Any]:
        holder["r"] = _omlcore_call(emb, labels, ones, ones)
        return {}

    rec = measure(timed, rss)
    res = holder["r"]
    rec["values"] = {
        f"{metric}/{key}" if key != "R" else metric: value
        for metric, d in res.reduced["OVERALL"].items()
        for key, value in d.items()
    }
    if dump:
        per_query = {
            f"{metric}/{key}" if key != "R" else metric: v
            for metric, d in res.unreduced["OVERALL"].items()
            for key, v in d.items()
        }
        torch.save(per_query, dump)
    return rec


def worker_bare() -> dict[str, Any]:
    emb, labels = make_sop()
    bare_topk(emb[:512], 5)
    rss = rss_now_mb()
    holder: dict[str, Any] = {}

    def timed() -> dict[str, Any]:
        idx = bare_topk(emb, 5)
        n_pos = torch.bincount(labels)[labels] - 1
        holder["values"] = metrics_from_topk(idx, labels, n_pos)
        return {}

    rec = measure(timed, rss)
    rec["values"] = holder["values"]
    return rec


def worker_big() -> dict[str, Any]:
    emb, labels, n_q = make_big()
    data_mb = (emb.numel() * emb.element_size() + labels.numel() * labels.element_size()) / 2**20
    is_query = torch.zeros(len(labels), dtype=torch.bool)
    is_query[:n_q] = True
    is_gallery = ~is_query
    small = torch.cat([torch.arange(256), torch.arange(n_q, n_q + 4096)])
    _omlcore_call(emb[small], labels[small], is_query[small], is_gallery[small])
    rss = rss_now_mb()
    holder: dict[str, Any] = {}

    def timed() -> dict[str, Any]:
        holder["r"] = _omlcore_call(emb, labels, is_query, is_gallery)
        return {}

    rec = measure(timed, rss)
    res = holder["r"]
    rec["data_mb"] = data_mb
    rec["values"] = {
        f"{metric}/{key}" if key != "R" else metric: value
        for metric, d in res.reduced["OVERALL"].items()
        for key, value in d.items()
    }
    return rec


# ---------------------------------------------------------------- orchestrator


def _run(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"{cmd} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    return {key: float((a[key].double() - b[key].double()).abs().max()) for key in sorted(set(a) & set(b))}


def orchestrate(args: argparse.Namespace) -> None:
    rows = [r for r in ROWS if r in args.rows]
    results: dict[str, list[dict[str, Any]]] = {r: [] for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        dumps = {"omlcore": str(Path(tmp) / "omlcore.pt"), "oml": str(Path(tmp) / "oml.pt")}
        for rep in range(args.repeat):
            for row in rows:
                if row in ("oml", "pml"):
                    cmd = [str(args.peer_python), str(HERE / "peer_runner.py"), row]
                else:
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", row]
                if row in dumps and rep == 0:
                    cmd += ["--dump", dumps[row]]
                rec = _run(cmd)
                results[row].append(rec)
                print(
                    f"[{rep + 1}/{args.repeat}] {row:8s} {rec['seconds']:7.2f} s (cpu {rec['cpu_seconds']:6.1f} s,"
                    f" load {rec['load1_before']:.1f}->{rec['load1_after']:.1f})  peak RSS {rec['peak_rss_mb']:7.0f} MB"
                    f"  (+{rec['delta_rss_mb']:.0f} MB over data)  {rec.get('values')}",
                    flush=True,
                )
        checks: dict[str, Any] = {}
        if "omlcore" in rows and "oml" in rows:
            checks["omlcore_vs_oml_per_query_max_abs_diff"] = _max_diff(
                torch.load(dumps["omlcore"]), torch.load(dumps["oml"])
            )
    ref = results.get("omlcore", [{}])[0].get("values", {})
    for other in ("pml", "bare"):
        if other in results and ref:
            vals = results[other][0]["values"]
            checks[f"omlcore_vs_{other}_mean_abs_diff"] = {k: abs(ref[k] - v) for k, v in vals.items() if k in ref}
    print("checks:", json.dumps(checks, indent=1))

    def best(row: str) -> float:
        return min(r["seconds"] for r in results[row])

    summary: dict[str, Any] = {}
    if "omlcore" in rows:
        t = best("omlcore")
        for other in ("bare", "pml", "oml"):
            if other in rows:
                summary[f"omlcore_time_over_{other}"] = [r["seconds"] / best(other) for r in results["omlcore"]]
        if "bare" in rows:
            summary["omlcore_peak_minus_bare_peak_mb"] = [
                r["peak_rss_mb"] - min(b["peak_rss_mb"] for b in results["bare"]) for r in results["omlcore"]
            ]
        summary["omlcore_best_s"] = t
    print("summary:", json.dumps(summary, indent=1))
    if args.json:
        meta = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": THREADS,
            "cpu": platform.processor() or platform.machine(),
            "argv": sys.argv,
        }
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": results, "checks": checks, "summary": summary}, indent=1)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=("bare", "omlcore", "big"), help=argparse.SUPPRESS)
    parser.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--json", default=None, help="write all records here")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.worker == "omlcore":
        rec = worker_omlcore(args.dump)
    elif args.worker == "bare":
        rec = worker_bare()
    elif args.worker == "big":
        rec = worker_big()
    else:
        orchestrate(args)
        return
    rec["library"] = args.worker
    emit(rec)


if __name__ == "__main__":
    main()
