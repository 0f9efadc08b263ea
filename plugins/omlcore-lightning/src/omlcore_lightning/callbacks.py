"""Lightning callbacks of the pipelines: validation metrics, reproducible progress, graceful Ctrl-C, the
progress bar, and atomic checkpoint files."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, TQDMProgressBar

from omlcore_lightning.data import TrainProgress, derive_seed, seed_all

__all__ = [
    "AtomicCheckpointIO",
    "FigureSink",
    "GracefulInterrupt",
    "MetricValCallback",
    "ProgressBar",
    "ReproducibleProgress",
    "send_figures",
]

FigureSink = Callable[[Any, str, int], None]
"""Receives ``(matplotlib figure, title, step)``; e.g. an experiment logger's ``log_figure``."""


def _loader_dataset_len(trainer: pl.Trainer, loader_idx: int) -> int | None:
    loaders = trainer.val_dataloaders
    if isinstance(loaders, Sequence):
        if loader_idx >= len(loaders):
            return None
        loader = loaders[loader_idx]
    elif isinstance(loaders, Mapping):
        loader = list(loaders.values())[loader_idx]
    else:
        loader = loaders
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None else None


class MetricValCallback(Callback):
    """Feeds the outputs of one validation loader to a retrieval metric and logs what it computes.

    At the start of each validation the metric is reset (``setup(num_samples=len(dataset))`` for
    :class:`~omlcore_metrics.EmbeddingMetrics`, which then refuses to compute unless every sample arrived
    exactly once, whatever the number of processes). Each batch output of loader ``loader_idx`` (the batch
    plus ``"embeddings"``) goes to ``metric.update``; at the end of the validation epoch the metric is
    computed (gathered across processes), every value is logged through ``pl_module.log`` as
    ``prefix + name`` (``"OVERALL/cmc/1"``), and with ``log_images`` the worst queries' figures go to each
    of ``figure_sinks``. Several loaders: one callback per loader, each with its own ``prefix``.

    Args:
        metric: a :class:`~omlcore.protocols.RetrievalMetric`.
        loader_idx: which validation loader this callback listens to.
        prefix: put in front of every metric name (e.g. ``"shop/"`` for a second loader).
        log_images: draw the worst queries after each validation (needs ``metric.visualize``).
        figure_sinks: where figures go (``(figure, title, step)``); called on rank 0 only.
        prog_bar: metric names (with prefix) shown in the progress bar.
    """

    def __init__(
        self,
        metric: Any,
        loader_idx: int = 0,
        prefix: str = "",
        log_images: bool = False,
        figure_sinks: Sequence[FigureSink] = (),
        prog_bar: Sequence[str] = ("OVERALL/cmc/1",),
    ) -> None:
        self.metric = metric
        self.loader_idx = loader_idx
        self.prefix = prefix
        self.log_images = log_images
        self.figure_sinks = list(figure_sinks)
        self.prog_bar = set(prog_bar)
        self.latest: dict[str, float] = {}
        self._active = False

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[loader={self.loader_idx}, prefix={self.prefix!r}]"

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._active = not trainer.sanity_checking
        if not self._active:
            return
        setup = getattr(self.metric, "setup", None)
        if setup is not None:
            setup(num_samples=_loader_dataset_len(trainer, self.loader_idx))
        else:
            self.metric.reset()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active and dataloader_idx == self.loader_idx:
            self.metric.update(outputs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active:
            return
        self._active = False
        values = {f"{self.prefix}{k}": float(v) for k, v in self.metric.compute().items()}
        self.latest = values
        for name, value in values.items():
            pl_module.log(name, value, prog_bar=name in self.prog_bar, add_dataloader_idx=False, sync_dist=False)
        if self.log_images and trainer.is_global_zero:
            self._figures(trainer.current_epoch)

    def _figures(self, step: int) -> None:
        visualize = getattr(self.metric, "visualize", None)
        if visualize is None:
            warnings.warn(f"{type(self.metric).__name__} cannot draw figures (no visualize())", stacklevel=2)
            return
        figures, titles = visualize()
        send_figures(figures, [f"{self.prefix}worst_queries/{t}" for t in titles], self.figure_sinks, step)


def send_figures(figures: Sequence[Any], titles: Sequence[str], sinks: Sequence[FigureSink], step: int) -> None:
    """Hand each figure to every sink as ``(figure, title, step)``, then close it. A sink that fails (a logger
    that lost its server) is reported with a warning and does not stop training."""
    import matplotlib.pyplot as plt

    for figure, title in zip(figures, titles, strict=True):
        for sink in sinks:
            try:
                sink(figure, title, step)
            except Exception as exc:
                warnings.warn(f"logging the figure {title!r} failed: {type(exc).__name__}: {exc}", stacklevel=3)
        plt.close(figure)


class ReproducibleProgress(Callback):
    """Keeps :class:`~omlcore_lightning.data.TrainProgress` up to date and seeds each training step.

    Before every training batch the random generators are seeded from ``(seed, epoch, rank, batch)``, so
    dropout and anything else random in a step is the same in an uninterrupted and in a resumed run.
    """

    def __init__(self, progress: TrainProgress, seed: int) -> None:
        self.progress = progress
        self.seed = seed

    # Saved in checkpoints as this callback's state: Lightning restores callbacks' states on every resume,
    # while it restores the loader's own state only when a run stopped in the middle of an epoch.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.progress.epoch, "consumed": self.progress.consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.progress.epoch = int(state_dict["epoch"])
        self.progress.consumed = int(state_dict["consumed"])

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        p = self.progress
        seed_all(derive_seed(self.seed, p.epoch, trainer.global_rank, p.consumed, 0xB47C))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        p = self.progress
        p.consumed += 1
        if p.consumed >= trainer.num_training_batches:
            p.epoch += 1
            p.consumed = 0


class _StopRequested(KeyboardInterrupt):
    """Raised after the checkpoint of a Ctrl-C was saved, to stop Lightning's loops."""


class GracefulInterrupt(Checkpoint):
    """The first Ctrl-C stops training at the next clean point and saves ``checkpoint`` there.

    The clean point is the end of the current training batch (resumed runs continue with the next one) or,
    for the last batch of an epoch, the end of that epoch (after its validation). Under DDP the processes
    agree on the stop after every batch. A second Ctrl-C interrupts at once, without a new checkpoint (the
    previous ``last.ckpt`` stays).

    It is a Lightning ``Checkpoint`` callback so that it runs after the ``ModelCheckpoint`` callbacks (put it
    after them in the list): a stop at the end of an epoch happens once that epoch's checkpoints are saved.
    """

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.requested = False
        self.saved = False
        self._previous: Any = None
        self._defer = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nomlcore: stopping after the current batch and saving a checkpoint (Ctrl-C again to abort now)",
            file=sys.stderr,
            flush=True,
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore()

    def _agreed(self, trainer: pl.Trainer) -> bool:
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(self.requested, all=False))
        return self.requested

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._defer or not self._agreed(trainer):
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            self._defer = True  # finish the epoch (and its validation) first
            return
        self._stop(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._defer or self._agreed(trainer):
            self._stop(trainer)

    def _stop(self, trainer: pl.Trainer) -> None:
        self.requested = True
        trainer.save_checkpoint(self.checkpoint)
        self.saved = True
        raise _StopRequested


class ProgressBar(TQDMProgressBar):
    """Lightning's bar with the global step and without the logger version number."""

    def get_metrics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if trainer.training:
            items["step"] = trainer.global_step
        return items


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into place, so an
    interrupted save never leaves a truncated checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
