"""Hook implementations: the ``omlcore train-postprocessor`` command.

Import-light on purpose: ``omlcore --help`` loads this module, so torch and Lightning are imported only when
the command runs (see :mod:`omlcore_reranking.pipeline`).
"""

from __future__ import annotations

import argparse
import sys

from omlcore.hookspecs import hookimpl

__all__ = ["omlcore_add_commands"]

EXIT_OK, EXIT_INVALID = 0, 2


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
    try:
        result = train_postprocessor(args.config, args.overrides, verbose=not args.quiet)
    except ConfigValidationError as exc:
        print(f"{args.config}: invalid config, {len(exc.issues)} problem(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    except (ConfigError, RerankingError) as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"run folder: {result.run_dir}")
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
        "metrics.json, checkpoints/best.ckpt). Exit 0 done, 2 invalid input.",
    )
    cmd.add_argument("config", help="YAML config with 'pipeline: train_postprocessor'")
    cmd.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. trainer.max_epochs=3 embeddings_cache.refresh=true"
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    cmd.set_defaults(func=_run_train_postprocessor)
