"""The Lightning module that trains an extractor with a metric-learning loss.

State-dict keys are ``model.*`` for the extractor and ``criterion.*`` for a loss with parameters (ArcFace's
class centres), the layout OML's checkpoints have, so extractors load these checkpoints as weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

__all__ = ["ExtractorModule", "optimizers_config", "param_groups"]

OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def param_groups(extractor: Any, loss: Any = None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the extractor's parameters, then the loss's own (if it has any)."""
    groups = [{"params": list(extractor.parameters()) if isinstance(extractor, nn.Module) else []}]
    loss_params = list(loss.parameters()) if isinstance(loss, nn.Module) else []
    if loss_params:
        groups.append({"params": loss_params})
    return groups


def optimizers_config(
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    interval: Literal["step", "epoch"],
    frequency: int,
    monitor: str | None,
) -> Any:
    """What ``configure_optimizers`` returns for an optimizer and an optional scheduler, stepped every
    ``frequency`` steps or epochs (``interval``); ``monitor`` is the metric a ``reduce_on_plateau`` watches."""
    if scheduler is None:
        return optimizer
    config: dict[str, Any] = {"scheduler": scheduler, "interval": interval, "frequency": frequency}
    if monitor is not None:
        config["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": config}


class ExtractorModule(pl.LightningModule):
    """Train ``extractor`` with ``loss``; validation and prediction steps return embeddings.

    Args:
        extractor: an :class:`~omlcore.protocols.Extractor` (``extract(x) -> (B, D)``), usually an ``nn.Module``.
        loss: a :class:`~omlcore.protocols.Loss`; needed for training only.
        optimizer: an optimizer, or a function building one from parameter groups (the extractor's
            parameters, then the loss's if it has any); needed for training only.
        scheduler: a learning-rate scheduler, or a function building one from the optimizer.
        scheduler_interval: step the scheduler after every ``"step"`` (batch) or ``"epoch"``.
        scheduler_frequency: step it every this many intervals.
        scheduler_monitor: the metric a ``ReduceLROnPlateau`` watches (e.g. ``"OVERALL/cmc/1"``).
        freeze_n_epochs: for this many first epochs the extractor is frozen: its weights get no update and
            its normalisation statistics stay as they are (it runs in eval mode); only the loss's own
            parameters learn. It is unfrozen from epoch ``freeze_n_epochs`` on.
        input_key, labels_key, embeddings_key: batch keys.
    """

    def __init__(
        self,
        extractor: Any,
        loss: Any = None,
        optimizer: torch.optim.Optimizer | OptimizerFactory | None = None,
        scheduler: Any = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        scheduler_frequency: int = 1,
        scheduler_monitor: str | None = None,
        freeze_n_epochs: int = 0,
        input_key: str = "input_tensors",
        labels_key: str = "labels",
        embeddings_key: str = "embeddings",
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        if scheduler_frequency < 1:
            raise ValueError(f"scheduler_frequency must be >= 1, got {scheduler_frequency}")
        if freeze_n_epochs < 0:
            raise ValueError(f"freeze_n_epochs must be >= 0, got {freeze_n_epochs}")
        self.model = extractor
        self.criterion = loss
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_frequency = scheduler_frequency
        self.scheduler_monitor = scheduler_monitor
        self.freeze_n_epochs = freeze_n_epochs
        self.input_key = input_key
        self.labels_key = labels_key
        self.embeddings_key = embeddings_key
        self.frozen = False
        self._thawed: list[nn.Parameter] = []
        self._loss_sum: Tensor | float = 0.0
        self._loss_count = 0
        self._epoch_loss: float | None = None

    # ---- parameters -------------------------------------------------------------------------------
    def _extractor_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) if isinstance(self.model, nn.Module) else []

    def param_groups(self) -> list[dict[str, Any]]:
        """What the optimizer is built with (see :func:`param_groups`)."""
        return param_groups(self.model, self.criterion)

    def configure_optimizers(self) -> Any:
        if self._optimizer is None:
            raise RuntimeError("ExtractorModule was built without an optimizer, so it cannot train")
        opt = self._optimizer
        optimizer = opt if isinstance(opt, torch.optim.Optimizer) else opt(self.param_groups())
        if self._scheduler is None:
            return optimizer
        sch = self._scheduler
        is_scheduler = isinstance(
            sch, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        )
        scheduler = sch if is_scheduler else sch(optimizer)
        return optimizers_config(
            optimizer, scheduler, self.scheduler_interval, self.scheduler_frequency, self.scheduler_monitor
        )

    # ---- freezing ---------------------------------------------------------------------------------
    def set_frozen(self, frozen: bool) -> None:
        """Freeze or unfreeze the extractor (see ``freeze_n_epochs``)."""
        if frozen == self.frozen:
            return
        self.frozen = frozen
        if not isinstance(self.model, nn.Module):
            return
        self.model.train(not frozen)
        # Under DDP the set of parameters needing gradients must not change after wrapping, so there the
        # gradients are dropped before each optimizer step instead (on_before_optimizer_step).
        if frozen and not self._distributed():
            self._thawed = [p for p in self.model.parameters() if p.requires_grad]
            for p in self._thawed:
                p.requires_grad_(False)
        elif not frozen:
            for p in self._thawed:
                p.requires_grad_(True)
            self._thawed = []

    def _distributed(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.world_size > 1

    def on_train_epoch_start(self) -> None:
        self.set_frozen(self.current_epoch < self.freeze_n_epochs)
        self._epoch_loss = None

    # ---- the epoch's mean loss, kept in checkpoints so a run resumed mid-epoch reports the same mean ----
    def epoch_loss(self) -> float | None:
        """The mean training loss of the current epoch so far (over every process; weighted by batch size),
        or None before the first batch. Logged as ``train/loss`` at the end of each epoch."""
        if self._epoch_loss is None:
            totals = torch.tensor([float(self._loss_sum), float(self._loss_count)], dtype=torch.float64)
            if self._distributed():
                totals = self.trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
            self._epoch_loss = float(totals[0] / totals[1]) if totals[1] > 0 else None
        return self._epoch_loss

    def on_train_epoch_end(self) -> None:
        mean = self.epoch_loss()
        if mean is not None:
            self.log("train/loss", mean, on_step=False, on_epoch=True, sync_dist=False)
        self._loss_sum, self._loss_count = 0.0, 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["omlcore_epoch_loss"] = [float(self._loss_sum), self._loss_count]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._loss_sum, self._loss_count = checkpoint.get("omlcore_epoch_loss", [0.0, 0])

    def on_train_end(self) -> None:
        if self.frozen:
            self.set_frozen(False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.frozen:
            for p in self._extractor_parameters():
                p.grad = None  # torch optimizers skip parameters without a gradient

    # ---- steps ------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model.extract(x)
        return out

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        if self.criterion is None:
            raise RuntimeError("ExtractorModule was built without a loss, so it cannot train")
        embeddings = self.model.extract(batch[self.input_key])
        loss: Tensor = self.criterion(embeddings, batch[self.labels_key])
        size = int(embeddings.shape[0])
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        self._loss_sum = self._loss_sum + loss.detach().double() * size  # no device sync per step
        self._loss_count += size
        if self._logs_written_this_step():
            logs: Mapping[str, float] = getattr(self.criterion, "last_logs", None) or {}
            for name, value in logs.items():
                self.log(f"train/{name}", float(value), on_step=True, on_epoch=False, batch_size=size)
            if self._trainer is not None and self.trainer.optimizers:
                self.log("lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=True, batch_size=size)
        return loss

    def _logs_written_this_step(self) -> bool:
        """Whether Lightning sends this step's values to the loggers (every ``trainer.log_every_n_steps`` steps
        and the last one). The loss's own numbers and the learning rate are logged only then: each ``self.log``
        costs Lightning 1-2 ms of bookkeeping, and a value logged in between is overwritten before any logger
        sees it. The loss itself is logged every step (the progress bar shows it)."""
        trainer = self._trainer
        if trainer is None:
            return True
        connector = getattr(trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def _with_embeddings(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if k != self.input_key}
        out[self.embeddings_key] = self.model.extract(batch[self.input_key])
        return out

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._with_embeddings(batch)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._with_embeddings(batch)
