"""``omlcore export onnx``: build the extractor a SPEC names and export it with :func:`export_onnx`."""

from __future__ import annotations

import argparse
import sys

from omlcore_onnx.errors import OnnxMismatchError
from omlcore_onnx.export import declared_input_shape, export_onnx

__all__ = ["cmd_export_onnx"]

EXIT_OK, EXIT_FAIL = 0, 1


def cmd_export_onnx(args: argparse.Namespace) -> int:
    """Run ``omlcore export onnx``; returns the exit status (errors of bad input propagate to the CLI)."""
    from omlcore.config import component_spec_from_text
    from omlcore.errors import ConfigError
    from omlcore.registry import build

    if args.dynamic_batch and args.batch_size == 1:
        raise ConfigError("--batch-size 1 with a dynamic batch: trace with 2 or more, or add --no-dynamic-batch")
    spec = component_spec_from_text(args.extractor, "extractor", option="--extractor")
    extractor = build("extractor", spec)
    input_shape: tuple[int, ...] | None = args.input_shape
    if args.im_size is not None:
        declared = declared_input_shape(extractor)
        channels = declared[0][0] if declared is not None and len(declared[0]) == 3 else 3
        input_shape = (channels, args.im_size, args.im_size)
    print(f"exporting the extractor {spec.name!r} to {args.out} ...", flush=True)
    try:
        report = export_onnx(
            extractor,
            args.out,
            input_shape=input_shape,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            batch_size=args.batch_size,
            check=args.check,
            atol=args.atol,
            rtol=args.rtol,
            exporter=args.exporter,
            keep_on_mismatch=args.keep_on_mismatch,
        )
    except OnnxMismatchError as exc:
        print(exc.report.summary(), flush=True)
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(report.summary())
    return EXIT_OK
