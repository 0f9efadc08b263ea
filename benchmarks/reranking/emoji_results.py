"""Collect the figures of an `omlcore train-postprocessor examples/emoji_rerank.yaml` run into a JSON file.

The run's output is piped through `stamp.py` (below: every progress-bar update and printed line gets the seconds
since the start), and the command runs under `/usr/bin/time -v` (wall clock, peak memory). From the run folder's
`metrics.json` and that log this writes, per run: the extractor's metrics (the `epoch: null` record), the metrics
after re-ranking at every validation, the training time of every epoch and the time of every validation.

    mkdir -p /tmp/rerank-emoji
    flock /tmp/omlcore-cpu.lock /usr/bin/time -v omlcore train-postprocessor examples/emoji_rerank.yaml \
        data.dataset_root=/tmp/emoji/out ... 2>&1 | python benchmarks/reranking/emoji_results.py stamp LOG
    python benchmarks/reranking/emoji_results.py collect --name NAME --run-dir RUN --log LOG \
        --command "..." --json benchmarks/reranking/results-emoji.json

`collect` adds (or replaces) the run named NAME in the JSON file and keeps the others.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEYS = ("OVERALL/cmc/1", "OVERALL/cmc/5", "OVERALL/precision/5", "OVERALL/map/5")


def stamp(log: Path) -> None:
    """Copy stdin to LOG, one line per progress-bar update or printed line, prefixed by seconds since start."""
    t0 = time.time()
    buf = b""
    stdin = sys.stdin.buffer
    assert isinstance(stdin, io.BufferedReader)  # read1: whatever has arrived, so progress bars are timed live
    with log.open("w") as out:
        while chunk := stdin.read1(4096):
            buf += chunk
            while (i := min((p for p in (buf.find(b"\r"), buf.find(b"\n")) if p >= 0), default=-1)) >= 0:
                line, buf = buf[:i], buf[i + 1 :]
                if line.strip():
                    out.write(f"{time.time() - t0:8.1f} {line.decode(errors='replace')}\n")
                    out.flush()
        if buf.strip():
            out.write(f"{time.time() - t0:8.1f} {buf.decode(errors='replace')}\n")


def _timings(lines: list[tuple[float, str]]) -> dict[str, Any]:
    start: dict[int, float] = {}
    end: dict[int, float] = {}
    validated: dict[int, float] = {}
    loss: dict[int, float] = {}
    for t, text in lines:
        bar = re.match(r"Epoch (\d+):\s+(\d+)%", text)
        if bar:
            epoch = int(bar.group(1))
            start.setdefault(epoch, t)
            if bar.group(2) == "100":
                end.setdefault(epoch, t)  # the last batch is done; later 100% lines only refresh the figures
                if m := re.search(r"train/loss_epoch=([\d.]+)", text):
                    loss[epoch] = float(m.group(1))  # the epoch's own mean loss once the epoch has ended
        done = re.search(r"(?:^|\])epoch (\d+): OVERALL/", text)  # printed after the validation, maybe behind the bar
        if done:
            validated[int(done.group(1))] = t
    epochs = sorted(end)
    out: dict[str, Any] = {
        "seconds_before_training": round(start[min(start)], 1) if start else None,
        "epoch_train_s": {e: round(end[e] - start[e], 1) for e in epochs if e in start},
        "validation_s": {e: round(validated[e] - end[e], 1) for e in sorted(validated) if e in end},
        "train_loss_epoch": loss,
    }
    wall, rss = [], []
    for _, text in lines:
        if m := re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text):
            parts = [float(p) for p in m.group(1).split(":")]
            wall.append(sum(p * 60**i for i, p in enumerate(reversed(parts))))
        if m := re.search(r"Maximum resident set size \(kbytes\): (\d+)", text):
            rss.append(int(m.group(1)))
    out["wall_clock_s_whole_command"] = round(wall[-1], 1) if wall else None
    out["peak_rss_mb"] = round(rss[-1] / 1024) if rss else None
    return out


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    return {"nproc": os.cpu_count(), "cpu": model, "torch": torch.__version__, "threads": torch.get_num_threads()}


def collect(args: argparse.Namespace) -> None:
    records = json.loads((args.run_dir / "metrics.json").read_text())
    baseline = next(r for r in records if r.get("epoch") is None)
    reranked = [r for r in records if r.get("epoch") is not None]
    lines = []
    for raw in args.log.read_text(errors="replace").splitlines():
        head, _, text = raw.strip().partition(" ")
        text = re.sub(r"^\d\d:\d\d:\d\d ", "", text.strip())  # an optional clock time after the seconds
        try:
            lines.append((float(head), text))
        except ValueError:
            continue
    run: dict[str, Any] = {
        "name": args.name,
        "command": args.command,
        "note": args.note,
        "baseline": {k: round(baseline[k], 4) for k in KEYS},
        "reranked": [{"epoch": r["epoch"], **{k: round(r[k], 4) for k in KEYS}} for r in reranked],
        **_timings(lines),
    }
    best = max(reranked, key=lambda r: r["OVERALL/cmc/1"], default=None)
    run["best"] = None if best is None else {"epoch": best["epoch"], **{k: round(best[k], 4) for k in KEYS}}
    data: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    data["machine"] = _machine()
    data["measured"] = time.strftime("%Y-%m-%d")
    runs = [r for r in data.get("runs", []) if r.get("name") != args.name]
    data["runs"] = [*runs, run]
    fd, tmp = tempfile.mkstemp(dir=args.json.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.json)
    print(json.dumps(run, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p_stamp = sub.add_parser("stamp", help="timestamp stdin into LOG")
    p_stamp.add_argument("log", type=Path)
    p_collect = sub.add_parser("collect", help="add a run's figures to the JSON file")
    p_collect.add_argument("--name", required=True)
    p_collect.add_argument("--run-dir", type=Path, required=True)
    p_collect.add_argument("--log", type=Path, required=True)
    p_collect.add_argument("--command", required=True)
    p_collect.add_argument("--note", default="")
    p_collect.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "stamp":
        stamp(args.log)
    else:
        collect(args)


if __name__ == "__main__":
    main()
