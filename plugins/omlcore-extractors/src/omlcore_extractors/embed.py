"""``omlcore embed``: embeddings of a dataset CSV or a folder of images, saved as an ``N x D`` ``.npy``.

Row ``i`` of the output belongs to data row ``i`` of the CSV (all splits, file order), or to the ``i``-th
image of the folder in sorted path order. The file is written through a temporary file in the same folder
and renamed into place: on any error nothing is left at ``--out``. Started by ``torchrun`` (``WORLD_SIZE`` > 1),
the processes split the images, every one gathers all rows, and rank 0 writes the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from omlcore.errors import OmlcoreError

__all__ = ["IMAGE_SUFFIXES", "EmbedInputError", "cmd_embed", "list_images", "save_npy_atomic"]

EXIT_OK = 0
EXIT_INVALID = 2

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File name endings ``--images DIR`` embeds (case-insensitive)."""


class EmbedInputError(OmlcoreError, ValueError):
    """A command-line input of ``omlcore embed`` is wrong (what and where is in the message)."""


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files under ``folder`` (recursively, hidden files and folders skipped), sorted by their
    path relative to ``folder`` (``/``-separated, code point order)."""
    root = Path(folder)
    if not root.is_dir():
        raise EmbedInputError(f"--images {str(root)!r} is not a folder")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise EmbedInputError(
            f"--images {str(root)!r} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}, searched recursively)"
        )
    return found


def save_npy_atomic(array: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` with ``numpy.save`` through a temporary file in the same folder, then rename it."""
    import numpy as np

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _weights_key(spec: Any) -> str | None:
    """The zoo key among the spec's weights (the outer one, else a nested extractor's), if any."""
    from omlcore_extractors.base import _zoo_table

    table = _zoo_table()
    args = spec.args if hasattr(spec, "args") else {}
    weights = args.get("weights")
    if isinstance(weights, str) and weights in table:
        return weights
    nested = args.get("extractor")
    if isinstance(nested, dict) and isinstance(nested.get("args"), dict):
        inner = nested["args"].get("weights")
        if isinstance(inner, str) and inner in table:
            return inner
    return None


def _default_transform(spec: Any, extractor: Any) -> tuple[Any, str]:
    """The zoo key's evaluation transform, else a square resize to the model's input size (224)."""
    key = _weights_key(spec)
    if key is not None:
        from omlcore_extractors.base import _zoo

        zoo = _zoo()
        if zoo is not None and hasattr(zoo, "eval_transform"):
            return zoo.eval_transform(key), f"the evaluation transform of {key!r}"
    from omlcore_images.transforms import norm_resize_torch

    size = int(getattr(extractor, "input_size", 224))
    return norm_resize_torch(im_size=size), f"norm_resize_torch(im_size={size})"


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise EmbedInputError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.num_workers < 0:
        raise EmbedInputError(f"--num-workers must be 0 or more, got {args.num_workers}")
    if args.out.suffix != ".npy":
        raise EmbedInputError(f"--out must end with .npy, got {str(args.out)!r}")
    if args.out.is_dir():
        raise EmbedInputError(f"--out {str(args.out)!r} is a folder; give a file name ending with .npy")
    if args.csv is not None and not args.csv.is_file():
        raise EmbedInputError(f"--csv {str(args.csv)!r} does not exist")


def cmd_embed(args: argparse.Namespace) -> int:
    """``omlcore embed``; exit 0, or 2 on bad input (the message says what and where)."""
    from omlcore.errors import ConfigError

    try:
        return _run(args)
    except (ConfigError, EmbedInputError) as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OmlcoreError as exc:
        from omlcore_images.errors import DataFrameError, ImageReadError

        from omlcore_extractors.errors import InputSizeError, UnknownArchError, WeightsError

        if isinstance(exc, (WeightsError, UnknownArchError, InputSizeError, DataFrameError, ImageReadError)):
            print(f"omlcore: error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        raise


def _init_distributed(device: str | None) -> tuple[bool, str | None]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment), if not joined yet.

    Returns whether this call created the group (so it destroys it) and the device this rank should use.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        return False, device
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if cuda and device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    dist.init_process_group("nccl" if cuda else "gloo")
    return True, device


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    created, device = _init_distributed(args.device)
    try:
        return _embed(args, device)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _embed(args: argparse.Namespace, device: str | None) -> int:
    import torch

    import omlcore
    from omlcore.config import component_spec_from_text
    from omlcore_extractors.inference import inference_on_csv, inference_on_images

    spec = component_spec_from_text(args.extractor, "extractor", option="--extractor")
    transform = None
    if args.transform is not None:
        tspec = component_spec_from_text(args.transform, "transform", option="--transform")
        transform = omlcore.build("transform", tspec)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    extractor = omlcore.build("extractor", spec)
    if transform is None:
        transform, described = _default_transform(spec, extractor)
        if not args.quiet:
            print(f"omlcore embed: transform: {described}", file=sys.stderr)
    common: dict[str, Any] = {
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "device": device,
        "amp": args.amp,
        "progress": not args.quiet,
    }
    if args.csv is not None:
        emb = inference_on_csv(extractor, args.csv, transform, root=args.root, use_bboxes=not args.no_bbox, **common)
        source = str(args.csv)
    else:
        paths = list_images(args.images)
        emb = inference_on_images(extractor, paths, transform, **common)
        source = f"{len(paths)} images under {args.images}"
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return EXIT_OK  # every rank holds the full matrix; rank 0 writes it
    out = save_npy_atomic(emb.numpy(), args.out)
    if not args.quiet:
        print(f"omlcore embed: wrote {out} ({emb.shape[0]} x {emb.shape[1]}, float32) from {source}", file=sys.stderr)
    return EXIT_OK
