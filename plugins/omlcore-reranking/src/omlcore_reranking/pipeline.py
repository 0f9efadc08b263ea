"""``omlcore train-postprocessor CONFIG``: train a pairwise re-ranker (STIR's second stage) with Lightning.

1. The config is checked in full before any work: structure (pydantic, unknown keys rejected), every
   component slot against its plugin, the devices, the postprocessor's ``top_n``.
2. The frozen ``extractor`` embeds the train and validation rows (``transforms_extraction``); the
   embeddings are cached in ``embeddings_cache.folder`` (``train.pt``, ``validation.pt``) under a key of
   everything that changes them (:mod:`omlcore_reranking.cache`). A cache made from other inputs stops the
   run with the differences listed; ``embeddings_cache.refresh: true`` recomputes it.
3. Training batches (``sampler`` or shuffled ``data.batch_size_train``) carry the images
   (``transforms_train``) and the cached embeddings; the ``pair_miner`` picks pairs by the embeddings and
   the ``pairwise_model`` learns "is negative" with BCE (:func:`~omlcore_reranking.training.pairwise_bce_loss`).
   ``trainer.freeze_n_epochs``: the pairwise model's ``freeze()`` (its extractor) for the first epochs.
4. Every ``trainer.valid_period`` epochs, the validation top-k (searched with the cached embeddings) is
   re-ranked by the ``postprocessor`` holding the model being trained, over the validation images
   (``transforms_val``), on the Lightning module's device; the metrics go to ``metrics.json`` and pick
   ``checkpoints/best.ckpt``. The first record (``epoch: null``) holds the metrics without re-ranking.
   ``metrics.log_images``: the worst queries after re-ranking are drawn into ``figures/epoch_NNN/`` and sent
   to the experiment loggers.

The postprocessor's ``reads`` decides what the pairwise model takes. ``pairwise_images`` (``reads: items``):
images, as above. ``pairwise_embeddings`` (``reads: embeddings``, e.g. with ``linear_siamese``): the cached
embeddings, in training and in validation; no image is read after the cache is made, and
``transforms_train`` / ``transforms_val`` are refused (they would not be used).

As ``omlcore train`` (through :mod:`omlcore_lightning.shared`): the config's ``logger`` section starts before
the run folder is written (one that cannot start removes a folder this run created) and gets the resolved
config, every validation's metrics and the training loss; batches are reproducible and resumable; Ctrl-C
saves ``checkpoints/last.ckpt``, and ``resume=RUN_DIR`` continues from it (records written after the
checkpoint are dropped, so ``metrics.json`` ends as that of an uninterrupted run).

Run folder: ``config.yaml``, ``metrics.json``, ``checkpoints/{best,last}.ckpt`` (state-dict keys
``model.*``: ``concat_siamese``'s ``weights`` loads them), ``figures/`` (with ``metrics.log_images``).

Several devices (``trainer.devices: 2``, DDP as in ``omlcore train``): only the first process computes the
embeddings cache (the others read it), every process trains on its share of the batches and re-ranks its
share of the validation queries; the re-ranked top-k are gathered, so every process computes the metrics of
the whole validation set (the first process's are broadcast, so all agree exactly).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from omlcore.errors import ComponentBuildError, ConfigError, ConfigIssue, ConfigValidationError
from omlcore.schemas import ComponentSpec
from omlcore_reranking.config import PIPELINE, EmbeddingsCacheSection, TrainPostprocessorConfig

__all__ = [
    "EmbeddingsCacheSection",
    "PostprocessorRunResult",
    "TrainPostprocessorConfig",
    "postprocessor_reads",
    "train_postprocessor",
    "train_postprocessor_issues",
]


@dataclass
class PostprocessorRunResult:
    """What a ``train_postprocessor`` run produced."""

    run_dir: Path
    metrics: dict[str, float]
    """The last validation's metrics after re-ranking (empty if nothing was validated)."""
    baseline: dict[str, float]
    """The validation metrics of the extractor alone (no re-ranking)."""
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    cache_hits: dict[str, bool] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    """The records of ``metrics.json`` (the extractor's first, then one per validation)."""
    interrupted: bool = False
    """Stopped by Ctrl-C (``checkpoints/last.ckpt`` was saved; continue with ``resume=run_dir``)."""


def load_train_postprocessor_config(
    source: str | os.PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = ()
) -> TrainPostprocessorConfig:
    """Read (YAML path or mapping), apply ``overrides`` and check a config in both phases; raises
    :class:`~omlcore.errors.ConfigValidationError` listing every problem."""
    from omlcore.config import apply_overrides, cross_field_issues, parse_config, plugin_issues, read_yaml

    name = None if isinstance(source, Mapping) else str(source)
    data = apply_overrides(dict(source) if isinstance(source, Mapping) else read_yaml(Path(source)), overrides)
    if data.get("pipeline") != PIPELINE:
        got = "is missing" if "pipeline" not in data else f"is {data['pipeline']!r}"
        raise ConfigValidationError([ConfigIssue("pipeline", f"{got}; this command runs 'pipeline: {PIPELINE}'")], name)
    try:
        cfg = parse_config(data, cross_field=False)
    except ConfigValidationError as exc:
        raise ConfigValidationError(exc.issues, name) from None
    assert isinstance(cfg, TrainPostprocessorConfig)
    # Everything at once: cross-field checks, every component slot, and (this plugin's omlcore_validate_config
    # hook, so `omlcore check` reports them too) train_postprocessor_issues.
    issues = [*cross_field_issues(cfg), *plugin_issues(cfg)]
    if issues:
        raise ConfigValidationError(issues, name)
    return cfg


def train_postprocessor_issues(cfg: TrainPostprocessorConfig) -> list[ConfigIssue]:
    """The checks of a ``train_postprocessor`` config beyond its component slots: the ``postprocessor``
    (built with a placeholder model, so values its constructor refuses show now) and transforms that would
    not be used."""
    return _postprocessor_issues(cfg.postprocessor) or _unused_transforms_issues(cfg)


def postprocessor_reads(spec: ComponentSpec) -> str:
    """The ``reads`` of the configured postprocessor (``"items"``: images, ``"embeddings"``): what the pairwise
    model is trained and validated on: the registered class's attribute, or, for a factory function, that of
    the object it builds with a placeholder model."""
    from omlcore.registry import get_registry
    from omlcore_reranking.models import TrivialDistanceSiamese

    registry = get_registry()
    reads = getattr(registry.resolve("postprocessor", spec.name), "reads", None)
    if not isinstance(reads, str):  # a factory function: ask the object it builds
        placeholder = {"name": spec.name, "args": {**spec.args, "pairwise_model": TrivialDistanceSiamese()}}
        reads = getattr(registry.build("postprocessor", placeholder), "reads", "items")
    return str(reads)


def _unused_transforms_issues(cfg: TrainPostprocessorConfig) -> list[ConfigIssue]:
    if postprocessor_reads(cfg.postprocessor) != "embeddings":
        return []
    why = (
        f"is not used: the postprocessor {cfg.postprocessor.name!r} reads embeddings, so the pairwise model "
        "trains and is validated on the cached embeddings (transforms_extraction makes them); remove it"
    )
    return [ConfigIssue(key, why) for key in ("transforms_train", "transforms_val") if getattr(cfg, key) is not None]


def _postprocessor_issues(spec: ComponentSpec) -> list[ConfigIssue]:
    from omlcore.registry import get_registry
    from omlcore_reranking.models import TrivialDistanceSiamese

    if "pairwise_model" in spec.args:
        return [
            ConfigIssue(
                "postprocessor.args.pairwise_model",
                "is the model being trained, passed by the pipeline; remove it (configure it under pairwise_model)",
            )
        ]
    if "device" in spec.args:
        return [
            ConfigIssue(
                "postprocessor.args.device",
                "is the trainer's device (the model being trained re-ranks where it trains); remove it and set "
                "trainer.accelerator instead",
            )
        ]
    registry = get_registry()
    try:
        accepts = registry.args_model("postprocessor", spec.name).accepts
    except Exception:  # unknown name, broken plugin: validate() words it
        return registry.validate("postprocessor", spec, "postprocessor")
    if accepts is not None and "pairwise_model" not in accepts:
        why = f"{spec.name!r} takes no pairwise_model, so it cannot re-rank with the model trained; use a pairwise one"
        return [ConfigIssue("postprocessor.name", why)]
    placeholder = {"name": spec.name, "args": {**spec.args, "pairwise_model": TrivialDistanceSiamese()}}
    issues = registry.validate("postprocessor", placeholder, "postprocessor")
    if not issues:  # values the constructor refuses (top_n < 2...) must fail now, not after an epoch
        try:
            registry.build("postprocessor", placeholder)
        except ComponentBuildError as exc:
            cause = exc.__cause__ or exc
            issues.append(ConfigIssue("postprocessor.args", f"{type(cause).__name__}: {cause}"))
    return issues


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _embed(extractor: Any, dataset: Any, batch_size: int, num_workers: int, device: torch.device) -> torch.Tensor:
    """``extractor.extract`` over the dataset's ``input_tensors``, in dataset order, on the CPU."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    extractor.to(device)
    was_training = bool(getattr(extractor, "training", False))
    extractor.eval()
    out = []
    try:
        with torch.no_grad():
            for batch in loader:
                out.append(extractor.extract(batch["input_tensors"].to(device)).float().cpu())
    finally:
        if was_training:
            extractor.train()
    return torch.cat(out) if out else torch.empty(0, int(extractor.feat_dim))


WAIT_FOR_CACHE_S = 3600.0
"""How long a process launched for DDP waits for the first process to write the embeddings cache."""


def _cached_embeddings(
    cfg: TrainPostprocessorConfig,
    split: str,
    dataset: Any,
    extractor: Callable[[], Any],
    device: torch.device,
    rank0: bool = True,
) -> tuple[torch.Tensor, bool]:
    """The split's embeddings from the cache, computed (by ``extractor()``) and cached if needed. Only the
    first process computes: the others (DDP) read the file the first process wrote, waiting for it."""
    from omlcore_reranking.cache import EmbeddingsCache, files_stat_digest

    path = cfg.embeddings_cache.folder / f"{split}.pt"
    cache = EmbeddingsCache(path, refresh=cfg.embeddings_cache.refresh and rank0)
    key = cache.key(
        extractor=cfg.extractor,
        transforms=cfg.transforms_extraction,
        csv=Path(cfg.data.dataset_root) / cfg.data.dataframe_name,
        extra={"split": split, "images": files_stat_digest(dataset.paths), "device": device.type},
    )
    if rank0:
        return cache.get_or_compute(
            key,
            lambda: _embed(extractor(), dataset, cfg.embeddings_cache.batch_size, cfg.data.num_workers, device),
            n_rows=len(dataset),
        )
    return _wait_for_cache(cache, key, len(dataset)), True


def _wait_for_cache(cache: Any, key: Mapping[str, Any], n_rows: int) -> torch.Tensor:
    """The embeddings the first process writes for ``key`` (a file still missing or made for another key is
    waited for: the first process may be computing or refreshing it)."""
    import time

    from omlcore_reranking.errors import RerankingError, StaleEmbeddingsCacheError

    deadline = time.monotonic() + WAIT_FOR_CACHE_S
    while True:
        try:
            emb = cache.load(key, n_rows)
        except StaleEmbeddingsCacheError:
            emb = None
        if emb is not None:
            return emb  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise RerankingError(
                f"{cache.path}: the first process did not write the embeddings cache within "
                f"{WAIT_FOR_CACHE_S:.0f} s; this process (launched for DDP) does not compute it itself"
            )
        time.sleep(0.5)


def _run_issues(cfg: TrainPostprocessorConfig) -> list[ConfigIssue]:
    """The trainer section checked as ``omlcore train`` checks it (devices, extra_args, Lightning's verdict)."""
    from omlcore_lightning.shared import device_issues, extra_args_issues, trainer_issues

    issues = device_issues(cfg.trainer) + extra_args_issues(cfg.trainer.extra_args)
    for key in ("limit_val_batches",):
        if key in cfg.trainer.extra_args:
            issues.append(
                ConfigIssue(f"trainer.extra_args.{key}", "is set by the pipeline (validation is re-ranking); remove it")
            )
    return issues or trainer_issues(cfg.trainer, cfg.trainer.find_unused_parameters)


def train_postprocessor(
    config: TrainPostprocessorConfig | Mapping[str, Any] | str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    resume: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: bool = True,
) -> PostprocessorRunResult:
    """Run the ``train_postprocessor`` pipeline (see the module docstring); returns where it wrote what.

    ``resume`` is a run folder to continue from its ``checkpoints/last.ckpt`` (pass its ``config.yaml`` as
    ``config``; overrides such as ``trainer.max_epochs=5`` are allowed). ``callbacks`` are added to the
    Lightning trainer. Raises :class:`~omlcore.errors.ConfigError` before any training for a bad config, a
    missing checkpoint to resume or a checkpoint of another model.
    """
    import lightning.pytorch as pl
    from omlcore_images.datasets import get_retrieval_images_datasets
    from omlcore_lightning.callbacks import ProgressBar, ReproducibleProgress
    from omlcore_lightning.data import TrainProgress
    from omlcore_lightning.run import RunFolder, env_rank_is_zero, flatten_config
    from omlcore_lightning.shared import (
        PipelineDataModule,
        checkpoint_callbacks,
        checkpoint_fits,
        figure_saver,
        keep_sigint,
        make_sampler_factory,
        make_trainer,
        open_loggers,
        quiet_lightning,
        run_folder_for,
        shared_run_dir,
    )

    from omlcore.registry import build
    from omlcore_reranking.lightning_parts import PairwiseModule, RerankValidation
    from omlcore_reranking.training import EmbeddingItems, WithEmbeddings

    if isinstance(config, TrainPostprocessorConfig):
        cfg = load_train_postprocessor_config(config.model_dump(mode="json"), overrides) if overrides else config
    else:
        cfg = load_train_postprocessor_config(config, overrides)
    resume_dir = Path(resume) if resume is not None else None
    issues = _run_issues(cfg)
    if resume_dir is not None:
        RunFolder(resume_dir).checkpoint_to_resume()
    if issues:
        raise ConfigValidationError(issues)
    device = _device(cfg.trainer.accelerator)
    root = Path(cfg.data.dataset_root)
    csv = root / cfg.data.dataframe_name
    if not csv.is_file():
        raise ConfigError(f"data.dataset_root / data.dataframe_name: the dataset CSV {str(csv)!r} does not exist")
    t_extract = build("transform", cfg.transforms_extraction) if cfg.transforms_extraction else None
    ext_train, ext_val = get_retrieval_images_datasets(
        root, t_extract, t_extract, dataframe_name=cfg.data.dataframe_name, cache_size=cfg.data.cache_size
    )
    if ext_train is None or ext_val is None:
        missing = "train" if ext_train is None else "validation"
        raise ConfigError(f"data: {csv} has no rows with split {missing!r}; train_postprocessor needs both splits")
    rank0 = env_rank_is_zero()
    built: list[Any] = []

    def extractor() -> Any:  # built only if an embedding is computed (never by the processes launched for DDP)
        if not built:
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            built.append(build("extractor", cfg.extractor))
        return built[0]

    emb_train, hit_train = _cached_embeddings(cfg, "train", ext_train, extractor, device, rank0)
    emb_val, hit_val = _cached_embeddings(cfg, "validation", ext_val, extractor, device, rank0)
    built.clear()

    on_embeddings = postprocessor_reads(cfg.postprocessor) == "embeddings"
    if on_embeddings:  # the pairwise model takes the cached embeddings: no image is read from here on
        train_ds, val_ds = ext_train, ext_val
        train_items: Any = EmbeddingItems(emb_train, train_ds.get_labels())
    else:
        t_train = build("transform", cfg.transforms_train) if cfg.transforms_train else None
        t_val = build("transform", cfg.transforms_val) if cfg.transforms_val else None
        images_train, images_val = get_retrieval_images_datasets(
            root, t_train, t_val, dataframe_name=cfg.data.dataframe_name, cache_size=cfg.data.cache_size
        )
        assert images_train is not None
        assert images_val is not None
        train_ds, val_ds = images_train, images_val
        train_items = WithEmbeddings(train_ds, emb_train)
    sampler_factory = make_sampler_factory(cfg.sampler, cfg.data.batch_size_train, cfg.seed, train_ds)
    sampler_factory()  # built once now, so that bad sampler arguments fail before the run starts

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build("pairwise_model", cfg.pairwise_model)
    miner = build("pair_miner", cfg.pair_miner)
    scheduling = cfg.scheduling
    scheduler_factory = None
    if scheduling is not None:
        scheduler_spec = scheduling.scheduler

        def scheduler_factory(opt: torch.optim.Optimizer) -> Any:
            return build("scheduler", scheduler_spec, optimizer=opt)

    module = PairwiseModule(
        model,
        miner,
        optimizer=lambda params: build("optimizer", cfg.optimizer, params=params),
        scheduler=scheduler_factory,
        scheduler_interval=scheduling.interval if scheduling else "epoch",
        scheduler_frequency=scheduling.frequency if scheduling else 1,
        scheduler_monitor=scheduling.monitor if scheduling else None,
        freeze_n_epochs=cfg.trainer.freeze_n_epochs,
        input_key="embeddings" if on_embeddings else "input_tensors",
    )
    validation = RerankValidation(
        postprocessor=cfg.postprocessor,
        embeddings=emb_val,
        dataset=val_ds,
        metrics=cfg.metrics,
        valid_period=cfg.trainer.valid_period,
        verbose=verbose,
    )
    validation.check_monitor(cfg.checkpoint.monitor, "checkpoint.monitor")
    if cfg.scheduling is not None and cfg.scheduling.monitor:
        validation.check_monitor(cfg.scheduling.monitor, "scheduling.monitor")
    if resume_dir is not None:
        checkpoint_fits(RunFolder(resume_dir).last_checkpoint, module, "omlcore train-postprocessor")

    # -- the run: loggers start before anything is written into the run folder
    folder = run_folder_for(cfg.run, resume_dir)
    resolved = cfg.model_dump(mode="json")
    quiet = None if verbose else logging.getLogger("lightning.pytorch")
    level = quiet.level if quiet is not None else logging.NOTSET
    if quiet is not None:
        quiet.setLevel(logging.WARNING)
    try:
        with shared_run_dir(folder), quiet_lightning():
            loggers = open_loggers(cfg.logger, folder, cfg.run.tags, rank0=rank0)
            if rank0:
                folder.write_config(resolved)
            validation.folder = folder
            if rank0:
                validation.figure_sinks = [loggers.log_figure, figure_saver(folder)]
            best_cb, interrupt, saving = checkpoint_callbacks(
                folder, cfg.checkpoint, on_train_epoch_end=True, every_n_epochs=cfg.trainer.valid_period
            )
            progress = TrainProgress()
            all_callbacks: list[Any] = [
                ReproducibleProgress(progress, cfg.seed),
                validation,
                *callbacks,
                ProgressBar(),
                *saving,
            ]
            datamodule = PipelineDataModule(
                train=train_items,
                sampler_factory=sampler_factory,
                progress=progress,
                num_workers=cfg.data.num_workers,
                seed=cfg.seed,
            )
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            trainer = make_trainer(
                cfg.trainer,
                callbacks=all_callbacks,
                loggers=loggers.lightning_loggers(),
                root=folder.path,
                verbose=verbose,
                find_unused_parameters=cfg.trainer.find_unused_parameters,
                max_epochs=cfg.trainer.max_epochs,
                limit_val_batches=0,
            )
            if trainer.is_global_zero:
                loggers.log_params(flatten_config(resolved))
                loggers.log_artifact(folder.config_file, "config.yaml")
            interrupted = False
            with keep_sigint(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*no `validation_step`.*")  # validation: RerankValidation
                try:
                    ckpt_path = str(folder.last_checkpoint) if resume_dir is not None else None
                    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
                except SystemExit:  # how Lightning ends a run after a KeyboardInterrupt
                    if not (interrupt.requested or trainer.interrupted):
                        raise
                    interrupted = True
                except BaseException:
                    loggers.finish("failed")
                    raise
            interrupted = interrupted or trainer.interrupted
            history = folder.read_metrics() if trainer.is_global_zero else []
            if trainer.is_global_zero:
                if folder.metrics_file.exists():
                    loggers.log_artifact(folder.metrics_file, "metrics.json")
                loggers.finish("failed" if interrupted else "success")
    finally:
        if quiet is not None:
            quiet.setLevel(level)
    if interrupted and verbose and trainer.is_global_zero:
        print(
            f"\nInterrupted. Checkpoint: {folder.last_checkpoint}\n"
            f"Continue with: omlcore train-postprocessor --resume {folder.path}",
            flush=True,
        )
    reranked = [r for r in history if r.get("reranked")]
    last_metrics = {k: v for k, v in reranked[-1].items() if k in validation.baseline} if reranked else {}
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    last = folder.last_checkpoint if folder.last_checkpoint.is_file() else None
    return PostprocessorRunResult(
        run_dir=folder.path,
        metrics=last_metrics or dict(validation.last_metrics),
        baseline=dict(validation.baseline),
        best_checkpoint=best,
        last_checkpoint=last,
        cache_hits={"train": hit_train, "validation": hit_val},
        history=history,
        interrupted=interrupted,
    )
