"""Lightning's TensorBoard logger writing through the omlcore logger's ``SummaryWriter`` (imports lightning)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import TensorBoardLogger
from omlcore_loggers_base import GuardedLightningLogger

if TYPE_CHECKING:
    from omlcore_tensorboard.logger import TensorBoardLogger as OmlcoreTensorBoardLogger

__all__ = ["GuardedTensorBoardLogger"]


class GuardedTensorBoardLogger(GuardedLightningLogger, TensorBoardLogger):
    """``lightning.pytorch.loggers.TensorBoardLogger`` sharing its owner's writer and event folder, so
    Lightning's scalars and the owner's params, figures and artifacts form one TensorBoard run."""

    @classmethod
    def for_owner(cls, owner: OmlcoreTensorBoardLogger) -> GuardedTensorBoardLogger:
        logger = cls(save_dir=str(owner.save_dir), name="", version="", default_hp_metric=False)
        logger._omlcore_owner = owner
        return logger

    @property
    def experiment(self) -> Any:
        owner = self._omlcore_owner
        return owner.experiment if owner is not None else super().experiment
