"""Measurement code shared by the omlcore side (bench_triplet.py) and the peer side (peer_runner.py).

Imports only torch and the standard library, so it runs unchanged in the repository's venv and in the
peer venv. A "step" is a callable ``step(features, labels) -> scalar loss``; what is timed is
``step(...)`` followed by ``loss.backward()`` (mining + loss + backward), on a leaf ``features`` tensor.

A worker process does one measurement for one (library, config, B) and prints one JSON line:

- ``time``: ``--warmup`` untimed steps (fewer once half of ``--budget`` is spent), then up to ``--repeat``
  timed steps (fewer, but at least 3, once ``--budget`` seconds are spent); reports every sample in ms.
- ``mem``: in a fresh process, after imports, data creation and building the loss: the current RSS;
  then one step; ``peak_mb`` = ``ru_maxrss`` after the step minus that RSS (the step's extra peak).
- ``value``: the loss value (float64 repr), the number of mined triplets if the library reports it.
- ``profile``: the top ops by self CPU time over a few steps (torch.profiler).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Builder = Callable[[float], Step]  # margin -> step

MARGIN = 0.2
DIM = 384
N_INSTANCES = 4  # K of a P x K batch
NOISE = 2.0  # within-class noise relative to the class centre (see make_batch)


def make_batch(batch_size: int, dim: int = DIM, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A P x K batch as a balance sampler gives it: ``batch_size / 4`` labels x 4 instances.

    Features are ``normalize(centre[label] + NOISE * noise)`` (all standard normal, seeded), so classes are
    separable but overlap: at d=384 same-label distances are ~1.26 and other-label ones ~1.41, so with
    margin 0.2 most triplets are active and some have the negative closer than the positive (what the
    "hard" miners look for). Labels are contiguous blocks (0,0,0,0,1,1,1,1,...), int64. ``features`` is a
    float32 leaf with ``requires_grad=True``.
    """
    if batch_size % N_INSTANCES:
        raise ValueError(f"batch size {batch_size} is not a multiple of {N_INSTANCES}")
    gen = torch.Generator().manual_seed(seed)
    n_labels = batch_size // N_INSTANCES
    labels = torch.arange(n_labels, dtype=torch.int64).repeat_interleave(N_INSTANCES)
    centres = torch.randn(n_labels, dim, generator=gen)
    feats = centres[labels] + NOISE * torch.randn(batch_size, dim, generator=gen)
    feats = torch.nn.functional.normalize(feats, dim=1)
    return feats.contiguous().requires_grad_(True), labels


def _run_step(step: Step, features: torch.Tensor, labels: torch.Tensor) -> float:
    loss = step(features, labels)
    loss.backward()
    features.grad = None
    return float(loss.detach())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure_time(step: Step, features: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    warm = time.perf_counter()
    for _ in range(args.warmup):  # slow configurations: stop warming up after half the budget
        _run_step(step, features, labels)
        if time.perf_counter() - warm > args.budget / 2:
            break
    samples: list[float] = []
    spent = 0.0
    for i in range(args.repeat):
        start = time.perf_counter()
        _run_step(step, features, labels)
        elapsed = time.perf_counter() - start
        samples.append(elapsed * 1e3)
        spent += elapsed
        if spent > args.budget and i + 1 >= 3:
            break
    return {"ms": samples, "median_ms": statistics.median(samples)}


def measure_mem(step: Step, features: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    before = _rss_bytes()
    _run_step(step, features, labels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"rss_before_mb": before / 2**20, "peak_mb": max(peak - before, 0) / 2**20}


def measure_value(step: Step, features: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    loss = step(features, labels)
    return {"loss": float(loss.detach().double())}


def measure_profile(step: Step, features: torch.Tensor, labels: torch.Tensor, top: int = 8) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    _run_step(step, features, labels)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            _run_step(step, features, labels)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "top_ops": [
            {"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 3e3, "share": e.self_cpu_time_total / total}
            for e in events[:top]
        ]
    }


def worker_main(library: str, builders: Mapping[str, Builder], argv: list[str] | None = None) -> None:
    """Parse worker arguments, run one measurement, print one JSON line to stdout."""
    parser = argparse.ArgumentParser(description=f"one measurement for {library}")
    parser.add_argument("mode", choices=("time", "mem", "value", "profile"))
    parser.add_argument("config", choices=sorted(builders))
    parser.add_argument("batch_size", type=int)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--budget", type=float, default=15.0, help="stop timing after this many seconds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    features, labels = make_batch(args.batch_size, args.dim, args.seed)
    step = builders[args.config](MARGIN)
    out: dict[str, Any] = {
        "library": library,
        "config": args.config,
        "batch_size": args.batch_size,
        "dim": args.dim,
        "mode": args.mode,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "features_sum": float(features.detach().double().sum()),
    }
    if args.mode == "time":
        out.update(measure_time(step, features, labels, args))
    elif args.mode == "mem":
        out.update(measure_mem(step, features, labels))
    elif args.mode == "value":
        out.update(measure_value(step, features, labels))
    else:
        out.update(measure_profile(step, features, labels))
    sys.stdout.write(json.dumps(out) + "\n")
