"""A Lightning logger that forwards to an omlcore logger (imports lightning: load it only when needed).

Backends without a Lightning logger of their own (Neptune with pytorch-lightning >= 2.6.4, ClearML) hand
this one to the ``Trainer``: it sends Lightning's metrics and hyperparameters through the owner's
``log_metrics`` / ``log_params``, so they land in the same run, under the same failure policy.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

if TYPE_CHECKING:
    from omlcore_loggers_base._base import BaseLogger

__all__ = ["HPARAMS_PREFIX", "ForwardingLightningLogger"]

HPARAMS_PREFIX = "hparams/"
"""Lightning's hyperparameters (the LightningModule's ``save_hyperparameters``) are logged under this
prefix, apart from the config the pipeline logs with ``log_params``."""


class ForwardingLightningLogger(Logger):
    """Lightning ``Logger`` over an omlcore :class:`~omlcore_loggers_base.BaseLogger`.

    ``experiment`` is the owner's SDK object (a Neptune ``Run``, a ClearML ``Task``); ``finalize`` does not
    close the run: the owner's ``finish`` does, after the pipeline has logged its last artifacts.
    """

    def __init__(self, owner: BaseLogger) -> None:
        super().__init__()
        self._owner = owner

    @property
    def owner(self) -> BaseLogger:
        """The omlcore logger this one forwards to."""
        return self._owner

    @property
    def name(self) -> str | None:
        return self._owner.run_name or self._owner.backend

    @property
    def version(self) -> str | None:
        return self._owner.run_id

    @property
    def save_dir(self) -> str | None:
        return str(self._owner.run_dir) if self._owner.run_dir is not None else None

    @property
    def experiment(self) -> Any:
        return self._owner.experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._owner.log_metrics(metrics, step)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        if values:
            self._owner.log_params({HPARAMS_PREFIX.rstrip("/"): values})

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._owner.note_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Nothing to flush here; the owner's ``finish`` closes the run."""
