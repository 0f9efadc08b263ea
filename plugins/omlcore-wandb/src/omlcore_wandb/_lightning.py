"""Lightning's W&B logger over the omlcore logger's run (imports lightning)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch.loggers import WandbLogger
from omlcore_loggers_base import GuardedLightningLogger

if TYPE_CHECKING:
    from omlcore_wandb.logger import WandbLogger as OmlcoreWandbLogger

__all__ = ["GuardedWandbLogger"]


class GuardedWandbLogger(GuardedLightningLogger, WandbLogger):
    """``lightning.pytorch.loggers.WandbLogger`` given its owner's run as ``experiment``: Lightning's
    metrics (x-axis ``trainer/global_step``, as the owner's) and hyperparameters go to the same run.
    Checkpoints are uploaded by the owner (``log_checkpoint``), not by Lightning's ``log_model``."""

    @classmethod
    def for_owner(cls, owner: OmlcoreWandbLogger) -> GuardedWandbLogger:
        logger = cls(
            experiment=owner.experiment,
            project=owner.project,
            name=owner.run_name,
            id=owner.run_id,
            save_dir=str(owner.save_dir) if owner.save_dir is not None else ".",
            log_model=False,
        )
        logger._omlcore_owner = owner
        return logger
