"""Hook implementations: the ``omlcore train-postprocessor`` command, and the checks of its configs (so that
``omlcore check`` reports what the command would refuse).

Import-light on purpose: ``omlcore --help`` loads this module, so torch and Lightning are imported only when
the command runs (see :mod:`omlcore_reranking.pipeline`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omlcore.hookspecs import hookimpl

if TYPE_CHECKING:
    from pydantic import BaseModel

    from omlcore.errors import ConfigIssue

__all__ = ["omlcore_add_commands", "omlcore_validate_config"]

EXIT_OK, EXIT_INVALID, EXIT_INTERRUPTED = 0, 2, 130


def _run_train_postprocessor(args: argparse.Namespace) -> int:
    from omlcore.errors import ConfigError, ConfigValidationError
    from omlcore_reranking.errors import RerankingError

    try:
        from omlcore_reranking.pipeline import train_postprocessor
    except ImportError as exc:  # Lightning or omlcore-lightning missing
        print(
            f"omlcore train-postprocessor needs omlcore-lightning ({exc}); install it: "
            f'pip install "omlcore-reranking[pipelines]"',
            file=sys.stderr,
        )
        return EXIT_INVALID
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `omlcore train-postprocessor --resume RUN trainer.max_epochs=5`
        config = None
    if config is None:
        if args.resume is None:
            print("omlcore train-postprocessor: give a CONFIG, or --resume RUN_DIR to continue a run", file=sys.stderr)
            return EXIT_INVALID
        config = str(Path(args.resume) / "config.yaml")
    try:
        if args.resume is not None:
            from omlcore_lightning.run import RunFolder

            RunFolder(args.resume).checkpoint_to_resume()  # a clear message before reading its config
        result = train_postprocessor(config, overrides, resume=args.resume, verbose=not args.quiet)
    except ConfigValidationError as exc:
        print(f"{config}: invalid config, {len(exc.issues)} problem(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    except (ConfigError, RerankingError) as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if any(os.environ.get(v, "0") not in ("", "0") for v in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        return EXIT_INTERRUPTED if result.interrupted else EXIT_OK  # a process launched for DDP: rank 0 reports
    print(f"run folder: {result.run_dir}")
    if result.interrupted:
        print(f"interrupted; continue with: omlcore train-postprocessor --resume {result.run_dir}")
        return EXIT_INTERRUPTED
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint}")
    for name, value in result.metrics.items():
        print(f"{name}: {result.baseline.get(name, float('nan')):.4f} -> {value:.4f}")
    return EXIT_OK


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore train-postprocessor``."""
    cmd = subparsers.add_parser(
        "train-postprocessor",
        help="train a pairwise re-ranker (STIR) on a frozen extractor's top-k (pipeline: train_postprocessor)",
        description="Check the config, embed the train and validation rows with the frozen extractor (cached in "
        "embeddings_cache.folder, refused if stale), train the pairwise model on pairs mined per batch (BCE on "
        "'is negative') and validate by re-ranking the validation top-k. Writes a run folder (config.yaml, "
        "metrics.json, checkpoints/{best,last}.ckpt), sending parameters and metrics to the config's experiment "
        "loggers. Ctrl-C saves a checkpoint; --resume continues a run. "
        "Exit 0 done, 2 invalid input, 130 interrupted.",
    )
    cmd.add_argument(
        "config",
        nargs="?",
        help="YAML config with 'pipeline: train_postprocessor' (optional with --resume: the run's config.yaml)",
    )
    cmd.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. trainer.max_epochs=3 embeddings_cache.refresh=true"
    )
    cmd.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its last checkpoint")
    cmd.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    cmd.set_defaults(func=_run_train_postprocessor)


@hookimpl
def omlcore_validate_config(config: BaseModel) -> Sequence[ConfigIssue]:
    """For ``pipeline: train_postprocessor``: :func:`omlcore_reranking.pipeline.train_postprocessor_issues`
    (imports torch, for that pipeline only)."""
    from omlcore_reranking.config import TrainPostprocessorConfig

    if not isinstance(config, TrainPostprocessorConfig):
        return []
    from omlcore_reranking.pipeline import train_postprocessor_issues

    return train_postprocessor_issues(config)
