"""Time the ``balance`` sampler (build + draw one epoch's batch list): omlcore against OML 4.0.

OML's issue #627: building a BalanceSampler over a big dataset took 10+ minutes. This script builds
omlcore's ``BalanceSampler`` and OML 4.0's ``oml.samplers.balance.BalanceSampler`` on the same labels
and times (a) the constructor and (b) drawing one epoch (``list(sampler)``), at several sizes. OML runs
in its own venv (``setup_peer_venv.sh``), in a subprocess with a time limit, so a slow run cannot hang
the benchmark; a run over the limit is reported as such, never extrapolated.

Labels: ``n_samples`` items over ``n_distinct`` labels; every label gets 2 items, the remaining items
get uniformly random labels (seeded), shuffled; passed to both samplers as a Python ``list`` of ints.

Usage (from the repository root, with omlcore-samplers installed in the running interpreter)::

    benchmarks/setup_peer_venv.sh
    .venv/bin/python benchmarks/samplers/bench_balance.py [--sizes 1000000:200000 ...] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from omlcore_samplers import BalanceSampler

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
DEFAULT_SIZES = ("10000:2000", "100000:20000", "1000000:200000")


def make_labels(n_samples: int, n_distinct: int, seed: int = 0) -> np.ndarray:
    """``n_samples`` int64 labels in ``range(n_distinct)``, each label at least twice, shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate(
        [np.repeat(np.arange(n_distinct), 2), rng.integers(0, n_distinct, n_samples - 2 * n_distinct)]
    )
    rng.shuffle(labels)
    return labels.astype(np.int64)


def time_omlcore(labels: list[int], n_labels: int, n_instances: int, repeat: int) -> dict[str, float]:
    """Median construct and one-epoch times of omlcore's sampler over ``repeat`` runs."""
    construct, epoch = [], []
    for i in range(repeat):
        start = time.perf_counter()
        sampler = BalanceSampler(labels, n_labels, n_instances, seed=i)
        built = time.perf_counter()
        batches = list(sampler)
        done = time.perf_counter()
        construct.append(built - start)
        epoch.append(done - built)
        assert len(batches) == len(sampler)
    return {"construct_s": statistics.median(construct), "epoch_s": statistics.median(epoch), "batches": len(batches)}


def time_oml(path: Path, n_labels: int, n_instances: int, timeout: float) -> dict[str, object]:
    """OML's times from ``oml_runner.py`` in the peer venv, or ``{"timeout_s": ...}`` / ``{"error": ...}``."""
    if not PEER_PYTHON.exists():
        return {"error": f"no peer venv at {PEER_PYTHON}: run setup_peer_venv.sh"}
    cmd = [str(PEER_PYTHON), str(HERE / "oml_runner.py"), str(path), str(n_labels), str(n_instances)]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"timeout_s": timeout}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="N_SAMPLES:N_LABELS pairs")
    parser.add_argument("--n-labels", type=int, default=16, help="labels per batch (P)")
    parser.add_argument("--n-instances", type=int, default=4, help="items per label (K)")
    parser.add_argument("--repeat", type=int, default=3, help="omlcore runs per size (median reported)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for each OML run")
    parser.add_argument("--no-oml", action="store_true", help="time omlcore only")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args()

    print(
        f"# {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, "
        f"numpy {np.__version__}, omlcore-samplers {metadata.version('omlcore-samplers')}; "
        f"batch = {args.n_labels} labels x {args.n_instances} instances"
    )
    columns = ["samples", "labels", "omlcore build", "omlcore epoch", "omlcore total"]
    columns += ["OML 4.0 build", "OML 4.0 epoch", "OML 4.0 total", "OML / omlcore"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            n_samples, n_distinct = (int(x) for x in size.split(":"))
            array = make_labels(n_samples, n_distinct)
            labels = array.tolist()
            ours = time_omlcore(labels, args.n_labels, args.n_instances, args.repeat)
            ours_total = ours["construct_s"] + ours["epoch_s"]
            theirs: dict[str, object] = {"skipped": True}
            if not args.no_oml:
                path = Path(tmp) / f"labels-{n_samples}.npy"
                np.save(path, array)
                theirs = time_oml(path, args.n_labels, args.n_instances, args.timeout)
            if "construct_s" in theirs:
                c, e = float(theirs["construct_s"]), float(theirs["epoch_s"])  # type: ignore[arg-type]
                assert theirs["batches"] == ours["batches"], (theirs["batches"], ours["batches"])
                oml_cells = f"{c:.2f} s | {e:.2f} s | {c + e:.2f} s | {(c + e) / ours_total:.0f}x"
            elif "timeout_s" in theirs:
                limit = float(theirs["timeout_s"])  # type: ignore[arg-type]
                oml_cells = f"- | - | > {limit:.0f} s (stopped) | > {limit / ours_total:.0f}x"
            else:
                oml_cells = f"- | - | {theirs.get('error', 'not run')} | -"
            print(
                f"| {n_samples:,} | {n_distinct:,} | {ours['construct_s']:.3f} s | {ours['epoch_s']:.3f} s "
                f"| {ours_total:.3f} s | {oml_cells} |",
                flush=True,
            )
            rows.append({"n_samples": n_samples, "n_distinct": n_distinct, "omlcore": ours, "oml": theirs})
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
