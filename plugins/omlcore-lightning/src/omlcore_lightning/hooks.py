"""Hook implementations: the ``omlcore train``, ``omlcore validate`` and ``omlcore predict`` commands.

Import-light on purpose: ``omlcore --help`` loads this module, so torch and Lightning are imported only
when a command runs (see :mod:`omlcore_lightning.cli`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omlcore.hookspecs import hookimpl

if TYPE_CHECKING:
    from pydantic import BaseModel

    from omlcore.errors import ConfigIssue

__all__ = ["omlcore_add_commands", "omlcore_validate_config"]

_OVERRIDES_HELP = "dotted overrides, e.g. trainer.max_epochs=3 loss.args.margin=0.2 ~logger"


def _run(name: str) -> object:
    def run(args: argparse.Namespace) -> int:
        from omlcore_lightning import cli

        command: object = getattr(cli, name)
        return int(command(args))  # type: ignore[operator]

    return run


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore train``, ``omlcore validate`` and ``omlcore predict``."""
    train = subparsers.add_parser(
        "train",
        help="train an extractor from a config (pipeline: train)",
        description="Validate the config and the dataset CSV, then train, writing one run folder (config.yaml, "
        "checkpoints/, metrics.json, figures, logger output). Ctrl-C stops at the next batch and saves a "
        "checkpoint; --resume continues a run. Exit 0 done, 2 invalid input, 130 interrupted.",
    )
    train.add_argument("config", nargs="?", help="YAML config (optional with --resume: the run's config.yaml)")
    train.add_argument("overrides", nargs="*", help=_OVERRIDES_HELP)
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its last checkpoint")
    train.set_defaults(func=_run("cmd_train"))

    validate = subparsers.add_parser(
        "validate",
        help="retrieval metrics of an extractor on a dataset (pipeline: validate)",
        description="Validate the config and the dataset CSV, then compute the metrics on its validation rows, "
        "writing a run folder (config.yaml, metrics.json, figures).",
    )
    validate.add_argument("config", help="YAML config")
    validate.add_argument("overrides", nargs="*", help=_OVERRIDES_HELP)
    validate.set_defaults(func=_run("cmd_validate"))

    predict = subparsers.add_parser(
        "predict",
        help="embeddings of every image in a folder (pipeline: predict)",
        description="Embed every image under data.data_dir; write save_dir/embeddings.npy (N x D) and "
        "save_dir/paths.csv (row i: the image of embedding i, relative to data_dir).",
    )
    predict.add_argument("config", help="YAML config")
    predict.add_argument("overrides", nargs="*", help=_OVERRIDES_HELP)
    predict.set_defaults(func=_run("cmd_predict"))


@hookimpl
def omlcore_validate_config(config: BaseModel) -> Sequence[ConfigIssue]:
    """Training configs: ``checkpoint.monitor`` and ``scheduling.monitor`` name metrics the config computes
    (so ``omlcore check`` reports a misspelt monitor without any data)."""
    from omlcore.schemas import TrainConfig

    if not isinstance(config, TrainConfig):
        return []
    from omlcore_lightning.pipelines import monitor_issues

    return monitor_issues(config)
