"""Overhead of the training pipeline: samples/s of a training epoch through ``omlcore train`` (the
``omlcore_lightning.train`` function the command runs) against a hand-written PyTorch loop doing the same work.

Same work on both sides: the same generated image dataset (CSV format, read by omlcore-images), the same
training transform (``augs_torch``), the same ``balance`` sampler (P x K), the same ``resnet`` extractor, the
same ``triplet_with_miner`` loss with ``hard_triplets``, the same ``adam`` optimizer, ``num_workers=0``. The loop
builds its components with ``omlcore.build`` and runs ``zero_grad / extract / loss / backward / step`` per batch.

The pipeline runs with no validation rows in the dataset (so an epoch is only training; the checkpoint monitors
``train/loss``). An epoch's time is measured from ``on_train_epoch_start`` to ``on_train_epoch_end``
(everything the framework does per batch is inside: loading, per-item seeding, logging, the progress bar, the
Ctrl-C check); the loop's epoch is timed around its ``for`` loop. The first epoch of each run is a warm-up and
is not counted. Runs alternate (loop, pipeline, loop, pipeline...) so that load from other jobs spreads over
both; the figures per side are the median epoch and the fastest epoch (the one least disturbed by other jobs
on a shared machine).

Usage (from the repository root; hold the CPU lock on a shared machine)::

    flock /tmp/omlcore-cpu.lock .venv/bin/python benchmarks/pipelines/bench_overhead.py \
        --json benchmarks/pipelines/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_dataset(root: Path, labels: int, per_label: int, size: int, seed: int = 0) -> Path:
    """``labels x per_label`` random RGB images (``size`` px, smooth blobs) and ``root/df.csv`` (train rows only)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["label,path,split,is_query,is_gallery"]
    for label in range(labels):
        base = rng.integers(0, 256, size=(4, 4, 3))
        for k in range(per_label):
            noise = rng.integers(-40, 40, size=(4, 4, 3))
            small = np.clip(base + noise, 0, 255).astype(np.uint8)
            image = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
            name = f"images/{label:04d}_{k}.png"
            image.save(root / name)
            rows.append(f"{label},{name},train,,")
    (root / "df.csv").write_text("\n".join(rows) + "\n")
    return root


def components(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "transforms_train": {"name": "augs_torch", "args": {"im_size": args.im_size}},
        "sampler": {"name": "balance", "args": {"n_labels": args.p, "n_instances": args.k}},
        "extractor": {"name": "resnet", "args": {"arch": args.arch, "weights": None}},
        "loss": {"name": "triplet_with_miner", "args": {"margin": 0.2, "miner": {"name": "hard_triplets"}}},
        "optimizer": {"name": "adam", "args": {"lr": 0.001}},
    }


def run_pipeline(args: argparse.Namespace, root: Path, logs: Path) -> list[float]:
    """Seconds per training epoch through the pipeline (first epoch excluded)."""
    from lightning.pytorch.callbacks import Callback
    from omlcore_lightning import train

    times: list[float] = []

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            times.append(time.perf_counter() - self.start)

    config = {
        "pipeline": "train",
        "seed": 0,
        "run": {"logs_root": str(logs)},
        "trainer": {"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1},
        "data": {"dataset_root": str(root), "num_workers": 0},
        **components(args),
        "checkpoint": {"monitor": "train/loss", "mode": "min"},
    }
    train(config, callbacks=[EpochTimer()], verbose=False)
    return times[1:]


def run_loop(args: argparse.Namespace, root: Path) -> list[float]:
    """Seconds per training epoch of a hand-written loop over the same components (first epoch excluded)."""
    import torch
    from omlcore_images.datasets import get_retrieval_images_datasets
    from torch.utils.data import DataLoader

    from omlcore import build

    spec = components(args)
    torch.manual_seed(0)
    dataset, _ = get_retrieval_images_datasets(root, build("transform", spec["transforms_train"]), None)
    assert dataset is not None
    sampler = build("sampler", spec["sampler"], labels=dataset.get_labels())
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)
    model = build("extractor", spec["extractor"])
    criterion = build("loss", spec["loss"])
    optimizer = build("optimizer", spec["optimizer"], params=model.parameters())
    model.train()
    times = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            loss = criterion(model.extract(batch["input_tensors"]), batch["labels"])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=64, help="labels in the generated dataset")
    parser.add_argument("--per-label", type=int, default=6, help="images per label")
    parser.add_argument("--p", type=int, default=8, help="labels per batch")
    parser.add_argument("--k", type=int, default=4, help="images per label in a batch")
    parser.add_argument("--im-size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--arch", default="resnet18", help="resnet architecture")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is not counted)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    samples_per_epoch = (args.labels // args.p) * args.p * args.k
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "data", args.labels, args.per_label, args.im_size)
        epochs: dict[str, list[float]] = {"loop": [], "pipeline": []}
        for r in range(args.repeat):
            epochs["loop"] += run_loop(args, root)
            epochs["pipeline"] += run_pipeline(args, root, Path(tmp) / f"logs{r}")
            print(f"run {r + 1}/{args.repeat}: loop {epochs['loop'][-args.epochs + 1:]}, "
                  f"pipeline {epochs['pipeline'][-args.epochs + 1:]}", file=sys.stderr, flush=True)  # fmt: skip
    rate = {side: samples_per_epoch / statistics.median(times) for side, times in epochs.items()}
    best = {side: samples_per_epoch / min(times) for side, times in epochs.items()}
    overhead = 1.0 - rate["pipeline"] / rate["loop"]
    overhead_best = 1.0 - best["pipeline"] / best["loop"]
    result = {
        "samples_per_epoch": samples_per_epoch,
        "samples_per_s": rate,
        "samples_per_s_best": best,
        "overhead": overhead,
        "overhead_best": overhead_best,
        "epoch_seconds": epochs,
        "config": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    print(f"{'':10}  samples/s (median epoch)  samples/s (fastest epoch)")
    for side in ("loop", "pipeline"):
        print(f"{side:10}  {rate[side]:24.1f}  {best[side]:25.1f}")
    print(
        f"overhead: {100 * overhead:.1f}% (median), {100 * overhead_best:.1f}% (fastest); "
        f"{samples_per_epoch} samples per epoch"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
