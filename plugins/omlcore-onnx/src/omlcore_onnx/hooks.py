"""Hook implementations: the ``omlcore export onnx`` sub-command.

Import-light on purpose: ``omlcore --help`` loads this module, so torch, onnx and onnxruntime are imported
only when the command runs (see :mod:`omlcore_onnx.cli`).
"""

from __future__ import annotations

import argparse

from omlcore.hookspecs import hookimpl

__all__ = ["omlcore_add_commands"]


def _run_export_onnx(args: argparse.Namespace) -> int:
    from omlcore_onnx.cli import cmd_export_onnx

    return cmd_export_onnx(args)


def _export_formats(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    """The sub-commands of ``omlcore export``, created on first use so other plugins can add formats too."""
    export = subparsers.choices.get("export")
    if export is None:
        export = subparsers.add_parser(
            "export",
            help="export a model to another format (onnx, ...)",
            description="Export a model to another format; each format is a sub-command added by a plugin.",
        )
        export.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    for action in export._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None  # another plugin took `export` for a command without formats: leave it alone


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive sizes of one input item, e.g. 3,224,224; got {text!r}"
        ) from None
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return dims


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore export onnx``."""
    formats = _export_formats(subparsers)
    if formats is None:
        return
    onnx = formats.add_parser(
        "onnx",
        help="export an extractor to ONNX, checked with onnxruntime",
        description="Export the extractor SPEC (its extract(), in eval mode) to an ONNX file, then run the file "
        "with onnxruntime on random inputs and compare with torch. SPEC is a registered name, a YAML mapping "
        "'{name: resnet, args: {arch: resnet18, weights: null}}' or a YAML file. The file appears at --out only "
        "when the check passes. Exit 0 on success, 1 on an export failure or a mismatch, 2 on bad input.",
    )
    onnx.add_argument("--extractor", required=True, metavar="SPEC", help="the extractor: name, YAML mapping or file")
    onnx.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write (replaced if it exists)")
    size = onnx.add_mutually_exclusive_group()
    size.add_argument(
        "--im-size", type=_positive_int, metavar="S", help="square images: input (C, S, S), C=3 unless declared"
    )
    size.add_argument(
        "--input-shape", type=_shape, metavar="C,H,W", help="shape of one input item without the batch dimension"
    )
    onnx.add_argument("--opset", type=_positive_int, metavar="N", help="ONNX opset (default: the exporter's)")
    onnx.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave the batch dimension free (default) or fix it to --batch-size",
    )
    onnx.add_argument(
        "--batch-size", type=_positive_int, metavar="B", help="example batch to trace (default: 2 dynamic, 1 fixed)"
    )
    onnx.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare onnxruntime with torch on random inputs (default: on)",
    )
    onnx.add_argument("--atol", type=_tolerance, default=1e-4, help="absolute tolerance (default 1e-4)")
    onnx.add_argument("--rtol", type=_tolerance, default=1e-4, help="tolerance relative to |torch| (default 1e-4)")
    onnx.add_argument(
        "--keep-on-mismatch",
        action="store_true",
        help="keep the file when the check fails (the exit status is 1 all the same)",
    )
    onnx.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="torch exporter: dynamo (torch.export-based), torchscript, or auto (dynamo, else torchscript)",
    )
    onnx.set_defaults(func=_run_export_onnx)
