"""Time mining + triplet loss + backward: omlcore against OML 4.0 and PML 2.9, side by side, on CPU.

For B in 128 / 512 / 1024 at d=384, a P x K batch (B/4 labels x 4 instances, see harness.make_batch),
margin 0.2, two configurations:

- ``all``:  omlcore ``triplet_with_miner`` + ``all_triplets`` | OML ``TripletLossWithMiner`` +
  ``AllTripletsMiner`` | PML ``TripletMarginLoss`` + ``TripletMarginMiner("all")`` and PML
  ``TripletMarginLoss`` alone (references: PML keeps only margin-violating triplets / averages over
  non-zero losses, see peer_runner.py).
- ``hard``: omlcore + ``hard_triplets`` | OML + ``HardTripletsMiner`` | PML ``TripletMarginLoss`` +
  ``TripletMarginMiner("hard")`` and PML + ``BatchHardMiner`` (the batch-hard counterpart).

Every (library, config, B) measurement runs in its own fresh subprocess: omlcore's with this interpreter
(``--worker``), OML's and PML's with the peer venv's python (``peer_runner.py``; build the venv with
``setup_peer_venv.sh``). Time = median of the per-step samples (forward incl. mining + backward) after
warm-up; with ``--rounds N`` the grid is timed N times (a fresh process per row and pass) and a row's time is
the median of its N medians, which keeps a burst of load from another job on a shared machine from
deciding a row; peak memory = in separate fresh subprocesses, ``ru_maxrss`` after one step minus the RSS after
imports, data creation and building the loss; the median over ``--mem-repeat`` such processes (the
first step's figure includes one-off costs, kernel code paged in and allocator growth, that vary by a
few hundred KB from one process to the next). A watchdog kills a subprocess whose RSS passes
``--mem-limit-gb`` or that runs past ``--timeout`` and the row reports that instead of a figure. The loss
values of omlcore and OML are compared on the same inputs. Rows where omlcore is slower than the fastest
peer get a torch.profiler summary of omlcore's step.

Usage (from the repository root, omlcore-losses and omlcore-miners installed in .venv)::

    benchmarks/setup_peer_venv.sh
    .venv/bin/python benchmarks/losses/bench_triplet.py [--sizes 128 512 1024] [--rounds 3] [--mem-repeat 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PEER_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
PEER_RUNNER = HERE / "peer_runner.py"

CONFIGS: dict[str, list[tuple[str, str]]] = {
    "all": [("omlcore", "all"), ("oml", "all"), ("pml", "all"), ("pml", "all-nominer")],
    "hard": [("omlcore", "hard"), ("oml", "hard"), ("pml", "hard"), ("pml", "batch-hard")],
}
LABELS = {
    ("omlcore", "all"): "omlcore triplet_with_miner + all_triplets",
    ("omlcore", "hard"): "omlcore triplet_with_miner + hard_triplets",
    ("oml", "all"): "OML TripletLossWithMiner + AllTripletsMiner",
    ("oml", "hard"): "OML TripletLossWithMiner + HardTripletsMiner",
    ("pml", "all"): 'PML TripletMarginLoss + TripletMarginMiner("all")',
    ("pml", "hard"): 'PML TripletMarginLoss + TripletMarginMiner("hard")',
    ("pml", "all-nominer"): "PML TripletMarginLoss (no miner)",
    ("pml", "batch-hard"): "PML TripletMarginLoss + BatchHardMiner",
}


def omlcore_builders() -> dict[str, Any]:
    import omlcore

    def build(miner: str) -> Any:
        def builder(margin: float) -> Any:
            spec = {"name": "triplet_with_miner", "args": {"margin": margin, "miner": {"name": miner}}}
            return omlcore.build("loss", spec)

        return builder

    return {"all": build("all_triplets"), "hard": build("hard_triplets")}


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_worker(library: str, mode: str, config: str, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a fresh subprocess, under the RSS / time watchdog."""
    opts = ["--repeat", str(args.repeat), "--budget", str(args.budget), "--dim", str(args.dim)]
    if library == "omlcore":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, config, str(batch_size), *opts]
    else:
        cmd = [str(PEER_PYTHON), str(PEER_RUNNER), library, mode, config, str(batch_size), *opts]
    limit = int(args.mem_limit_gb * 2**30)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    start, killed = time.monotonic(), ""
    while proc.poll() is None:
        if _rss_of(proc.pid) > limit:
            killed = f"RSS over {args.mem_limit_gb:g} GiB"
        elif time.monotonic() - start > args.timeout:
            killed = f"over {args.timeout:g} s"
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    if killed:
        return {"error": f"killed: {killed}"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["all", "hard"])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=15, help="timed steps per measurement (at most)")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds of timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="timing passes over the grid (median of medians)")
    parser.add_argument("--mem-repeat", type=int, default=3, help="fresh processes per memory figure (median)")
    parser.add_argument("--mem-limit-gb", type=float, default=10.0, help="kill a worker whose RSS passes this")
    parser.add_argument("--timeout", type=float, default=300.0, help="kill a worker running longer than this")
    parser.add_argument("--no-profile", action="store_true", help="skip profiling the rows omlcore loses")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        sys.exit(f"no peer venv at {PEER_PYTHON}; run benchmarks/setup_peer_venv.sh first")

    from importlib import metadata

    import torch

    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"# omlcore-losses {metadata.version('omlcore-losses')}, omlcore-miners {metadata.version('omlcore-miners')}")
    grid = [
        (batch_size, config, library, peer_config)
        for batch_size in args.sizes
        for config in args.configs
        for library, peer_config in CONFIGS[config]
    ]
    # Timing: `--rounds` passes over the whole grid, each row in a fresh process per pass; a row's time is
    # the median of its per-pass medians, so a burst of load from another job spoils one pass, not the row.
    round_medians: dict[tuple[int, str, str, str], list[float]] = {key: [] for key in grid}
    round_samples: dict[tuple[int, str, str, str], list[int]] = {key: [] for key in grid}
    errors: dict[tuple[int, str, str, str], str | None] = dict.fromkeys(grid)
    for _ in range(max(1, args.rounds)):
        for key in grid:
            if errors[key]:
                continue
            batch_size, config, library, peer_config = key
            timing = run_worker(library, "time", peer_config, batch_size, args)
            errors[key] = timing.get("error")
            if not errors[key]:
                round_medians[key].append(timing["median_ms"])
                round_samples[key].append(len(timing["ms"]))
    rows: list[dict[str, Any]] = []
    for key in grid:
        batch_size, config, library, peer_config = key
        row: dict[str, Any] = {"batch_size": batch_size, "config": config, "library": library}
        row["impl"] = LABELS[(library, peer_config)]
        row["error"] = errors[key]
        row["round_median_ms"] = round_medians[key]
        row["median_ms"] = statistics.median(round_medians[key]) if round_medians[key] and not row["error"] else None
        row["n_samples"] = sum(round_samples[key])
        peaks: list[float] = []
        for _ in range(max(1, args.mem_repeat) if not row["error"] else 0):
            memory = run_worker(library, "mem", peer_config, batch_size, args)
            if memory.get("error"):
                row["error"] = memory["error"]
                break
            peaks.append(memory["peak_mb"])
        row["peak_mb_samples"] = peaks
        row["peak_mb"] = statistics.median(peaks) if peaks and not row["error"] else None
        if not row["error"]:
            row["loss"] = run_worker(library, "value", peer_config, batch_size, args).get("loss")
        rows.append(row)
        print(
            f"B={batch_size:5d} {config:4s} {row['impl']:52s} {_fmt(row['median_ms'], 2):>12s} ms"
            f" (n={row['n_samples']:2d})  peak {_fmt(row['peak_mb']):>9s} MB  loss {row.get('loss')}"
            + (f"  [{row['error']}]" if row["error"] else ""),
            flush=True,
        )

    # ratios against the fastest / leanest peer of the same (B, config), and value agreement with OML
    print("\n| B | config | library | median ms | peak MB | ratio time omlcore/fastest | ratio mem omlcore/leanest |")
    print("|---|---|---|---|---|---|---|")
    summary: list[dict[str, Any]] = []
    for batch_size in args.sizes:
        for config in args.configs:
            group = [r for r in rows if r["batch_size"] == batch_size and r["config"] == config]
            ours = next(r for r in group if r["library"] == "omlcore")
            peers = [r for r in group if r["library"] != "omlcore" and r["median_ms"] is not None]
            fastest = min(peers, key=lambda r: r["median_ms"], default=None)
            leanest = min((r for r in peers if r["peak_mb"] is not None), key=lambda r: r["peak_mb"], default=None)
            t_ratio = ours["median_ms"] / fastest["median_ms"] if fastest and ours["median_ms"] else None
            m_ratio = ours["peak_mb"] / max(leanest["peak_mb"], 1e-9) if leanest and ours["peak_mb"] else None
            oml = next((r for r in group if r["library"] == "oml"), None)
            diff = abs(ours["loss"] - oml["loss"]) if oml and oml.get("loss") is not None and ours.get("loss") else None
            summary.append(
                {
                    "batch_size": batch_size,
                    "config": config,
                    "time_ratio": t_ratio,
                    "fastest": fastest and fastest["impl"],
                    "mem_ratio": m_ratio,
                    "leanest": leanest and leanest["impl"],
                    "loss_diff_vs_oml": diff,
                }
            )
            for r in group:
                mark = f"{_fmt(t_ratio, 2)} (vs {fastest['impl']})" if r is ours and fastest else ""
                mem = f"{_fmt(m_ratio, 2)}" if r is ours else ""
                ms = _fmt(r["median_ms"], 2) if r["median_ms"] is not None else (r["error"] or "—")
                print(f"| {batch_size} | {config} | {r['impl']} | {ms} | {_fmt(r['peak_mb'])} | {mark} | {mem} |")
    print("\n# loss values, omlcore vs OML (same inputs)")
    for s in summary:
        print(f"B={s['batch_size']:5d} {s['config']:4s} |omlcore - OML| = {s['loss_diff_vs_oml']}")

    profiles: list[dict[str, Any]] = []
    if not args.no_profile:
        for s in summary:
            if s["time_ratio"] is not None and s["time_ratio"] > 1.0:
                prof = run_worker("omlcore", "profile", s["config"], s["batch_size"], args)
                profiles.append({"batch_size": s["batch_size"], "config": s["config"], **prof})
                print(f"\n# omlcore profile, B={s['batch_size']} {s['config']} (ratio {s['time_ratio']:.2f})")
                for op in prof.get("top_ops", []):
                    print(f"  {op['op']:40s} {op['self_ms_per_step']:10.2f} ms/step  {100 * op['share']:5.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "profiles": profiles}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        from harness import worker_main

        worker_main("omlcore", omlcore_builders(), sys.argv[2:])
    else:
        main()
