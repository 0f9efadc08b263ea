"""The Lightning pieces of ``train_postprocessor``: the training module and the re-ranking validation.

- :class:`PairwiseModule`: one training step = pairs mined from the batch by its cached embeddings, BCE
  of the pairwise model's logits against ``is_negative``; logs ``train/loss`` and the miner's figures, and
  keeps the epoch's mean loss (in checkpoints too, so a run resumed mid-epoch reports the same mean).
  State-dict keys are ``model.*``.
- :class:`RerankValidation`: every ``valid_period`` epochs, re-ranks the validation top-k with the model
  being trained, on the module's device (under DDP each process re-ranks its share of the queries, see
  :class:`QueryShards`, and the first one's metrics are broadcast), and logs the metrics (to the experiment
  loggers, and so that ``ModelCheckpoint`` can monitor them); also writes them to the run folder's
  ``metrics.json``, whose record count is saved in checkpoints (a resumed run drops the records written
  after its checkpoint).
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from omlcore_metrics.functional import MetricsResult
from torch import Tensor, nn

from omlcore.errors import ConfigIssue, ConfigValidationError
from omlcore.schemas import ComponentSpec, MetricsSection
from omlcore_reranking.training import pairwise_bce_loss

__all__ = ["BASELINE_PREFIX", "PairwiseModule", "QueryShards", "RerankValidation"]

BASELINE_PREFIX = "extractor/"
"""Prefix of the extractor's metrics (no re-ranking) sent to the experiment loggers at step 0."""

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
        self._loss_sum = 0.0
        self._loss_count = 0

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
        self._loss_sum += float(loss.detach()) * size
        self._loss_count += size
        return loss

    def epoch_loss(self) -> float | None:
        """The mean training loss of the current epoch so far (weighted by batch size, over every process),
        or None before the first step with pairs."""
        totals = torch.tensor([self._loss_sum, float(self._loss_count)], dtype=torch.float64)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
        return float(totals[0] / totals[1]) if totals[1] > 0 else None

    def on_train_epoch_end(self) -> None:
        # after the callbacks' epoch end (RerankValidation reads the mean), before the checkpoints are saved
        self._loss_sum, self._loss_count = 0.0, 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["omlcore_epoch_loss"] = [self._loss_sum, self._loss_count]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        total, count = checkpoint.get("omlcore_epoch_loss", [0.0, 0])
        self._loss_sum, self._loss_count = float(total), int(count)

    def configure_optimizers(self) -> Any:
        if self._optimizer is None:
            raise RuntimeError("PairwiseModule was built without an optimizer; it can only be used for inference")
        from omlcore_lightning.module import optimizers_config

        optimizer = self._optimizer([{"params": list(self.model.parameters())}])
        scheduler = None if self._scheduler is None else self._scheduler(optimizer)
        return optimizers_config(
            optimizer, scheduler, self.scheduler_interval, self.scheduler_frequency, self.scheduler_monitor or None
        )


class QueryShards:
    """A postprocessor that re-ranks this process's share of the queries and gathers the others' shares.

    Every process of a DDP run calls :meth:`process` with the same ``(Q, K)`` top-k; process ``rank`` hands
    rows ``[rank * ceil(Q / world), (rank + 1) * ceil(Q / world))`` to ``inner`` and the results of all
    processes are gathered in rank order, so every process returns the whole re-ranked top-k (as ``inner``
    alone would: a query's re-ranking does not depend on the other queries). The pairs scored per process
    drop from ``Q x top_n`` to ``Q x top_n / world``.

    ``gather(t)`` stacks the same-shaped ``t`` of every process into ``(world, *t.shape)`` (the Lightning
    strategy's ``all_gather``). If ``inner`` fails on one process, every process raises (the failing one
    its own error, the others a :class:`~omlcore_reranking.errors.RerankingError` naming it) instead of
    waiting forever for the failed one's results.
    """

    def __init__(self, inner: Any, rank: int, world_size: int, gather: Callable[[Tensor], Tensor]) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"QueryShards: rank {rank} outside a world of {world_size} processes")
        self.inner = inner
        self.rank = rank
        self.world_size = world_size
        self.gather = gather
        self.top_n = getattr(inner, "top_n", None)
        self.reads = getattr(inner, "reads", "items")

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        from omlcore_reranking.errors import RerankingError

        n, width = distances.shape
        per = -(-n // self.world_size)
        lo, hi = min(self.rank * per, n), min((self.rank + 1) * per, n)
        mine_d = torch.full((per, width), math.inf, dtype=distances.dtype)
        mine_r = torch.full((per, width), -1, dtype=torch.long)
        error: BaseException | None = None
        if hi > lo:
            try:
                d, r = self.inner.process(distances[lo:hi], retrieved[lo:hi], query_ids[lo:hi], dataset)
                mine_d[: hi - lo] = d.to(mine_d.dtype).cpu()
                mine_r[: hi - lo] = r.long().cpu()
            except Exception as exc:  # every process must still reach the gathers below
                error = exc
        failed = self.gather(torch.tensor([error is not None], dtype=torch.int32)).reshape(-1)
        if error is not None:
            raise error
        if bool(failed.any()):
            ranks = [int(i) for i in torch.nonzero(failed).reshape(-1)]
            raise RerankingError(f"re-ranking the validation queries failed on process(es) {ranks}; see their error")
        all_d = self.gather(mine_d).reshape(self.world_size * per, width)[:n]
        all_r = self.gather(mine_r).reshape(self.world_size * per, width)[:n]
        return all_d.cpu(), all_r.cpu()


class RerankValidation(Callback):
    """Re-ranks the validation top-k with the model being trained, every ``valid_period`` epochs.

    Args:
        postprocessor: the re-ranker's ``{name, args}`` without ``pairwise_model`` (it gets the module's model).
        embeddings: ``(N, D)`` the frozen extractor's embeddings of the validation dataset's rows.
        dataset: the validation dataset (labels, ``is_query``, ``is_gallery``; images for a re-ranker whose
            ``reads`` is ``"items"``; one that reads embeddings gets ``embeddings``).
        metrics: which metrics (``MetricsSection`` of the config).
        valid_period: validate after epochs ``valid_period - 1``, ``2 * valid_period - 1``, ...
        folder: an ``omlcore_lightning.RunFolder`` (records go to its ``metrics.json``), or None.
        verbose: print each validation's metrics next to the extractor's.
        figure_sinks: with ``metrics.log_images``, each validation's worst-query figures (after re-ranking)
            go to each sink as ``(figure, "worst_queries/<group>/<metric>", epoch)``: e.g. the experiment
            loggers' ``log_figure`` and a saver into the run folder's ``figures/epoch_NNN/``.

    The first record (``epoch: null``, ``reranked: false``) holds the extractor's metrics; it is also sent
    to the trainer's loggers at step 0, named ``extractor/<metric>`` (``extractor/OVERALL/cmc/1``). Each later record
    has the epoch, the global step, the epoch's mean training loss (``train_loss``) and the metrics.
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
        figure_sinks: Sequence[Callable[[Any, str, int], None]] = (),
    ) -> None:
        if embeddings.shape[0] != len(dataset):
            raise ValueError(f"{embeddings.shape[0]} validation embeddings for {len(dataset)} dataset rows")
        self.postprocessor = postprocessor
        self.embeddings = embeddings
        self.dataset = dataset
        self.valid_period = valid_period
        self.folder = folder
        self.figure_sinks = list(figure_sinks)
        self.log_images = metrics.log_images
        self.only_overall = metrics.visualize_only_overall_category
        self.excluded = list(metrics.metrics_to_exclude_from_visualization)
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
        self.records = 0
        self._restored: int | None = None
        self.devices_used: list[torch.device] = []
        """The device of every re-ranking so far (the module's)."""

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = int(state_dict["records"])

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
        if self._restored is not None:  # resumed: metrics.json as it was when the checkpoint was saved
            if self.folder is not None and trainer.is_global_zero:
                existing = self.folder.read_metrics()
                if len(existing) != self._restored:
                    self.folder.write_metrics(existing[: self._restored])
            self.records = self._restored
            return
        if self.folder is not None and trainer.is_global_zero:
            self.folder.append_metrics({"epoch": None, "reranked": False, **self.baseline})
        self.records = 1
        shown = {f"{BASELINE_PREFIX}{k}": v for k, v in self.baseline.items() if not math.isnan(v)}
        for logger in trainer.loggers:
            logger.log_metrics(shown, step=0)

    def rerank_metrics(
        self, model: nn.Module, device: torch.device | str | None = None, shards: Callable[[Any], Any] | None = None
    ) -> dict[str, float]:
        """The validation metrics after re-ranking with ``model``, run on ``device`` (None: where the model's
        parameters are) when the postprocessor takes a ``device``. ``shards`` wraps the postprocessor built
        (e.g. in :class:`QueryShards`, under DDP)."""
        return self.rerank(model, device, shards).flat()

    def rerank(
        self, model: nn.Module, device: torch.device | str | None = None, shards: Callable[[Any], Any] | None = None
    ) -> MetricsResult:
        """:meth:`rerank_metrics` as the whole result (per-query values, the re-ranked top-k)."""
        from omlcore.registry import build, get_registry
        from omlcore_reranking.metrics import reranked_retrieval_metrics

        args: dict[str, Any] = {**self.postprocessor.args, "pairwise_model": model}
        if device is not None:
            accepts = get_registry().args_model("postprocessor", self.postprocessor.name).accepts
            if accepts is None or "device" in accepts:
                args["device"] = str(device)
            self.devices_used.append(torch.device(device))
        pp = build("postprocessor", {"name": self.postprocessor.name, "args": args})
        if shards is not None:
            pp = shards(pp)
        items = self.dataset if getattr(pp, "reads", "items") == "items" else None  # None: the embeddings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return reranked_retrieval_metrics(*self._args(), pp, dataset=items, **self.kwargs)

    def figures(self, result: MetricsResult) -> tuple[list[Any], list[str]]:
        """The worst queries of ``result`` (a re-ranked validation) by each per-query metric, drawn from the
        validation dataset's images (``paths``, ``bboxes``): the figures and their titles (``"OVERALL/cmc/1"``),
        as ``omlcore train``'s validation draws them."""
        from omlcore_metrics.report import ReportData, worst_query_figures

        ds = self.dataset
        paths = getattr(ds, "paths", None)
        data = ReportData(
            labels=[int(v) for v in ds.get_labels()],
            paths=None if paths is None else [str(p) for p in paths],
            bboxes=getattr(ds, "bboxes", None),
            sequence=self.kwargs.get("sequence"),
            embeddings=self.embeddings,
        )
        return worst_query_figures(result, data, only_overall=self.only_overall, exclude=self.excluded)

    def _send_figures(self, result: MetricsResult, epoch: int) -> None:
        """The figures of :meth:`figures` to the sinks; drawing them that fails (an image file gone) is a
        warning: a figure must not stop training, nor leave the other processes waiting (DDP)."""
        from omlcore_lightning.shared import send_figures

        try:
            figures, titles = self.figures(result)
        except Exception as exc:
            warnings.warn(f"drawing the worst-query figures failed: {type(exc).__name__}: {exc}", stacklevel=2)
            return
        send_figures(figures, [f"worst_queries/{t}" for t in titles], self.figure_sinks, epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.valid_period:
            return
        model = pl_module.model
        assert isinstance(model, nn.Module)
        shards = None
        if trainer.world_size > 1:
            device = pl_module.device

            def gather(t: Tensor) -> Tensor:
                return trainer.strategy.all_gather(t.to(device)).cpu()

            def shards(pp: Any) -> QueryShards:
                return QueryShards(pp, trainer.global_rank, trainer.world_size, gather)

        result = self.rerank(model, pl_module.device, shards)
        metrics = result.flat()
        if trainer.world_size > 1:  # every process computed them from the same gathered top-k; agree to the bit
            metrics = trainer.strategy.broadcast(metrics, src=0)
        if self.log_images and self.figure_sinks and trainer.is_global_zero:
            self._send_figures(result, epoch)
        self.last_metrics = metrics
        pl_module.log_dict({k: v for k, v in metrics.items() if not math.isnan(v)}, on_step=False, on_epoch=True)
        record: dict[str, Any] = {"epoch": epoch, "reranked": True, "step": trainer.global_step}
        epoch_loss = getattr(pl_module, "epoch_loss", None)
        loss = epoch_loss() if callable(epoch_loss) else None
        if loss is not None:
            record["train_loss"] = loss
        if self.folder is not None and trainer.is_global_zero:
            self.folder.append_metrics({**record, **metrics})
        self.records += 1
        if self.verbose and trainer.is_global_zero:
            shown = ", ".join(
                f"{k}: {v:.4f} (extractor {self.baseline.get(k, math.nan):.4f})" for k, v in metrics.items()
            )
            print(f"epoch {epoch}: {shown}")
