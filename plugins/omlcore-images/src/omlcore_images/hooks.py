"""Hook implementations: the ``omlcore data`` sub-commands.

Import-light on purpose: ``omlcore --help`` loads this module, so torch, numpy, pandas and PIL are
imported only inside the commands (see :mod:`omlcore_images.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omlcore.hookspecs import hookimpl

__all__ = ["omlcore_add_commands"]

CONVERTERS = ("emoji", "sop", "inshop", "cub", "cars")


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore data check|mock|convert``."""
    from omlcore_images import cli

    data = subparsers.add_parser(
        "data",
        help="check, generate or convert image datasets (CSV format)",
        description="Dataset CSVs: check one, write the mock dataset, or convert a public dataset.",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    check = dsub.add_parser(
        "check",
        help="check a dataset CSV (exit 0 valid, 2 invalid)",
        description="Report every problem of a dataset CSV with its line numbers (the header is line 1) "
        "and column. Exit 0 when there is no error, 2 otherwise.",
    )
    check.add_argument("csv", type=Path, metavar="CSV")
    check.add_argument("--root", type=Path, help="folder relative paths start from (default: the CSV's folder)")
    check.add_argument("--images", action="store_true", help="also decode every image (in parallel)")
    check.add_argument("--workers", type=int, default=None, help="threads for --images (default: CPUs + 4)")
    check.add_argument("--no-paths", action="store_true", help="do not check that the files exist")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--quiet", action="store_true", help="no progress line")
    check.set_defaults(func=cli.cmd_check)

    mock = dsub.add_parser("mock", help="write the mock dataset (24 drawn figures, 4 CSVs) into DIR")
    mock.add_argument("directory", type=Path, metavar="DIR")
    mock.set_defaults(func=cli.cmd_mock)

    convert = dsub.add_parser(
        "convert",
        help="convert a public dataset to the CSV format",
        description="Write DST/df.csv for a dataset unpacked in SRC. Image paths in the CSV are relative "
        "to DST. Nothing is written unless the whole conversion succeeds.",
    )
    convert.add_argument("name", choices=CONVERTERS, metavar="NAME", help=f"one of: {', '.join(CONVERTERS)}")
    convert.add_argument("--src", type=Path, required=True, help="the unpacked dataset")
    convert.add_argument("--dst", type=Path, required=True, help="where to write the CSV")
    convert.add_argument("--csv-name", default="df.csv", help="file name of the CSV (default: df.csv)")
    convert.add_argument("--seed", type=int, default=0, help="emoji: seed of the train/validation split of classes")
    convert.add_argument("--query-vendor", default="twitter", help="emoji: vendor whose images are the queries")
    convert.add_argument("--no-bboxes", action="store_true", help="inshop, cub, cars: leave the boxes out")
    convert.set_defaults(func=cli.cmd_convert)
