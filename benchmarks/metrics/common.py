"""Shared helpers of the retrieval-metrics benchmark: seeded data, memory readings, the bare baseline.

Imported by ``bench_retrieval.py`` (omlcore venv) and ``peer_runner.py`` (peer venv), so it needs only
torch: both venvs use the same shared torch, so the same seed gives the same bits on both sides.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

SEED = 0
SOP_ROWS = 60_000
SOP_LABELS = 12_000
SOP_DIM = 384
BIG_QUERIES = 10_000
BIG_GALLERY = 1_000_000
BIG_DIM = 128
BIG_LABELS = 100_000
NOISE = 1.5
THREADS = 2


def rss_now_mb() -> float:
    """Current resident set size of this process, MB (from /proc/self/status)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started, MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _clusters(gen: torch.Generator, labels: Tensor, centers: Tensor) -> Tensor:
    x = centers[labels]
    x += NOISE * torch.randn(x.shape, generator=gen)
    return torch.nn.functional.normalize(x, dim=1)


def make_sop(seed: int = SEED) -> tuple[Tensor, Tensor]:
    """SOP-sized data: 60,000 L2-normalised 384-d float32 rows, 12,000 labels x 5 rows, rows shuffled.

    Gaussian clusters: one ``N(0, I)`` centre per label plus ``N(0, NOISE^2 I)`` noise, then normalised.
    """
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(SOP_LABELS, SOP_DIM, generator=gen)
    labels = torch.arange(SOP_LABELS).repeat_interleave(SOP_ROWS // SOP_LABELS)
    labels = labels[torch.randperm(SOP_ROWS, generator=gen)]
    return _clusters(gen, labels, centers).contiguous(), labels


def make_big(seed: int = SEED, chunk: int = 100_000) -> tuple[Tensor, Tensor, int]:
    """10,000 queries then 1,000,000 gallery rows, 128-d, in ONE preallocated float32 tensor (~517 MB).

    Gallery: 100,000 labels x 10 rows; queries: a label drawn uniformly per query (so 10 positives each).
    Generated chunk by chunk so that no second copy of the gallery is ever held. Returns
    ``(embeddings, labels, n_queries)``; rows ``[0, n_queries)`` are queries, the rest gallery.
    """
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(BIG_LABELS, BIG_DIM, generator=gen)
    n = BIG_QUERIES + BIG_GALLERY
    labels = torch.empty(n, dtype=torch.long)
    labels[:BIG_QUERIES] = torch.randint(0, BIG_LABELS, (BIG_QUERIES,), generator=gen)
    gallery_labels = torch.arange(BIG_LABELS).repeat_interleave(BIG_GALLERY // BIG_LABELS)
    labels[BIG_QUERIES:] = gallery_labels[torch.randperm(BIG_GALLERY, generator=gen)]
    del gallery_labels
    emb = torch.empty(n, BIG_DIM)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        emb[s:e] = _clusters(gen, labels[s:e], centers)
    return emb, labels, BIG_QUERIES


def bare_topk(emb: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """The floor: self-retrieval top-k by cosine similarity, ``q @ g.T`` + ``topk`` over query chunks.

    One ``chunk x N`` similarity buffer is allocated once and reused (``torch.mm(..., out=)``): a fresh
    245 MB block per chunk costs ~20 % more in page faults, which a floor should not carry. Only the
    ``(N, k)`` indices are kept; the row itself is excluded by setting its similarity to -inf. Ties are
    left to ``torch.topk`` (no total order); no distances are returned.
    """
    n = emb.shape[0]
    out = torch.empty(n, k, dtype=torch.long)
    buf = torch.empty(min(chunk, n) * n, dtype=emb.dtype)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        sim = torch.mm(emb[s:e], emb.T, out=buf[: (e - s) * n].view(e - s, n))
        r = torch.arange(e - s)
        sim[r, r + s] = -torch.inf
        out[s:e] = sim.topk(k, dim=1).indices
    return out


def metrics_from_topk(idx: Tensor, labels: Tensor, n_pos: Tensor) -> dict[str, float]:
    """cmc@1/5, precision@5, map@5 (OML's definitions) and map@R (PML's) from top-k indices, vectorised."""
    gt = (labels[idx] == labels[:, None]).double()
    ranks = torch.arange(1, gt.shape[1] + 1, dtype=torch.double)
    prec_i = gt.cumsum(1) / ranks
    npos = n_pos.double()
    out = {
        "cmc/1": float(gt[:, :1].amax(1).mean()),
        "cmc/5": float(gt[:, :5].amax(1).mean()),
        "precision/5": float((gt[:, :5].sum(1) / npos.clamp(max=5)).mean()),
        # OML's map@k: divided by the hits within the top k (0 without hits)
        "map/5": float(((prec_i[:, :5] * gt[:, :5]).sum(1) / gt[:, :5].sum(1).clamp(min=1)).mean()),
    }
    within = (ranks[None, :] <= npos[:, None]).double()
    out["map_at_r"] = float(((prec_i * gt * within).sum(1) / npos).mean())
    return out


def measure(fn: Callable[[], dict[str, Any]], rss_data_mb: float) -> dict[str, Any]:
    """Run ``fn`` once, wall-clock timed; add seconds, the process's CPU seconds (all threads), the 1-minute
    load average before and after, and memory readings to what it returns."""
    load_before = os.getloadavg()[0]
    c0 = time.process_time()
    t0 = time.perf_counter()
    extra = fn()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = peak_rss_mb()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load1_before": load_before,
        "load1_after": os.getloadavg()[0],
        "peak_rss_mb": peak,
        "rss_after_data_mb": rss_data_mb,
        "delta_rss_mb": peak - rss_data_mb,
        **extra,
    }


def emit(record: dict[str, Any]) -> None:
    """Print the single JSON result line the orchestrator reads."""
    sys.stdout.write("RESULT " + json.dumps(record) + "\n")
    sys.stdout.flush()
