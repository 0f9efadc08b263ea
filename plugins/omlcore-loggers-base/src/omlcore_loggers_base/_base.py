"""The shared base of the backend loggers: the ``ExperimentLogger`` methods, with the failure policy.

A backend subclasses :class:`BaseLogger`, builds its SDK objects in ``__init__`` (failing there, before
any training, when the SDK, the credentials or the server is missing) and implements the ``_log_*``
methods with plain SDK calls. The public methods prepare the input once for every backend (flattened
params, float metrics, PNG figures, checked artifact names) and run the backend's method under the
failure policy:

- a failing logging call is **reported, not raised**: the first failure of each kind of call emits a
  :class:`LoggerFailureWarning`, every failure is logged to the ``omlcore.loggers`` logging channel
  with its traceback and kept in :attr:`BaseLogger.failures`, and the run goes on;
- after :attr:`BaseLogger.max_failures` failures the logger stops calling its backend (and says so);
- with ``strict=True`` a failure raises :class:`~omlcore_loggers_base.LoggerCallError` instead;
- a logger never writes into the pipeline's run folder outside its own files, and only reads
  checkpoints (to upload a copy), so its failure cannot damage the run folder or the checkpoints.

Lightning calls its logger directly during ``Trainer.fit``; the Lightning loggers handed out by
:meth:`BaseLogger.lightning_logger` go through the same policy (see :class:`GuardedLightningLogger`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from omlcore_loggers_base._checks import is_rank_zero
from omlcore_loggers_base._errors import LoggerCallError
from omlcore_loggers_base._media import figure_to_png
from omlcore_loggers_base._names import artifact_name
from omlcore_loggers_base._params import ParamValue, flatten_params

__all__ = ["BaseLogger", "GuardedLightningLogger", "LoggerFailure", "LoggerFailureWarning"]

log = logging.getLogger("omlcore.loggers")

T = TypeVar("T")


class LoggerFailureWarning(UserWarning):
    """A logging call failed; the run goes on (see the failure policy in :mod:`omlcore_loggers_base`)."""


@dataclass(frozen=True)
class LoggerFailure:
    """One failed logging call: which backend, which call, and the error as text."""

    backend: str
    call: str
    error: str

    def __str__(self) -> str:
        return f"{self.backend}: {self.call}: {self.error}"


class BaseLogger:
    """Common implementation of :class:`omlcore.protocols.ExperimentLogger` for the backend plugins.

    Arguments every backend takes (the backend's constructor passes them on):

    - ``run_dir``: the pipeline's run folder (a run-time argument, not written in configs); backends put
      their local files under it by default and name the run after it.
    - ``tags``: the run's tags (``run.tags`` of the config; a run-time argument too).
    - ``log_checkpoint``: upload the best checkpoint when the run finishes (its path is learnt from
      Lightning's ``ModelCheckpoint`` through the Lightning logger).
    - ``strict``: raise on a failed logging call instead of reporting it.

    A subclass sets :attr:`backend` and implements :meth:`_log_params`, :meth:`_log_metrics`,
    :meth:`_log_figure`, :meth:`_log_artifact` and :meth:`_finish`, and may override
    :meth:`_make_lightning_logger` and :attr:`experiment`.
    """

    backend: ClassVar[str] = "?"
    max_failures: ClassVar[int] = 20
    """After this many failed calls the logger stops calling its backend."""

    def __init__(
        self,
        *,
        run_dir: str | Path | None = None,
        tags: Iterable[str] = (),
        log_checkpoint: bool = False,
        strict: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.tags: tuple[str, ...] = tuple(dict.fromkeys(str(t) for t in tags))
        self.log_checkpoint = log_checkpoint
        self.strict = strict
        self.active = is_rank_zero()
        """False in the second and later processes of a distributed run: every call is then a no-op."""
        self.failures: list[LoggerFailure] = []
        self.status: str | None = None
        """``None`` while the run is open, then the status given to :meth:`finish`."""
        self.best_checkpoint: Path | None = None
        self._disabled = False
        self._reported: set[str] = set()
        self._lightning: Any = None

    # ---- what subclasses provide -------------------------------------------------------------------
    @property
    def run_name(self) -> str | None:
        """The run's display name: the run folder's name when there is one."""
        return self.run_dir.name if self.run_dir is not None else None

    @property
    def run_id(self) -> str | None:
        """The backend's id of the run, if it has one."""
        return None

    @property
    def experiment(self) -> Any:
        """The backend's own run object (a ``SummaryWriter``, a W&B ``Run``, a ClearML ``Task``...)."""
        return None

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        raise NotImplementedError

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        raise NotImplementedError

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        raise NotImplementedError

    def _log_artifact(self, path: Path, name: str) -> None:
        raise NotImplementedError

    def _finish(self, status: str) -> None:
        raise NotImplementedError

    def _make_lightning_logger(self) -> Any:
        """A Lightning logger writing into this run; default: one that forwards to this logger."""
        from omlcore_loggers_base.lightning import ForwardingLightningLogger

        return ForwardingLightningLogger(self)

    # ---- ExperimentLogger ---------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the run's config: nested mappings or config objects are flattened to ``a/b/c`` keys."""
        self._call("log_params", lambda: self._log_params(flatten_params(params)))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record scalar metrics (``{"OVERALL/cmc/1": 0.5}``) at ``step`` (a global step or an epoch)."""

        def call() -> None:
            values = {str(name): float(value) for name, value in metrics.items()}
            self._log_metrics(values, None if step is None else int(step))

        self._call("log_metrics", call)

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        """Record a matplotlib figure (or PIL image, or PNG bytes) under ``title`` at ``step``. The figure is
        not closed."""
        self._call("log_figure", lambda: self._log_figure(figure_to_png(figure), str(title), int(step)))

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        """Store a copy of the file ``path`` with the run, as ``name`` (default: the file's name)."""

        def call() -> None:
            source = Path(path)
            if not source.is_file():
                raise FileNotFoundError(f"artifact {str(source)!r} is not a file")
            self._log_artifact(source, artifact_name(source, name))

        self._call("log_artifact", call)

    def lightning_logger(self) -> Any:
        """The ``lightning.pytorch.loggers.Logger`` that writes into this run (always the same object).
        Its calls follow this logger's failure policy; its ``finalize`` only flushes, :meth:`finish`
        closes the run. Needs lightning."""
        if self._lightning is None:
            if self.active:
                self._lightning = self._make_lightning_logger()
            else:
                from omlcore_loggers_base.lightning import ForwardingLightningLogger

                self._lightning = ForwardingLightningLogger(self)
        return self._lightning

    def finish(self, status: str = "success") -> None:
        """Upload the best checkpoint (with ``log_checkpoint``), then flush and close the run as
        ``"success"`` or ``"failed"``. Calling it again does nothing."""
        if self.status is not None:
            return
        if self.log_checkpoint and self.best_checkpoint is not None and self.best_checkpoint.is_file():
            self.log_artifact(self.best_checkpoint)
        self._call("finish", lambda: self._finish(status))
        self.status = status
        if self.failures and self.active:
            warnings.warn(
                f"the {self.backend} logger had {len(self.failures)} failed call(s); the first: {self.failures[0]}. "
                f"The run itself was not affected; see the 'omlcore.loggers' log for every failure.",
                LoggerFailureWarning,
                stacklevel=2,
            )

    def __enter__(self) -> BaseLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.finish("success" if exc_type is None else "failed")

    # ---- failure policy -------------------------------------------------------------------------------
    def note_checkpoint(self, checkpoint_callback: Any) -> None:
        """Remember the best checkpoint of a Lightning ``ModelCheckpoint`` (for ``log_checkpoint``)."""
        best = getattr(checkpoint_callback, "best_model_path", "") or ""
        if best:
            self.best_checkpoint = Path(best)

    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run one backend call under the failure policy."""
        if not self.active or self._disabled:
            return None
        if self.status is not None:
            self._report(what, RuntimeError(f"the run was already closed by finish({self.status!r})"))
            return None
        try:
            return fn()
        except Exception as exc:
            if self.strict:
                raise LoggerCallError(self.backend, what, exc) from exc
            self._report(what, exc)
            return None

    def _report(self, what: str, exc: BaseException) -> None:
        failure = LoggerFailure(self.backend, what, f"{type(exc).__name__}: {exc}")
        self.failures.append(failure)
        log.warning("%s logger: %s failed: %s", self.backend, what, failure.error, exc_info=exc)
        if what not in self._reported:
            self._reported.add(what)
            warnings.warn(
                f"the {self.backend} logger's {what} failed ({failure.error}); training goes on, and further "
                f"failures of {what} are logged to the 'omlcore.loggers' log only",
                LoggerFailureWarning,
                stacklevel=4,
            )
        if len(self.failures) >= self.max_failures and not self._disabled:
            self._disabled = True
            warnings.warn(
                f"the {self.backend} logger failed {len(self.failures)} times and is switched off for the rest of "
                f"the run; the run folder and checkpoints are unaffected",
                LoggerFailureWarning,
                stacklevel=4,
            )


class GuardedLightningLogger:
    """Mixin that puts a Lightning logger class under its owner's failure policy.

    Put it first in the bases of a subclass of a Lightning logger (``class L(GuardedLightningLogger,
    TensorBoardLogger)``) and set ``_omlcore_owner`` after construction. ``log_metrics``,
    ``log_hyperparams``, ``log_graph``, ``save`` and ``after_save_checkpoint`` are reported instead of raised;
    ``after_save_checkpoint`` also tells the owner the best checkpoint; ``finalize`` only saves, because the
    owner's :meth:`BaseLogger.finish` closes the run (a pipeline may log after ``Trainer.fit``).
    """

    _omlcore_owner: BaseLogger | None = None

    def _omlcore_guard(self, what: str, fn: Callable[[], Any]) -> None:
        owner = self._omlcore_owner
        if owner is None:
            fn()
        else:
            owner._call(f"lightning {what}", fn)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        parent = getattr(super(), "log_metrics")  # noqa: B009 - the parent is the Lightning logger class
        self._omlcore_guard("log_metrics", lambda: parent(metrics, step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        parent = getattr(super(), "log_hyperparams")  # noqa: B009
        self._omlcore_guard("log_hyperparams", lambda: parent(params, *args, **kwargs))

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        parent = getattr(super(), "log_graph")  # noqa: B009
        self._omlcore_guard("log_graph", lambda: parent(model, input_array))

    def save(self) -> None:
        parent = getattr(super(), "save")  # noqa: B009
        self._omlcore_guard("save", parent)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._omlcore_owner is not None:
            self._omlcore_owner.note_checkpoint(checkpoint_callback)
        parent = getattr(super(), "after_save_checkpoint")  # noqa: B009
        self._omlcore_guard("after_save_checkpoint", lambda: parent(checkpoint_callback))

    def finalize(self, status: str = "success") -> None:
        self.save()
