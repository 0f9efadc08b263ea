"""The ``omlcore train|validate|predict`` commands (heavy imports happen here, when a command runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["cmd_predict", "cmd_train", "cmd_validate"]

EXIT_OK, EXIT_FAIL, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_config_error(config: object, exc: Exception) -> int:
    from omlcore.errors import ConfigValidationError

    if isinstance(exc, ConfigValidationError):
        print(f"{config}: invalid config, {len(exc.issues)} problem(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
    else:
        print(f"omlcore: error: {exc}", file=sys.stderr)
    return EXIT_INVALID


def _guarded(config: object, run: object) -> int:
    from omlcore_images.errors import DataFrameError

    from omlcore.errors import ConfigError

    try:
        return int(run())  # type: ignore[operator]
    except ConfigError as exc:
        return _print_config_error(config, exc)
    except DataFrameError as exc:
        print(f"omlcore: the dataset CSV has errors, nothing was trained or written:\n{exc}", file=sys.stderr)
        return EXIT_INVALID


def cmd_train(args: argparse.Namespace) -> int:
    """``omlcore train [CONFIG] [OVERRIDES] [--resume RUN_DIR]``."""
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `omlcore train --resume RUN trainer.max_epochs=20`
        config = None
    if config is None:
        if args.resume is None:
            print("omlcore train: give a CONFIG, or --resume RUN_DIR to continue a run", file=sys.stderr)
            return EXIT_INVALID
        config = str(Path(args.resume) / "config.yaml")

    def run() -> int:
        from omlcore_lightning.pipelines import train
        from omlcore_lightning.run import RunFolder

        if args.resume is not None:
            RunFolder(args.resume).checkpoint_to_resume()  # a clear message before reading its config
        result = train(config, overrides, resume=args.resume)
        return EXIT_INTERRUPTED if result.interrupted else EXIT_OK

    return _guarded(config, run)


def cmd_validate(args: argparse.Namespace) -> int:
    """``omlcore validate CONFIG [OVERRIDES]``."""

    def run() -> int:
        from omlcore_lightning.pipelines import validate

        validate(args.config, args.overrides)
        return EXIT_OK

    return _guarded(args.config, run)


def cmd_predict(args: argparse.Namespace) -> int:
    """``omlcore predict CONFIG [OVERRIDES]``."""

    def run() -> int:
        from omlcore_lightning.pipelines import predict

        predict(args.config, args.overrides)
        return EXIT_OK

    return _guarded(args.config, run)
