"""The config model of ``pipeline: train_postprocessor`` (no torch import: ``omlcore check`` reads it).

Registered in the ``omlcore.pipelines`` entry-point group, so ``omlcore check`` validates such configs
(every component slot against its plugin, with config paths) and ``omlcore schema export`` writes
``train_postprocessor.schema.json``. The run itself is :func:`omlcore_reranking.pipeline.train_postprocessor`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from omlcore.errors import ConfigIssue
from omlcore.schemas import (
    CheckpointSection,
    ComponentSpec,
    MetricsSection,
    RunSection,
    SchedulingSection,
    Slot,
    TrainDataSection,
    TrainerSection,
    batching_issues,
)

__all__ = ["PIPELINE", "EmbeddingsCacheSection", "TrainPostprocessorConfig"]

PIPELINE = "train_postprocessor"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class EmbeddingsCacheSection(_Strict):
    """Where the frozen extractor's embeddings are cached, and how they are computed."""

    folder: Path = Field(Path("embeddings_cache"), description="Folder of train.pt and validation.pt.")
    refresh: bool = Field(False, description="Recompute (and overwrite) the cache instead of reading it.")
    batch_size: PositiveInt = Field(128, description="Batch size of the extractor's inference.")


class TrainPostprocessorConfig(_Strict):
    """``pipeline: train_postprocessor``: train a pairwise model that re-ranks a frozen extractor's top-k."""

    pipeline: Literal["train_postprocessor"]
    seed: int = Field(42, description="Seeds python, numpy and torch (and data-loader workers).")
    run: RunSection = Field(default_factory=RunSection)
    trainer: TrainerSection
    data: TrainDataSection
    embeddings_cache: EmbeddingsCacheSection = Field(default_factory=EmbeddingsCacheSection)
    extractor: ComponentSpec = Slot("extractor", description="The frozen extractor whose top-k is re-ranked.")
    transforms_extraction: ComponentSpec | None = Slot("transform", None, "Preprocessing for the extractor.")
    transforms_train: ComponentSpec | None = Slot("transform", None, "Pairwise model's training images.")
    transforms_val: ComponentSpec | None = Slot("transform", None, "Pairwise model's validation images.")
    sampler: ComponentSpec | None = Slot("sampler", None, "Batch sampler; null: shuffled batch_size_train.")
    pair_miner: ComponentSpec = Slot(
        "pair_miner",
        ComponentSpec(name="pairs", args={"hard_mining": True}),
        "Picks the training pairs by the cached embeddings.",
    )
    pairwise_model: ComponentSpec = Slot("pairwise_model", description="The model trained (e.g. concat_siamese).")
    optimizer: ComponentSpec = Slot("optimizer")
    scheduling: SchedulingSection | None = None
    postprocessor: ComponentSpec = Field(
        description="The re-ranker validated, without its pairwise_model (the model being trained is passed)."
    )
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    logger: ComponentSpec | list[ComponentSpec] | None = Slot(
        "logger", None, "Experiment logger, or a list of them (as in omlcore train); null: only the run folder."
    )

    def cross_field_issues(self) -> list[ConfigIssue]:
        """Problems that involve several keys (phase 1, no plugin imported)."""
        return batching_issues(self.sampler, self.data)
