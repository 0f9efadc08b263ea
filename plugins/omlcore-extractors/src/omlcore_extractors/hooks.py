"""Hook implementations: the ``omlcore embed`` and ``omlcore zoo`` sub-commands.

Import-light on purpose: ``omlcore --help`` loads this module, so torch, timm and numpy are imported only
when a command runs (see :mod:`omlcore_extractors.embed` and :mod:`omlcore_extractors.zoo_cli`).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from omlcore.hookspecs import hookimpl

__all__ = ["omlcore_add_commands"]


def _run_embed(args: argparse.Namespace) -> int:
    from omlcore_extractors.embed import cmd_embed

    return cmd_embed(args)


def add_embed_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore embed`` to ``subparsers``."""
    em = subparsers.add_parser(
        "embed",
        help="compute embeddings of images with an extractor and save them as an N x D .npy",
        description="Embed the images of a dataset CSV (one row per data row, in CSV order) or of a folder "
        "(files sorted by path) with an extractor, and write an N x D float32 .npy whose row i belongs to "
        "input i. The file is written atomically: on any error nothing is left at --out. Pairs with "
        "`omlcore evaluate --embeddings OUT --csv CSV`. Exit 0, or 2 on bad input.",
    )
    em.add_argument(
        "--extractor",
        required=True,
        metavar="SPEC",
        help="the extractor (group omlcore.extractors): a registered name ('efficientnet_lite0'), a YAML "
        "mapping ('{name: resnet, args: {arch: resnet18, weights: resnet18_imagenet1k_v1}}') or a .yaml/.json "
        "file holding one; args are checked like a config's",
    )
    src = em.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, metavar="CSV", help="a dataset CSV (column 'path'; rows embedded in order)")
    src.add_argument("--images", type=Path, metavar="DIR", help="a folder of images (searched recursively)")
    em.add_argument("--out", type=Path, required=True, metavar="E.npy", help="where to write the N x D array")
    em.add_argument("--root", type=Path, help="folder relative CSV paths start from (default: the CSV's folder)")
    em.add_argument(
        "--transform",
        metavar="SPEC",
        help="eval transform, given like --extractor (group omlcore.transforms); default: the zoo key's "
        "evaluation transform when the weights are a zoo key, else a square resize to the model's input size "
        "(224) with ImageNet normalisation",
    )
    em.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    em.add_argument("--num-workers", type=int, default=0, help="data loader workers (default 0)")
    em.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    em.add_argument(
        "--amp", choices=("off", "fp16", "bf16"), default="off", help="autocast dtype (default off; fp16 on CUDA)"
    )
    em.add_argument("--no-bbox", action="store_true", help="ignore x_1, y_1, x_2, y_2 columns of the CSV")
    em.add_argument("--quiet", action="store_true", help="no progress bar")
    em.set_defaults(func=_run_embed)


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore embed`` and, when the zoo module is present, ``omlcore zoo``."""
    add_embed_parser(subparsers)
    if importlib.util.find_spec("omlcore_extractors.zoo_cli") is not None:
        from omlcore_extractors import zoo_cli

        zoo_cli.add_parser(subparsers)
