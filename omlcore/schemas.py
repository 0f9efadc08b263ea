"""Pydantic models of omlcore's configs: component specs and the train / validate / predict pipelines.

Every model forbids unknown keys. Every component slot is a :class:`ComponentSpec` (``{name, args}``)
tagged with its kind, so the second validation phase (:mod:`omlcore.config`) can check ``args``
against the named plugin. ``docs/config.md`` documents each key and its OML 2.1 counterpart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeInt, PositiveInt

from omlcore.errors import ConfigIssue

__all__ = [
    "PIPELINES",
    "CheckpointSection",
    "ComponentSpec",
    "DataSection",
    "HardwareSection",
    "MetricsSection",
    "PredictConfig",
    "PredictDataSection",
    "RunSection",
    "SchedulingSection",
    "TrainConfig",
    "TrainDataSection",
    "TrainerSection",
    "ValidateConfig",
    "batching_issues",
    "iter_slots",
    "slot_kind",
]

KIND_KEY = "x-omlcore-kind"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ComponentSpec(_Strict):
    """A component named by its entry-point name, with the keyword arguments of its constructor."""

    name: str = Field(min_length=1, description="The plugin's registered name (see `omlcore plugins list`).")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Constructor arguments; checked against the plugin's signature."
    )


def Slot(kind: str, default: Any = ..., description: str = "") -> Any:
    """A config field holding a :class:`ComponentSpec` of ``kind``."""
    return Field(default, description=description or f"The {kind}: {{name, args}}.", json_schema_extra={KIND_KEY: kind})


def slot_kind(model: type[BaseModel], field_name: str) -> str | None:
    """The component kind of a slot field, or ``None`` for ordinary fields."""
    extra = model.model_fields[field_name].json_schema_extra
    return extra.get(KIND_KEY) if isinstance(extra, dict) else None  # type: ignore[return-value]


def iter_slots(config: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, ComponentSpec]]:
    """``(dotted path, kind, spec)`` for every filled component slot, sections included."""
    for fname in type(config).model_fields:
        value = getattr(config, fname)
        path = f"{prefix}{fname}"
        kind = slot_kind(type(config), fname)
        if kind is not None and isinstance(value, ComponentSpec):
            yield path, kind, value
        elif kind is not None and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ComponentSpec):
                    yield f"{path}.{i}", kind, item
        elif isinstance(value, BaseModel):
            yield from iter_slots(value, prefix=f"{path}.")


def _precision(v: Any) -> Any:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


Precision = Annotated[
    Literal["64", "32", "16", "bf16", "16-mixed", "bf16-mixed", "64-true", "32-true", "16-true", "bf16-true"],
    BeforeValidator(_precision),
]


class HardwareSection(_Strict):
    """Where a pipeline runs (Lightning ``Trainer`` arguments)."""

    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, cuda, mps, tpu.")
    devices: PositiveInt | list[NonNegativeInt] | Literal["auto"] = Field(
        "auto", description="How many devices, or which device indices."
    )
    precision: Precision = Field("32", description="Lightning precision: 32, 16-mixed, bf16-mixed, ...")
    extra_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Other keyword arguments for lightning's Trainer (e.g. max_time, limit_train_batches).",
    )


class TrainerSection(HardwareSection):
    """Training schedule and hardware."""

    max_epochs: PositiveInt = Field(description="Number of training epochs.")
    valid_period: PositiveInt = Field(1, description="Validate every this many epochs.")
    find_unused_parameters: bool = Field(False, description="DDP: look for parameters without gradients.")
    freeze_n_epochs: NonNegativeInt = Field(
        0, description="Train only the loss's parameters (e.g. ArcFace head) for this many first epochs."
    )


class RunSection(_Strict):
    """Where a run writes its outputs and how it is tagged."""

    logs_root: Path = Field(Path("logs"), description="Folder that holds the run folders.")
    logs_folder: str | None = Field(
        None, description="Run folder name inside logs_root; default: a timestamp followed by postfix."
    )
    postfix: str = Field("", description="Appended to the default run folder name.")
    tags: list[str] = Field(default_factory=list, description="Tags for the experiment logger.")


class DataSection(_Strict):
    """The dataset: a folder with a dataframe in omlcore's CSV format."""

    dataset_root: Path = Field(description="Folder holding the dataframe; relative paths are resolved from it.")
    dataframe_name: str = Field("df.csv", description="CSV file name inside dataset_root.")
    batch_size_val: PositiveInt = Field(128, description="Batch size of validation and inference.")
    num_workers: NonNegativeInt = Field(0, description="DataLoader worker processes.")
    cache_size: NonNegativeInt = Field(0, description="How many decoded images to keep in memory.")
    show_dataset_warnings: bool = Field(True, description="Report suspicious rows of the dataframe.")


class TrainDataSection(DataSection):
    """The dataset for training: adds the batch size used when there is no batch sampler."""

    batch_size_train: PositiveInt | None = Field(
        None, description="Shuffled batches of this size when `sampler` is null."
    )


class MetricsSection(_Strict):
    """Which retrieval metrics validation computes (see docs/metrics.md for exact definitions)."""

    cmc_top_k: list[PositiveInt] = Field(
        default_factory=lambda: [1, 5],
        description="k values of cmc@k (1 is what checkpoint.monitor watches by default).",
    )
    precision_top_k: list[PositiveInt] = Field(default_factory=lambda: [5], description="k of precision@k.")
    map_top_k: list[PositiveInt] = Field(default_factory=lambda: [5], description="k values of map@k.")
    fmr_vals: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=list, description="False match rates at which to report fnmr."
    )
    pcf_variance: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.5], description="Explained-variance levels of the pcf metric."
    )
    categories_key: str | None = Field("category", description="Column giving per-category metrics, if present.")
    return_only_overall_category: bool = Field(False, description="Skip per-category metrics.")
    log_images: bool = Field(False, description="Log figures of the worst queries.")
    metrics_to_exclude_from_visualization: list[str] = Field(default_factory=list)
    visualize_only_overall_category: bool = Field(True)


class CheckpointSection(_Strict):
    """Which checkpoint to keep."""

    monitor: str = Field("OVERALL/cmc/1", description="Metric that picks the best checkpoint.")
    mode: Literal["max", "min"] = Field("max", description="Whether a larger or smaller monitor is better.")
    save_top_k: NonNegativeInt = Field(1, description="How many best checkpoints to keep.")
    save_last: bool = Field(True, description="Also keep the last epoch's checkpoint.")


class SchedulingSection(_Strict):
    """A learning-rate scheduler and how often it steps."""

    scheduler: ComponentSpec = Slot("scheduler")
    interval: Literal["step", "epoch"] = Field("step", description="Step the scheduler per batch or per epoch.")
    frequency: PositiveInt = Field(1, description="Step it every this many intervals.")
    monitor: str | None = Field(None, description="Metric for reduce_on_plateau.")


def batching_issues(sampler: ComponentSpec | None, data: TrainDataSection) -> list[ConfigIssue]:
    """A training config has exactly one way to make batches: a ``sampler`` or ``data.batch_size_train``."""
    if sampler is None and data.batch_size_train is None:
        return [ConfigIssue("data.batch_size_train", "is required when no sampler is set (sampler: null)")]
    if sampler is not None and data.batch_size_train is not None:
        why = f"is not used with a sampler ({sampler.name!r} decides the batches); remove it"
        return [ConfigIssue("data.batch_size_train", why)]
    return []


class _PipelineConfig(_Strict):
    seed: int = Field(42, description="Seeds python, numpy and torch (and data-loader workers).")

    def cross_field_issues(self) -> list[ConfigIssue]:
        """Problems that involve several keys at once (phase 1, no plugin imported)."""
        return []


class TrainConfig(_PipelineConfig):
    """``pipeline: train``: fit an extractor with a loss, validating every ``valid_period`` epochs."""

    pipeline: Literal["train"]
    run: RunSection = Field(default_factory=RunSection)
    trainer: TrainerSection
    data: TrainDataSection
    transforms_train: ComponentSpec | None = Slot("transform", None, "Training preprocessing and augmentation.")
    transforms_val: ComponentSpec | None = Slot("transform", None, "Validation preprocessing.")
    sampler: ComponentSpec | None = Slot("sampler", None, "Batch sampler; null: shuffled batches.")
    extractor: ComponentSpec = Slot("extractor")
    loss: ComponentSpec = Slot("loss")
    optimizer: ComponentSpec = Slot("optimizer")
    scheduling: SchedulingSection | None = None
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logger: ComponentSpec | list[ComponentSpec] | None = Slot(
        "logger", None, "Experiment logger, or a list of them; null: only the run folder."
    )

    def cross_field_issues(self) -> list[ConfigIssue]:
        issues = batching_issues(self.sampler, self.data)
        if self.scheduling and self.scheduling.monitor and self.scheduling.interval == "step":
            issues.append(
                ConfigIssue(
                    "scheduling.interval",
                    "a monitored scheduler needs interval: epoch (metrics exist only after validation)",
                )
            )
        return issues


class ValidateConfig(_PipelineConfig):
    """``pipeline: validate``: compute retrieval metrics of an extractor on a dataset."""

    pipeline: Literal["validate"]
    run: RunSection = Field(default_factory=RunSection)
    trainer: HardwareSection = Field(default_factory=HardwareSection)
    data: DataSection
    transforms_val: ComponentSpec | None = Slot("transform", None, "Validation preprocessing.")
    extractor: ComponentSpec = Slot("extractor")
    postprocessor: ComponentSpec | None = Slot("postprocessor", None, "Re-ranks the top of each result.")
    transforms_postprocessor: ComponentSpec | None = Slot(
        "transform", None, "Preprocessing of the items a postprocessor reads (pairwise_images); null: transforms_val."
    )
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    logger: ComponentSpec | list[ComponentSpec] | None = Slot(
        "logger", None, "Experiment logger, or a list of them; null: only the run folder."
    )


class PredictDataSection(_Strict):
    """Files to embed."""

    data_dir: Path = Field(description="Folder searched recursively for images.")
    extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png"], description="File extensions to take (any case)."
    )
    batch_size: PositiveInt = Field(128, description="Inference batch size.")
    num_workers: NonNegativeInt = Field(0, description="DataLoader worker processes.")


class PredictConfig(_PipelineConfig):
    """``pipeline: predict``: embed every image of a folder and save the embeddings."""

    pipeline: Literal["predict"]
    trainer: HardwareSection = Field(default_factory=HardwareSection)
    data: PredictDataSection
    save_dir: Path = Field(description="Where predictions are written.")
    transforms_predict: ComponentSpec | None = Slot("transform", None, "Inference preprocessing.")
    extractor: ComponentSpec = Slot("extractor")


PIPELINES: dict[str, type[_PipelineConfig]] = {
    "train": TrainConfig,
    "validate": ValidateConfig,
    "predict": PredictConfig,
}
