"""The few pluggy hooks of omlcore: places where *several* plugins contribute or observe.

Components (losses, miners, loggers...) are not registered through hooks; they are entry points of
their kind's group (see :mod:`omlcore.registry`). A plugin implements hooks in a module it declares
under the ``omlcore`` entry-point group::

    [project.entry-points.omlcore]
    omlcore-mlflow = "omlcore_mlflow.hooks"

and marks each implementation with :data:`omlcore.hookimpl`. Hook modules must stay import-light:
import torch, Lightning or an SDK inside the hook body, never at module top level.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from omlcore.errors import ConfigIssue

PROJECT = "omlcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "omlcore_add_commands",
    "omlcore_run_finished",
    "omlcore_trainer_callbacks",
    "omlcore_validate_config",
]


@hookspec
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add sub-commands to the ``omlcore`` CLI.

    Call ``subparsers.add_parser("name", help=...)``, add arguments, and set the function to run with
    ``parser.set_defaults(func=run)``; ``run(args: argparse.Namespace) -> int`` returns the exit code.
    Called every time the CLI starts, so keep it cheap.
    """


@hookspec
def omlcore_validate_config(config: BaseModel) -> Sequence[ConfigIssue]:
    """Extra checks of a parsed config, run by ``omlcore check`` and before every pipeline.

    Return the problems found (an empty list if none), each with the dotted path it concerns. Run after
    the structure is valid; every plugin's answer is reported.
    """
    raise NotImplementedError  # pragma: no cover - spec only


@hookspec
def omlcore_trainer_callbacks(config: BaseModel) -> Sequence[Any]:
    """Lightning callbacks to add to the ``Trainer`` of a training or validation run.

    Return a list of ``lightning.pytorch.Callback`` objects (possibly empty). Use ``tryfirst`` or
    ``trylast`` on the implementation to order them relative to other plugins.
    """
    raise NotImplementedError  # pragma: no cover - spec only


@hookspec
def omlcore_run_finished(config: BaseModel, run_dir: Path, metrics: Mapping[str, float]) -> None:
    """Observe a finished pipeline run: its config, its output folder and its final metrics.

    Use it to upload a model, send a notification or index the run. Exceptions are reported but do not
    change the run's result.
    """
