"""Lightning's MLflow logger writing into the omlcore logger's run (imports lightning)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch.loggers import MLFlowLogger
from omlcore_loggers_base import GuardedLightningLogger

if TYPE_CHECKING:
    from omlcore_mlflow.logger import MLflowLogger

__all__ = ["GuardedMLFlowLogger"]


class GuardedMLFlowLogger(GuardedLightningLogger, MLFlowLogger):
    """``lightning.pytorch.loggers.MLFlowLogger`` attached to its owner's run (``run_id``), so Lightning's
    metrics and hyperparameters land in the same MLflow run. Checkpoints are uploaded by the owner
    (``log_checkpoint``), not by Lightning's ``log_model``."""

    @classmethod
    def for_owner(cls, owner: MLflowLogger) -> GuardedMLFlowLogger:
        logger = cls(
            experiment_name=owner.experiment_name,
            tracking_uri=owner.tracking_uri,
            run_id=owner.run_id,
            log_model=False,
        )
        logger._omlcore_owner = owner
        return logger
