"""Experiment loggers in the pipelines: building them from the config and handing them to Lightning.

A config's ``logger`` is one ``{name, args}`` spec or a list of them. Each is built from the
``omlcore.loggers`` group; a logger whose constructor takes ``run_dir`` gets the run folder, so its
output lands there (and ``tags``, the config's ``run.tags``). Scalars reach each backend through its
``lightning_logger()``, or, for a backend without one (``None``), through :class:`ExperimentLoggerBridge`.
Parameters, figures and artifacts are sent by the pipeline through the
:class:`~omlcore.protocols.ExperimentLogger` methods. A backend failing in one of those calls is reported
as a warning and does not stop the run.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from omlcore.schemas import ComponentSpec

__all__ = ["ExperimentLoggerBridge", "ExperimentLoggers", "build_loggers"]


def build_loggers(
    specs: ComponentSpec | Sequence[ComponentSpec] | None, run_dir: Path, tags: Sequence[str] = ()
) -> list[Any]:
    """The experiment loggers a config's ``logger`` slot names (empty for ``null``).

    The run-time arguments ``run_dir`` (the run folder) and ``tags`` (``run.tags``) are given to each
    logger whose constructor takes them, unless its ``args`` set them. If one fails to start (no
    credentials, server down), those already started are finished as ``"failed"`` and the error raised.
    """
    from omlcore.registry import get_registry

    if specs is None:
        return []
    registry = get_registry()
    out: list[Any] = []
    try:
        for spec in [specs] if isinstance(specs, ComponentSpec) else list(specs):
            accepts = registry.args_model("logger", spec.name).accepts
            offered: dict[str, Any] = {"run_dir": run_dir, "tags": list(tags)}
            runtime = {
                name: value
                for name, value in offered.items()
                if (accepts is None or name in accepts) and name not in spec.args
            }
            out.append(registry.build("logger", spec, **runtime))
    except BaseException:
        for built in out:  # the ones already started (a list of loggers): close their runs as failed
            with contextlib.suppress(Exception):
                built.finish("failed")
        raise
    return out


class ExperimentLoggerBridge(Logger):
    """A Lightning logger that forwards scalars to an experiment logger without a Lightning logger."""

    def __init__(self, experiment_logger: Any, name: str = "omlcore") -> None:
        super().__init__()
        self.experiment_logger = experiment_logger
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Parameters are sent by the pipeline (``log_params``), not through Lightning."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.experiment_logger.log_metrics(dict(metrics), step)


class ExperimentLoggers:
    """The run's experiment loggers, each call guarded so a failing backend only warns."""

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def lightning_loggers(self) -> list[Logger]:
        out: list[Logger] = []
        for lg in self.loggers:
            native = lg.lightning_logger()
            out.append(native if native is not None else ExperimentLoggerBridge(lg, type(lg).__name__))
        return out

    def _each(self, method: str, *args: Any) -> None:
        for lg in self.loggers:
            try:
                getattr(lg, method)(*args)
            except Exception as exc:
                warnings.warn(
                    f"the experiment logger {type(lg).__name__} failed in {method}(): {type(exc).__name__}: {exc}",
                    stacklevel=3,
                )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._each("log_params", dict(params))

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        self._each("log_figure", figure, title, step)

    def log_artifact(self, path: Path, name: str | None = None) -> None:
        self._each("log_artifact", path, name)

    def finish(self, status: str) -> None:
        self._each("finish", status)
