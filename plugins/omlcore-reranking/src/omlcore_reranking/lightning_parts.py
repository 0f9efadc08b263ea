"""The Lightning pieces of ``train_postprocessor``: the training module and the re-ranking validation.

- :class:`PairwiseModule`: one training step = pairs mined from the batch by its cached embeddings, BCE
  of the pairwise model's logits against ``is_negative``; logs ``train/loss`` and the miner's figures.
  State-dict keys are ``model.*``.
- :class:`RerankValidation`: every ``valid_period`` epochs, re-ranks the validation top-k with the model
  being trained and logs the metrics (so ``ModelCheckpoint`` can monitor them); also writes them to the
  run folder's ``metrics.json``.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from omlcore.errors import ConfigIssue, ConfigValidationError
from omlcore.schemas import ComponentSpec, MetricsSection
from omlcore_reranking.training import pairwise_bce_loss

__all__ = ["PairwiseModule", "RerankValidation"]

OptimizerFactory = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class PairwiseModule(pl.LightningModule):
    """Train a pairwise model on pairs mined per batch (BCE on "is negative").

    Args:
        model: the pairwise model (an ``nn.Module`` with ``forward(x1, x2)`` logits).
        miner: a pair miner (``sample(features, labels) -> (ids1, ids2, is_negative)``).
        optimizer: builds the optimizer from parameter groups (all the model's parameters; frozen ones get
            no gradient).
        scheduler: builds a scheduler from the optimizer; stepped per ``scheduler_interval``.
        freeze_n_epochs: call ``model.freeze()`` for the first epochs, ``model.unfreeze()`` after.
        input_key, labels_key, embeddings_key: batch keys (images, labels, cached embeddings).
    """

    def __init__(
        self,
        model: nn.Module,
        miner: Any,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: Literal["step", "epoch"] = "epoch",
        scheduler_frequency: int = 1,
        scheduler_monitor: str | None = None,
        freeze_n_epochs: int = 0,
        input_key: str = "input_tensors",
        labels_key: str = "labels",
        embeddings_key: str = "embeddings",
    ) -> None:
        super().__init__()
        if freeze_n_epochs and not (
            callable(getattr(model, "freeze", None)) and callable(getattr(model, "unfreeze", None))
        ):
            raise ValueError(
                f"trainer.freeze_n_epochs: the pairwise model {type(model).__name__} has no freeze()/unfreeze(); set 0"
            )
        self.model = model
        self.miner = miner
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_frequency = scheduler_frequency
        self.scheduler_monitor = scheduler_monitor
        self.freeze_n_epochs = freeze_n_epochs
        self.input_key = input_key
        self.labels_key = labels_key
        self.embeddings_key = embeddings_key

    def on_train_epoch_start(self) -> None:
        if self.freeze_n_epochs:
            if self.current_epoch < self.freeze_n_epochs:
                self.model.freeze()  # type: ignore[operator]
            else:
                self.model.unfreeze()  # type: ignore[operator]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        inputs = batch[self.input_key]
        labels = torch.as_tensor(batch[self.labels_key], device=inputs.device)
        loss, logs = pairwise_bce_loss(self.model, self.miner, batch[self.embeddings_key], labels, inputs)  # type: ignore[arg-type]
        size = int(labels.shape[0])
        for name, value in logs.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=size)
        if loss is None:
            return None
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def configure_optimizers(self) -> Any:
        if self._optimizer is None:
            raise RuntimeError("PairwiseModule was built without an optimizer; it can only be used for inference")
        from omlcore_lightning.module import optimizers_config

        optimizer = self._optimizer([{"params": list(self.model.parameters())}])
        scheduler = None if self._scheduler is None else self._scheduler(optimizer)
        return optimizers_config(
            optimizer, scheduler, self.scheduler_interval, self.scheduler_frequency, self.scheduler_monitor or None
        )


class RerankValidation(Callback):
    """Re-ranks the validation top-k with the model being trained, every ``valid_period`` epochs.

    Args:
        postprocessor: the re-ranker's ``{name, args}`` without ``pairwise_model`` (it gets the module's model).
        embeddings: ``(N, D)`` the frozen extractor's embeddings of the validation dataset's rows.
        dataset: the validation dataset (labels, ``is_query``, ``is_gallery``, images for the re-ranker).
        metrics: which metrics (``MetricsSection`` of the config).
        valid_period: validate after epochs ``valid_period - 1``, ``2 * valid_period - 1``, ...
        folder: an ``omlcore_lightning.RunFolder`` (records go to its ``metrics.json``), or None.
    """

    def __init__(
        self,
        postprocessor: ComponentSpec,
        embeddings: Tensor,
        dataset: Any,
        metrics: MetricsSection,
        valid_period: int = 1,
        folder: Any = None,
        verbose: bool = True,
    ) -> None:
        if embeddings.shape[0] != len(dataset):
            raise ValueError(f"{embeddings.shape[0]} validation embeddings for {len(dataset)} dataset rows")
        self.postprocessor = postprocessor
        self.embeddings = embeddings
        self.dataset = dataset
        self.valid_period = valid_period
        self.folder = folder
        self.verbose = verbose
        self.kwargs: dict[str, Any] = {
            "cmc_top_k": tuple(metrics.cmc_top_k),
            "precision_top_k": tuple(metrics.precision_top_k),
            "map_top_k": tuple(metrics.map_top_k),
            "fmr_vals": tuple(metrics.fmr_vals),
            "pcf_variance": tuple(metrics.pcf_variance),
        }
        categories = getattr(dataset, "categories", None)
        if categories is not None and metrics.categories_key and not metrics.return_only_overall_category:
            self.kwargs["categories"] = list(categories)
        sequence = getattr(dataset, "sequence_ids", None)
        if sequence is not None:
            self.kwargs["sequence"] = [None if int(s) < 0 else int(s) for s in sequence]
        self.baseline: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}

    def _args(self) -> tuple[Tensor, Any, Any, Any]:
        ds = self.dataset
        return (
            self.embeddings,
            torch.as_tensor(ds.get_labels()),
            torch.as_tensor(ds.is_query),
            torch.as_tensor(ds.is_gallery),
        )

    def compute_baseline(self) -> dict[str, float]:
        """The validation metrics of the extractor alone (also the names every validation logs)."""
        from omlcore_metrics.functional import retrieval_metrics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # k clipped to a small gallery
            self.baseline = retrieval_metrics(*self._args(), **self.kwargs).flat()
        return self.baseline

    def check_monitor(self, name: str, path: str) -> None:
        """Raise a config error unless validation logs ``name``."""
        names = list(self.baseline or self.compute_baseline())
        if name in names:
            return
        close = difflib.get_close_matches(name, names, n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigValidationError([ConfigIssue(path, f"{name!r} is never logged.{hint} Logged: {', '.join(names)}")])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.baseline:
            self.compute_baseline()
        if self.folder is not None and trainer.is_global_zero:
            self.folder.append_metrics({"epoch": None, "reranked": False, **self.baseline})

    def rerank_metrics(self, model: nn.Module) -> dict[str, float]:
        """The validation metrics after re-ranking with ``model``."""
        from omlcore.registry import build
        from omlcore_reranking.metrics import reranked_retrieval_metrics

        pp = build(
            "postprocessor",
            {"name": self.postprocessor.name, "args": {**self.postprocessor.args, "pairwise_model": model}},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = reranked_retrieval_metrics(*self._args(), pp, dataset=self.dataset, **self.kwargs)
        return result.flat()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.valid_period:
            return
        model = pl_module.model
        assert isinstance(model, nn.Module)
        metrics = self.rerank_metrics(model)
        self.last_metrics = metrics
        pl_module.log_dict({k: v for k, v in metrics.items() if not math.isnan(v)}, on_step=False, on_epoch=True)
        if self.folder is not None and trainer.is_global_zero:
            self.folder.append_metrics({"epoch": epoch, "reranked": True, **metrics})
        if self.verbose and trainer.is_global_zero:
            shown = ", ".join(
                f"{k}: {v:.4f} (extractor {self.baseline.get(k, math.nan):.4f})" for k, v in metrics.items()
            )
            print(f"epoch {epoch}: {shown}")
