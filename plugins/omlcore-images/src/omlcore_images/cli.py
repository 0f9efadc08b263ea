"""The ``omlcore data`` commands (heavy imports happen here, when a command runs)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["cmd_check", "cmd_convert", "cmd_mock"]

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def cmd_check(args: argparse.Namespace) -> int:
    """``omlcore data check CSV``: print the report; exit 2 on errors (or warnings with --strict)."""
    from omlcore_images.dataframe import check_dataframe

    report = check_dataframe(
        args.csv,
        root=args.root,
        check_paths=not args.no_paths,
        check_images=args.images,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(report.format())
    failed = bool(report.errors) or (args.strict and bool(report.warnings))
    print("INVALID" if failed else "OK")
    return EXIT_INVALID if failed else EXIT_OK


def cmd_mock(args: argparse.Namespace) -> int:
    """``omlcore data mock DIR``: write the mock dataset."""
    from omlcore_images.mock import CSV_NAMES, make_mock_dataset

    train, val = make_mock_dataset(args.directory)
    print(
        f"Wrote the mock dataset to {args.directory}: {len(train) + len(val)} images "
        f"({len(train)} train, {len(val)} validation) and {', '.join(CSV_NAMES)}."
    )
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    """``omlcore data convert NAME --src DIR --dst DIR``: write the dataset's CSV."""
    from omlcore_images.converters import convert
    from omlcore_images.errors import ConversionError, DataFrameError

    options: dict[str, object] = {"csv_name": args.csv_name}
    if args.name == "emoji":
        options |= {"seed": args.seed, "query_vendor": args.query_vendor}
    elif args.name in ("inshop", "cub", "cars"):
        options["bboxes"] = not args.no_bboxes
    try:
        result = convert(args.name, args.src, args.dst, **options)
    except (ConversionError, DataFrameError) as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(result.summary())
    return EXIT_OK
