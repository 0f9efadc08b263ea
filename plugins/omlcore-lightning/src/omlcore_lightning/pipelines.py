"""The train, validate and predict pipelines: a validated config in, a run folder (or prediction files) out.

Each pipeline checks everything it can before any work starts — the config (both phases), the devices,
the dataset CSV (omlcore-images' data check), the components' construction, the metric names that
checkpointing and schedulers refer to, ``--resume`` — and only then builds the Lightning ``Trainer``.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from omlcore.errors import ConfigError, ConfigIssue, ConfigValidationError
from omlcore.schemas import (
    ComponentSpec,
    DataSection,
    HardwareSection,
    MetricsSection,
    PredictConfig,
    TrainConfig,
    ValidateConfig,
)
from omlcore_lightning.callbacks import (
    AtomicCheckpointIO,
    GracefulInterrupt,
    MetricValCallback,
    ProgressBar,
    ReproducibleProgress,
)
from omlcore_lightning.data import ShuffledBatches, TrainProgress, eval_loader, train_loader
from omlcore_lightning.loggers import ExperimentLoggers, build_loggers
from omlcore_lightning.module import ExtractorModule, param_groups
from omlcore_lightning.run import (
    RUN_DIR_ENV,
    RunFolder,
    env_rank_is_zero,
    flatten_config,
    write_bytes_atomic,
    write_text_atomic,
)

__all__ = [
    "PredictResult",
    "RunResult",
    "expected_metric_names",
    "monitor_issues",
    "predict",
    "train",
    "validate",
]

TRAIN_METRICS = ("train/loss",)
"""Epoch-level training figures a checkpoint or scheduler may monitor."""


@dataclass
class RunResult:
    """What a train or validate run produced."""

    run_dir: Path
    metrics: dict[str, float]
    """The last validation's metrics (empty if nothing was validated)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """The records of ``metrics.json``."""
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    interrupted: bool = False


@dataclass
class PredictResult:
    """What a predict run wrote."""

    embeddings: Path
    paths: Path
    count: int
    dim: int


# ---- configs and checks ------------------------------------------------------------------------------


def _as_config(config: Any, overrides: Sequence[str], expected: str) -> Any:
    from pydantic import BaseModel

    from omlcore.config import load_config

    if isinstance(config, BaseModel):
        if overrides:
            config = load_config(config.model_dump(mode="json"), overrides)
        else:
            from omlcore.config import plugin_issues

            issues = plugin_issues(config)
            if issues:
                raise ConfigValidationError(issues)
    else:
        config = load_config(config, overrides)
    if config.pipeline != expected:
        raise ConfigValidationError(
            [ConfigIssue("pipeline", f"is {config.pipeline!r}, but this command runs the {expected!r} pipeline")]
        )
    return config


# Trainer arguments the pipeline sets itself, and the config key that controls each.
_CONTROLLED = {
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "precision": "trainer.precision",
    "max_epochs": "trainer.max_epochs",
    "check_val_every_n_epoch": "trainer.valid_period",
    "logger": "the config's `logger`",
    "callbacks": "plugins (the omlcore_trainer_callbacks hook)",
    "use_distributed_sampler": "the pipeline, which shards the data itself",
    "default_root_dir": "run.logs_root and run.logs_folder",
    "enable_checkpointing": "the `checkpoint` section",
    "num_sanity_val_steps": "the pipeline (validation always covers the whole dataset)",
}


def _extra_args_issues(extra: Mapping[str, Any]) -> list[ConfigIssue]:
    accepted = [p for p in inspect.signature(pl.Trainer.__init__).parameters if p != "self"]
    issues = []
    for key in extra:
        path = f"trainer.extra_args.{key}"
        if key in _CONTROLLED:
            issues.append(ConfigIssue(path, f"is set by {_CONTROLLED[key]}; remove it from extra_args"))
        elif key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            issues.append(ConfigIssue(path, f"is not an argument of lightning's Trainer{hint}"))
    return issues


def _device_issues(hw: HardwareSection) -> list[ConfigIssue]:
    devices = hw.devices
    if devices == "auto":
        return []
    accelerator = hw.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu":
        have, what = os.cpu_count() or 1, "CPU core(s)"
    elif accelerator in ("gpu", "cuda"):
        have, what = torch.cuda.device_count(), "CUDA device(s)"
    else:
        return []  # mps, tpu, ...: Lightning checks them
    if isinstance(devices, list):
        bad = [i for i in devices if i >= have]
        if bad:
            return [
                ConfigIssue(
                    "trainer.devices", f"names device(s) {bad}, but this machine has {have} {what} (0..{have - 1})"
                )
            ]
        return []
    if devices > have:
        return [
            ConfigIssue(
                "trainer.devices",
                f"asks for {devices} {accelerator} device(s), but this machine has {have} {what}; "
                f"use trainer.devices={have} or fewer",
            )
        ]
    return []


def _trainer_issues(hw: HardwareSection, find_unused_parameters: bool = False) -> list[ConfigIssue]:
    """What Lightning says about the trainer settings, found by building a throw-away ``Trainer`` (cheap)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    extra = dict(hw.extra_args)
    if "strategy" not in extra and _n_devices(hw) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        extra["strategy"] = DDPStrategy(find_unused_parameters=find_unused_parameters)
    try:
        with _quiet_lightning():
            pl.Trainer(
                accelerator=hw.accelerator,
                devices=hw.devices,
                precision=hw.precision,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                **extra,
            )
    except (MisconfigurationException, ValueError, TypeError, ImportError, RuntimeError) as exc:
        settings = f"accelerator={hw.accelerator!r}, devices={hw.devices!r}, precision={hw.precision!r}"
        if hw.extra_args:
            settings += f", extra_args={dict(hw.extra_args)!r}"
        return [ConfigIssue("trainer", f"Lightning refuses these settings ({settings}): {exc}")]
    return []


def _checkpoint_fits(checkpoint: Path, module: torch.nn.Module, command: str = "omlcore train") -> None:
    """Raise :class:`ConfigError` if the weights in ``checkpoint`` do not fit ``module`` (another model or loss);
    ``command`` is the one the message tells to resume with."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True).get("state_dict", {})
    mine = module.state_dict()
    missing = [k for k in mine if k not in saved]
    unexpected = [k for k in saved if k not in mine]
    shapes = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
        for k, v in mine.items()
        if k in saved and torch.is_tensor(v) and torch.is_tensor(saved[k]) and saved[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
            if items:
                parts.append(f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})")
        raise ConfigError(
            f"--resume: {checkpoint} was saved for another model or loss than this config builds: weights "
            f"{'; '.join(parts)}. Resume with the run's own config.yaml ({command} --resume RUN_DIR)."
        )


def _n_devices(hw: HardwareSection) -> int:
    if hw.devices == "auto":
        return 1
    return hw.devices if isinstance(hw.devices, int) else len(hw.devices)


def _check_upfront(issues: list[ConfigIssue], source: str | None = None) -> None:
    if issues:
        raise ConfigValidationError(issues, source=source)


def expected_metric_names(section: MetricsSection, categories: Sequence[str] | None = None) -> list[str]:
    """The names validation logs for ``section`` (``"OVERALL/cmc/1"``, ``"<category>/map/5"``, ...).

    Found by computing the configured metrics on a tiny synthetic set, so the names are exactly those of
    :class:`~omlcore_metrics.EmbeddingMetrics`.
    """
    metric = _make_metric(section, log_images=False)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings = torch.arange(24, dtype=torch.float32).reshape(6, 4).sin()
    ones = torch.ones(6, dtype=torch.bool)
    metric.setup(num_samples=6)
    metric.update({"embeddings": embeddings, "labels": labels, "is_query": ones, "is_gallery": ones})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        overall = list(metric.compute())
    names = list(overall)
    if categories and section.categories_key and not section.return_only_overall_category:
        suffixes = [n.split("/", 1)[1] for n in overall]
        names += [f"{c}/{s}" for c in sorted(set(categories)) for s in suffixes]
    return names


def monitor_issues(config: TrainConfig) -> list[ConfigIssue]:
    """``checkpoint.monitor`` and ``scheduling.monitor`` checked against the config alone (no data): each must
    be ``train/loss`` or ``<group>/<metric>`` with a metric the config computes. Whether a category
    ``<group>`` exists needs the CSV; the pipelines check that before training."""
    overall = expected_metric_names(config.metrics)
    suffixes = {n.split("/", 1)[1] for n in overall}
    monitors = [("checkpoint.monitor", config.checkpoint.monitor)]
    if config.scheduling is not None and config.scheduling.monitor is not None:
        monitors.append(("scheduling.monitor", config.scheduling.monitor))
    issues = []
    for path, name in monitors:
        if name in TRAIN_METRICS or name.partition("/")[2] in suffixes:
            continue
        issue = _monitor_issue(path, name, [*overall, *TRAIN_METRICS], True)
        if issue is not None:
            issues.append(issue)
    return issues


def _monitor_issue(path: str, name: str, names: Sequence[str], has_validation: bool) -> ConfigIssue | None:
    if name in names:
        return None
    close = difflib.get_close_matches(name, names, n=2)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    why = "" if has_validation else " (the dataset has no validation rows, so no validation metric is logged)"
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return ConfigIssue(path, f"{name!r} is never logged by this run{why}.{hint} Logged: {shown}")


def _make_metric(
    section: MetricsSection, *, log_images: bool, postprocessor: Any = None, postprocessor_dataset: Any = None
) -> Any:
    from omlcore_metrics.accumulator import EmbeddingMetrics

    return EmbeddingMetrics(
        postprocessor=postprocessor,
        postprocessor_dataset=postprocessor_dataset,
        cmc_top_k=section.cmc_top_k,
        precision_top_k=section.precision_top_k,
        map_top_k=section.map_top_k,
        fmr_vals=section.fmr_vals,
        pcf_variance=section.pcf_variance,
        categories_key=section.categories_key,
        return_only_overall_category=section.return_only_overall_category,
        metrics_to_exclude_from_visualization=section.metrics_to_exclude_from_visualization,
        visualize_only_overall_category=section.visualize_only_overall_category,
        log_images=log_images,
        extra_keys=("paths", "x1", "y1", "x2", "y2") if log_images else (),
    )


def _check_data(data: DataSection, *, verbose: bool) -> None:
    from omlcore_images.dataframe import check_dataframe

    csv = Path(data.dataset_root) / data.dataframe_name
    if not csv.is_file():
        raise ConfigError(
            f"data.dataset_root / data.dataframe_name: the dataset CSV {str(csv)!r} does not exist. "
            f"Write the mock dataset with 'omlcore data mock {data.dataset_root}', convert a dataset with "
            f"'omlcore data convert', or fix the path."
        )
    report = check_dataframe(csv, root=data.dataset_root)
    report.raise_for_errors()
    if verbose and data.show_dataset_warnings and report.warnings:
        print(report.format(), file=sys.stderr)


def _build(kind: str, spec: ComponentSpec | None, **runtime: Any) -> Any:
    from omlcore.registry import build

    return None if spec is None else build(kind, spec, **runtime)


def _sampler_factory(config: TrainConfig, dataset: Any) -> Any:
    return make_sampler_factory(config.sampler, config.data.batch_size_train, config.seed, dataset)


def make_sampler_factory(spec: ComponentSpec | None, batch_size_train: int | None, seed: int, dataset: Any) -> Any:
    """A function building the training batch sampler: the ``sampler`` spec built over ``dataset``'s labels
    (with the run's ``seed`` unless its args set one), or, for ``None``, :class:`ShuffledBatches` of
    ``batch_size_train``. Called once per ``fit`` (after the DDP processes exist)."""
    from omlcore.registry import get_registry

    if spec is None:
        size = batch_size_train
        assert size is not None  # phase 1 requires it without a sampler
        n = len(dataset)

        def shuffled() -> Any:
            return ShuffledBatches(n, size, seed=seed)

        return shuffled
    registry = get_registry()
    runtime: dict[str, Any] = {"labels": dataset.get_labels(), "label2category": dataset.get_label2category()}
    accepts = registry.args_model("sampler", spec.name).accepts
    if (accepts is None or "seed" in accepts) and "seed" not in spec.args:
        runtime["seed"] = seed  # the run's seed decides the batches unless the sampler's args say
    sampler_spec = spec

    def build_sampler() -> Any:
        return registry.build("sampler", sampler_spec, **runtime)

    return build_sampler


class _DataModule(pl.LightningDataModule):
    """Loaders built when Lightning asks for them, i.e. after the DDP processes exist."""

    def __init__(
        self,
        *,
        train: Any = None,
        sampler_factory: Any = None,
        progress: TrainProgress | None = None,
        val: Sequence[Any] = (),
        predict: Any = None,
        batch_size_val: int = 128,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train = train
        self.sampler_factory = sampler_factory
        self.progress = progress or TrainProgress()
        self.val = list(val)
        self.predict = predict
        self.batch_size_val = batch_size_val
        self.num_workers = num_workers
        self.seed = seed

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        assert trainer is not None, "the loaders are built by a Trainer"
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> Any:
        world, rank = self._rank()
        return train_loader(
            self.train,
            self.sampler_factory(),
            progress=self.progress,
            seed=self.seed,
            num_workers=self.num_workers,
            world_size=world,
            rank=rank,
        )

    def val_dataloader(self) -> Any:
        world, rank = self._rank()
        loaders = [
            eval_loader(ds, self.batch_size_val, num_workers=self.num_workers, world_size=world, rank=rank)
            for ds in self.val
        ]
        return loaders[0] if len(loaders) == 1 else loaders

    def predict_dataloader(self) -> Any:
        world, rank = self._rank()
        return eval_loader(self.predict, self.batch_size_val, num_workers=self.num_workers, world_size=world, rank=rank)


class _RunRecorder(Callback):
    """Appends each validation's record to ``metrics.json`` and keeps the file in step with checkpoints.

    A record is ``{"epoch", "step", "metrics": {...}}`` plus, in training runs, where it is written at the
    end of the epoch, ``"train_loss"`` (the epoch's mean) and ``"elapsed_s"`` (wall-clock seconds of
    ``fit`` so far, validation included, carried over a resume). Checkpoints remember how many records
    existed; resuming drops records written after the checkpoint.
    """

    def __init__(
        self, run: RunFolder, metric_callbacks: Sequence[MetricValCallback], config: Mapping[str, Any]
    ) -> None:
        self.run = run
        self.metric_callbacks = list(metric_callbacks)
        self.config = dict(config)
        self.records = 0
        self._restored: int | None = None
        self._pending: dict[str, float] | None = None
        self._elapsed_before = 0.0  # seconds of fit before this process (restored from a checkpoint)
        self._fit_started: float | None = None

    def elapsed(self) -> float:
        """Wall-clock seconds of ``fit``, including those before a resume."""
        running = time.monotonic() - self._fit_started if self._fit_started is not None else 0.0
        return self._elapsed_before + running

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = int(state_dict["records"])
        self._elapsed_before = float(state_dict.get("elapsed_s", 0.0))

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["omlcore_config"] = self.config

    def _sync_file(self, trainer: pl.Trainer) -> None:
        existing = self.run.read_metrics() if trainer.is_global_zero else []
        keep = self._restored if self._restored is not None else len(existing)
        if trainer.is_global_zero and len(existing) != keep:
            self.run.write_metrics(existing[:keep])
        self.records = keep

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_started = time.monotonic()
        self._sync_file(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit":
            self._sync_file(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        merged: dict[str, float] = {}
        for cb in self.metric_callbacks:
            merged.update(cb.latest)
        self._pending = merged
        if trainer.state.fn != "fit":
            self._write(trainer, None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            epoch_loss = getattr(pl_module, "epoch_loss", None)
            self._write(trainer, epoch_loss() if epoch_loss is not None else None)

    def _write(self, trainer: pl.Trainer, train_loss: float | None) -> None:
        record: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if train_loss is not None:
            record["train_loss"] = train_loss
        if trainer.state.fn == "fit":
            record["elapsed_s"] = round(self.elapsed(), 3)
        record["metrics"] = self._pending or {}
        if trainer.is_global_zero:
            self.run.append_metrics(record)
        self.records += 1
        self._pending = None


def _figure_saver(run: RunFolder) -> Any:
    import re

    def save(figure: Any, title: str, step: int) -> None:
        import io

        name = re.sub(r"[^A-Za-z0-9._@+-]+", "_", title).strip("_") + ".png"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        write_bytes_atomic(run.figures / f"epoch_{step:03d}" / name, buffer.getvalue())

    return save


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up notes and the warnings that do not apply to these pipelines."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*number of training batches.*logging interval.*",
            ".*`training_step` returned `None`.*",
            ".*Checkpoint directory .* exists and is not empty.*",
            ".*LeafSpec.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _trainer(
    hw: HardwareSection,
    *,
    callbacks: list[Callback],
    loggers: list[Any],
    root: Path,
    verbose: bool,
    find_unused_parameters: bool = False,
    **kwargs: Any,
) -> pl.Trainer:
    extra = dict(hw.extra_args)
    extra.setdefault("enable_progress_bar", verbose)
    extra.setdefault("enable_model_summary", verbose)
    if not extra["enable_progress_bar"]:
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if "strategy" not in extra and _n_devices(hw) > 1:
        from lightning.pytorch.strategies import DDPStrategy

        extra["strategy"] = DDPStrategy(find_unused_parameters=find_unused_parameters)
    return pl.Trainer(
        accelerator=hw.accelerator,
        devices=hw.devices,
        precision=hw.precision,
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=root,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        **kwargs,
        **extra,
    )


def _run_folder_for(run: Any, resume: Path | None) -> RunFolder:
    """This run's folder: the resumed one, the one the launching process chose (DDP), or a new one."""
    if resume is not None:
        folder = RunFolder(resume)
        folder.checkpoint_to_resume()
        return folder
    if not env_rank_is_zero():  # a process launched for DDP: the first process made the folder
        chosen = os.environ.get(RUN_DIR_ENV)
        if chosen:
            return RunFolder(chosen)
        if run.logs_folder is not None:
            return RunFolder(Path(run.logs_root) / run.logs_folder)
        raise ConfigError(
            "run.logs_folder: this process was started by an external launcher (torchrun, SLURM, several "
            "nodes), so the processes cannot agree on a timestamped run folder; set run.logs_folder."
        )
    return RunFolder.create(run.logs_root, run.logs_folder, run.postfix)


def _checkpoint_callbacks(
    folder: RunFolder, section: Any, *, on_train_epoch_end: bool, every_n_epochs: int | None = None
) -> tuple[ModelCheckpoint, GracefulInterrupt, list[Callback]]:
    """The checkpointing of a run folder: ``best`` by ``section.monitor`` (``every_n_epochs``, saved at the end of
    the training epoch or of validation), ``last`` after every epoch if ``section.save_last``, and Ctrl-C's
    checkpoint. Returns the best-checkpoint callback, the interrupt callback and all of them in the order they
    must run (the interrupt after the others), for the end of the trainer's callback list."""
    best = ModelCheckpoint(
        dirpath=folder.checkpoints,
        filename="best" if section.save_top_k <= 1 else "best-e{epoch:03d}",
        monitor=section.monitor,
        mode=section.mode,
        save_top_k=section.save_top_k,
        save_last=False,
        every_n_epochs=every_n_epochs,
        auto_insert_metric_name=False,
        save_on_train_epoch_end=on_train_epoch_end,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=folder.checkpoints,
        save_top_k=0,
        save_last=True,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    interrupt = GracefulInterrupt(folder.last_checkpoint)
    return best, interrupt, [best, *([last] if section.save_last else []), interrupt]


def _open_loggers(specs: Any, folder: RunFolder, tags: Sequence[str], *, rank0: bool) -> ExperimentLoggers:
    """The run's experiment loggers (first process only), started before anything is written to the
    folder: if one cannot start (credentials, server), a folder this run created is removed again, so a
    failed start leaves no half-made run behind."""
    if not rank0:
        return ExperimentLoggers([])
    try:
        return ExperimentLoggers(build_loggers(specs, folder.path, tags))
    except BaseException:
        folder.discard()
        raise


@contextmanager
def _shared_run_dir(folder: RunFolder) -> Iterator[None]:
    """Tell processes launched for DDP (they inherit the environment) which run folder to use."""
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(folder.path.resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous


@contextmanager
def _keep_sigint() -> Iterator[None]:
    """Restore the SIGINT handler afterwards (Lightning ignores SIGINT for good after a KeyboardInterrupt)."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _say(verbose: bool, text: str) -> None:
    if verbose and env_rank_is_zero():
        print(text, flush=True)


# ---- summaries -----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def format_history(history: Sequence[Mapping[str, Any]]) -> str:
    """A table with one row per validation: epoch, training loss and the OVERALL metrics."""
    if not history:
        return "(nothing was validated)"
    names = [k for k in history[-1].get("metrics", {}) if k.startswith("OVERALL/")]
    has_loss = any("train_loss" in r for r in history)
    header = ["epoch", *(["loss"] if has_loss else []), *(n.split("/", 1)[1] for n in names)]
    rows = []
    for r in history:
        row = [str(r.get("epoch", "-")), *([_fmt(r.get("train_loss", "-"))] if has_loss else [])]
        row += [_fmt(r.get("metrics", {}).get(n, "-")) for n in names]
        rows.append(row)
    return _table(header, rows)


def format_metrics(metrics: Mapping[str, float]) -> str:
    """A table of one validation's metrics: a row per metric, a column per group (OVERALL, categories)."""
    groups: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        group, _, metric = name.partition("/")
        if group not in groups:
            groups.append(group)
        rows.setdefault(metric, {})[group] = value
    body = [[metric, *(_fmt(values.get(g, "-")) for g in groups)] for metric, values in rows.items()]
    return _table(["metric", *groups], body)


# ---- train ---------------------------------------------------------------------------------------


def train(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    resume: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
) -> RunResult:
    """Train an extractor as ``config`` says and return what the run produced.

    ``config`` is a :class:`~omlcore.schemas.TrainConfig`, a mapping or a YAML path (validated in both
    phases, ``overrides`` applied). ``resume`` is a run folder to continue from its
    ``checkpoints/last.ckpt``. ``callbacks`` are added to the Lightning trainer (after those of plugins).
    ``verbose`` shows the progress bar, the model summary and the tables at the end.
    Raises :class:`~omlcore.errors.ConfigError` (bad config, ``--resume``, devices, metric names) or
    :class:`~omlcore_images.DataFrameError` (bad CSV) before any training.
    """
    from omlcore_images.datasets import get_retrieval_images_datasets

    from omlcore.plugins import collect_trainer_callbacks, notify_run_finished

    cfg: TrainConfig = _as_config(config, overrides, "train")
    resume_dir = Path(resume) if resume is not None else None
    issues = _device_issues(cfg.trainer) + _extra_args_issues(cfg.trainer.extra_args)
    if not issues:
        issues = _trainer_issues(cfg.trainer, cfg.trainer.find_unused_parameters)
    if resume_dir is not None:
        RunFolder(resume_dir).checkpoint_to_resume()
    _check_upfront(issues)

    # -- data and components, checked before the run folder exists
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # components' initial weights
    rank0 = env_rank_is_zero()
    _check_data(cfg.data, verbose=verbose and rank0)
    transforms_train = _build("transform", cfg.transforms_train)
    transforms_val = _build("transform", cfg.transforms_val)
    train_ds, val_ds = get_retrieval_images_datasets(
        cfg.data.dataset_root,
        transforms_train,
        transforms_val,
        dataframe_name=cfg.data.dataframe_name,
        cache_size=cfg.data.cache_size,
    )
    if train_ds is None:
        raise ConfigError(
            f"data: {cfg.data.dataset_root / cfg.data.dataframe_name} has no rows with split 'train', so there "
            f"is nothing to train on."
        )
    sampler_factory = _sampler_factory(cfg, train_ds)
    sampler_factory()  # built once now, so that bad sampler arguments fail before the run starts
    extractor = _build("extractor", cfg.extractor)
    loss = _build("loss", cfg.loss)
    optimizer = _build("optimizer", cfg.optimizer, params=param_groups(extractor, loss))
    scheduler = None
    sched = cfg.scheduling
    if sched is not None:
        scheduler = _build("scheduler", sched.scheduler, optimizer=optimizer)
    module = ExtractorModule(
        extractor,
        loss,
        optimizer=optimizer,
        scheduler=scheduler,
        scheduler_interval=sched.interval if sched else "step",
        scheduler_frequency=sched.frequency if sched else 1,
        scheduler_monitor=sched.monitor if sched else None,
        freeze_n_epochs=cfg.trainer.freeze_n_epochs,
    )

    names = list(TRAIN_METRICS)
    if val_ds is not None:
        names = expected_metric_names(cfg.metrics, val_ds.categories) + names
    issue = _monitor_issue("checkpoint.monitor", cfg.checkpoint.monitor, names, val_ds is not None)
    issues = [issue] if issue else []
    if sched is not None:
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and sched.monitor is None:
            issues.append(ConfigIssue("scheduling.monitor", f"{sched.scheduler.name!r} needs a metric to watch"))
        elif sched.monitor is not None:
            issue = _monitor_issue("scheduling.monitor", sched.monitor, names, val_ds is not None)
            issues += [issue] if issue else []
    _check_upfront(issues)
    if resume_dir is not None:
        _checkpoint_fits(RunFolder(resume_dir).last_checkpoint, module)

    # -- the run
    folder = _run_folder_for(cfg.run, resume_dir)
    resolved = cfg.model_dump(mode="json")
    with _shared_run_dir(folder), _quiet_lightning():
        loggers = _open_loggers(cfg.logger, folder, cfg.run.tags, rank0=rank0)
        if rank0:
            folder.write_config(resolved)
        progress = TrainProgress()
        metric_callbacks = []
        if val_ds is not None:
            metric_callbacks.append(
                MetricValCallback(
                    _make_metric(cfg.metrics, log_images=cfg.metrics.log_images),
                    log_images=cfg.metrics.log_images,
                    figure_sinks=[loggers.log_figure, _figure_saver(folder)],
                    prog_bar=[cfg.checkpoint.monitor],
                )
            )
        recorder = _RunRecorder(folder, metric_callbacks, resolved)
        monitor_is_train = cfg.checkpoint.monitor in TRAIN_METRICS
        best_cb, interrupt, saving = _checkpoint_callbacks(folder, cfg.checkpoint, on_train_epoch_end=monitor_is_train)
        all_callbacks: list[Callback] = [
            ReproducibleProgress(progress, cfg.seed),
            *metric_callbacks,
            recorder,
            *collect_trainer_callbacks(cfg),
            *callbacks,
            ProgressBar(),
            *saving,
        ]
        datamodule = _DataModule(
            train=train_ds,
            sampler_factory=sampler_factory,
            progress=progress,
            val=[val_ds] if val_ds is not None else [],
            batch_size_val=cfg.data.batch_size_val,
            num_workers=cfg.data.num_workers,
            seed=cfg.seed,
        )
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        trainer = _trainer(
            cfg.trainer,
            callbacks=all_callbacks,
            loggers=loggers.lightning_loggers(),
            root=folder.path,
            verbose=verbose,
            find_unused_parameters=cfg.trainer.find_unused_parameters,
            max_epochs=cfg.trainer.max_epochs,
            check_val_every_n_epoch=cfg.trainer.valid_period,
            **({"limit_val_batches": 0} if val_ds is None else {}),
        )
        if trainer.is_global_zero:
            loggers.log_params(flatten_config(resolved))
            loggers.log_artifact(folder.config_file, "config.yaml")
            loggers.log_artifact(Path(cfg.data.dataset_root) / cfg.data.dataframe_name, cfg.data.dataframe_name)
        _say(verbose, f"run folder: {folder.path}")
        interrupted = False
        with _keep_sigint():
            try:
                ckpt_path = str(folder.last_checkpoint) if resume_dir else None
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            except SystemExit:  # how Lightning ends a run after a KeyboardInterrupt
                if not (interrupt.requested or trainer.interrupted):
                    raise
                interrupted = True
            except BaseException:
                loggers.finish("failed")
                raise
        if trainer.interrupted:
            interrupted = True
        history = folder.read_metrics() if trainer.is_global_zero else []
        last_metrics = dict(history[-1]["metrics"]) if history else {}
        best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
        last = folder.last_checkpoint if folder.last_checkpoint.exists() else None
        result = RunResult(folder.path, last_metrics, history, best, last, interrupted)
        if not trainer.is_global_zero:
            return result
        loggers.log_artifact(folder.metrics_file, "metrics.json") if folder.metrics_file.exists() else None
        loggers.finish("failed" if interrupted else "success")
        if interrupted:
            saved = "saved" if interrupt.saved else "kept (the previous one)"
            _say(
                verbose,
                f"\nInterrupted. Checkpoint {saved}: {folder.last_checkpoint}\n"
                f"Continue with: omlcore train --resume {folder.path}",
            )
            return result
        for failure in notify_run_finished(cfg, folder.path, last_metrics):
            warnings.warn(f"an omlcore_run_finished observer failed: {failure}", stacklevel=2)
        if verbose:
            print("\nValidation metrics by epoch (OVERALL):")
            print(format_history(history))
            if any(not k.startswith("OVERALL/") for k in last_metrics):
                print("\nLast validation, per category:")
                print(format_metrics(last_metrics))
            if best is not None:
                score = best_cb.best_model_score
                shown = f" ({cfg.checkpoint.monitor} = {float(score):.4f})" if score is not None else ""
                print(f"\nbest checkpoint: {best}{shown}")
            print(f"run folder: {folder.path}")
        return result


# ---- validate ------------------------------------------------------------------------------------


def validate(
    config: ValidateConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
) -> RunResult:
    """Compute the retrieval metrics of an extractor on the validation rows of a dataset.

    With ``postprocessor`` (e.g. omlcore-reranking's ``pairwise_images``), every query's top results are
    re-ranked before the per-query metrics are computed (the metrics' names do not change). A postprocessor
    that reads items gets the validation dataset through ``transforms_postprocessor`` (null: the
    validation transforms, the same dataset object).

    Writes a run folder with ``config.yaml``, ``metrics.json`` (one record) and, with
    ``metrics.log_images``, the figures; returns the metrics. ``verbose`` shows the progress bar and the table.
    """
    from omlcore_images.datasets import get_retrieval_images_datasets

    from omlcore.plugins import collect_trainer_callbacks, notify_run_finished

    cfg: ValidateConfig = _as_config(config, overrides, "validate")
    issues = _device_issues(cfg.trainer) + _extra_args_issues(cfg.trainer.extra_args)
    issues = issues or _trainer_issues(cfg.trainer)
    if cfg.transforms_postprocessor is not None and cfg.postprocessor is None:
        issues.append(
            ConfigIssue(
                "transforms_postprocessor",
                "is only used by a postprocessor that reads items (pairwise_images), and there is no "
                "postprocessor: set postprocessor or remove transforms_postprocessor",
            )
        )
    _check_upfront(issues)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # a pairwise model without weights: reproducible
    postprocessor = _build("postprocessor", cfg.postprocessor)
    reads = getattr(postprocessor, "reads", None)
    if cfg.postprocessor is not None and cfg.transforms_postprocessor is not None and reads != "items":
        _check_upfront(
            [
                ConfigIssue(
                    "transforms_postprocessor",
                    f"the postprocessor {cfg.postprocessor.name!r} reads {reads or 'no dataset items'}, not items, "
                    f"so transforms_postprocessor would never be used: remove it",
                )
            ]
        )
    rank0 = env_rank_is_zero()
    _check_data(cfg.data, verbose=verbose and rank0)
    transforms_val = _build("transform", cfg.transforms_val)

    def validation_dataset(transforms: Any) -> Any:
        _, dataset = get_retrieval_images_datasets(
            cfg.data.dataset_root,
            None,
            transforms,
            dataframe_name=cfg.data.dataframe_name,
            cache_size=cfg.data.cache_size,
        )
        return dataset

    val_ds = validation_dataset(transforms_val)
    if val_ds is None:
        raise ConfigError(
            f"data: {cfg.data.dataset_root / cfg.data.dataframe_name} has no rows with split 'validation', so "
            f"there is nothing to validate on."
        )
    postprocessor_ds = None
    if reads == "items":  # indexed like val_ds: the metric's dataset indices are val_ds positions
        tp = cfg.transforms_postprocessor
        same = tp is None or tp == cfg.transforms_val
        postprocessor_ds = val_ds if same else validation_dataset(_build("transform", tp))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    extractor = _build("extractor", cfg.extractor)
    module = ExtractorModule(extractor)
    folder = _run_folder_for(cfg.run, None)
    resolved = cfg.model_dump(mode="json")
    with _shared_run_dir(folder), _quiet_lightning():
        loggers = _open_loggers(cfg.logger, folder, cfg.run.tags, rank0=rank0)
        if rank0:
            folder.write_config(resolved)
        metric = _make_metric(
            cfg.metrics,
            log_images=cfg.metrics.log_images,
            postprocessor=postprocessor,
            postprocessor_dataset=postprocessor_ds,
        )
        metric_cb = MetricValCallback(
            metric, log_images=cfg.metrics.log_images, figure_sinks=[loggers.log_figure, _figure_saver(folder)]
        )
        recorder = _RunRecorder(folder, [metric_cb], resolved)
        trainer = _trainer(
            cfg.trainer,
            callbacks=[metric_cb, recorder, *collect_trainer_callbacks(cfg), *callbacks, ProgressBar()],
            loggers=loggers.lightning_loggers(),
            root=folder.path,
            verbose=verbose,
            enable_checkpointing=False,
        )
        datamodule = _DataModule(
            val=[val_ds], batch_size_val=cfg.data.batch_size_val, num_workers=cfg.data.num_workers, seed=cfg.seed
        )
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        if trainer.is_global_zero:
            loggers.log_params(flatten_config(resolved))
            loggers.log_artifact(folder.config_file, "config.yaml")
        try:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        except BaseException:
            loggers.finish("failed")
            raise
        metrics = dict(metric_cb.latest)
        result = RunResult(folder.path, metrics, folder.read_metrics() if trainer.is_global_zero else [])
        if not trainer.is_global_zero:
            return result
        loggers.log_artifact(folder.metrics_file, "metrics.json")
        loggers.finish("success")
        for failure in notify_run_finished(cfg, folder.path, metrics):
            warnings.warn(f"an omlcore_run_finished observer failed: {failure}", stacklevel=2)
        if verbose:
            print("\n" + format_metrics(metrics))
            print(f"\nrun folder: {folder.path}")
        return result


# ---- predict -------------------------------------------------------------------------------------


def find_images(data_dir: Path, extensions: Sequence[str]) -> list[str]:
    """Files under ``data_dir`` (recursively) with one of ``extensions`` (any case), as sorted paths relative
    to ``data_dir``."""
    wanted = {e.lower().lstrip(".") for e in extensions}
    found = [
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.is_file() and p.suffix.lower().lstrip(".") in wanted
    ]
    return sorted(found)


class _Collector(Callback):
    """Gathers the embeddings of every process, in dataset order, without the distributed sampler's repeats."""

    def __init__(self) -> None:
        self._idx: list[torch.Tensor] = []
        self._emb: list[torch.Tensor] = []
        self.embeddings: torch.Tensor | None = None

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._idx.append(torch.as_tensor(outputs["idx"]).cpu())
        self._emb.append(outputs["embeddings"].detach().float().cpu())

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        idx = torch.cat(self._idx) if self._idx else torch.zeros(0, dtype=torch.long)
        emb = torch.cat(self._emb) if self._emb else torch.zeros(0, 0)
        if trainer.world_size > 1:
            parts: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(parts, (idx, emb))
            idx = torch.cat([p[0] for p in parts])
            emb = torch.cat([p[1] for p in parts])
        order = torch.argsort(idx, stable=True)
        idx, emb = idx[order], emb[order]
        first = torch.ones_like(idx, dtype=torch.bool)
        first[1:] = idx[1:] != idx[:-1]
        self.embeddings = emb[first]


def predict(
    config: PredictConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    verbose: bool = True,
) -> PredictResult:
    """Embed every image under ``data.data_dir`` and write ``save_dir/embeddings.npy`` (``N x D`` float32,
    row ``i`` for image ``i``) and ``save_dir/paths.csv`` (column ``path``, relative to ``data_dir``, in the
    same order). Both files are written atomically, only once every image was embedded. ``verbose`` shows the
    progress bar and where the files went.
    """
    from omlcore_images.datasets import ImageBaseDataset

    cfg: PredictConfig = _as_config(config, overrides, "predict")
    issues = _device_issues(cfg.trainer) + _extra_args_issues(cfg.trainer.extra_args)
    issues = issues or _trainer_issues(cfg.trainer)
    data_dir = Path(cfg.data.data_dir)
    if not data_dir.is_dir():
        issues.append(ConfigIssue("data.data_dir", f"{str(data_dir)!r} is not a folder"))
    _check_upfront(issues)
    paths = find_images(data_dir, cfg.data.extensions)
    if not paths:
        raise ConfigError(
            f"data.data_dir: no file with extension {', '.join(cfg.data.extensions)} under {str(data_dir)!r}"
        )
    pl.seed_everything(cfg.seed, verbose=False)
    transform = _build("transform", cfg.transforms_predict)
    dataset = ImageBaseDataset(paths, dataset_root=data_dir, transform=transform)
    module = ExtractorModule(_build("extractor", cfg.extractor))
    collector = _Collector()
    with _quiet_lightning():
        trainer = _trainer(
            cfg.trainer, callbacks=[collector, ProgressBar()], loggers=[], root=Path(cfg.save_dir), verbose=verbose
        )
        datamodule = _DataModule(predict=dataset, batch_size_val=cfg.data.batch_size, num_workers=cfg.data.num_workers)
        pl.seed_everything(cfg.seed, verbose=False)
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    emb = collector.embeddings
    assert emb is not None
    if emb.shape[0] != len(paths):
        raise RuntimeError(f"{emb.shape[0]} embeddings were computed for {len(paths)} images")
    save_dir = Path(cfg.save_dir)
    out = PredictResult(save_dir / "embeddings.npy", save_dir / "paths.csv", int(emb.shape[0]), int(emb.shape[1]))
    if trainer.is_global_zero:
        import io

        buffer = io.BytesIO()
        np.save(buffer, emb.numpy().astype(np.float32))
        write_bytes_atomic(out.embeddings, buffer.getvalue())
        write_text_atomic(out.paths, "path\n" + "".join(_csv_cell(p) + "\n" for p in paths))
        _say(verbose, f"wrote {out.count} embeddings of size {out.dim}: {out.embeddings} and {out.paths}")
    return out


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
