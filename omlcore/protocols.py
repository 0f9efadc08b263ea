"""The contracts between omlcore and its plugins.

Each protocol describes what a component of one kind must offer. They are structural
(:class:`typing.Protocol`): a plugin never inherits from omlcore, it only has to provide the members.
``isinstance(obj, Loss)`` checks that the members exist; the conformance suites in
:mod:`omlcore.testing` check the behaviour (shapes, dtypes, determinism, gradients).

Notation in the docstrings: ``B`` batch size, ``D`` embedding size, ``Q`` queries, ``G`` gallery items,
``K`` neighbours kept per query. "float" means a floating tensor of the input's dtype (float32 unless
mixed precision is on), "long" means ``torch.int64``. torch is imported only for type checking, so
importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor

__all__ = [
    "BatchSampler",
    "ExperimentLogger",
    "Extractor",
    "KnnBackend",
    "LRScheduler",
    "Loss",
    "Miner",
    "Optimizer",
    "PairMiner",
    "PairwiseModel",
    "RetrievalMetric",
    "RetrievalPostprocessor",
    "Transform",
    "TransformFactory",
]


@runtime_checkable
class Extractor(Protocol):
    """A model that maps a batch of inputs to embeddings (usually a ``torch.nn.Module``).

    - ``feat_dim``: the size ``D`` of the embeddings it produces.
    - ``extract(x)``: ``x`` is a batch (images: float ``(B, C, H, W)``); returns float ``(B, D)``, one row
      per input, in input order, on the input's device. It must not normalise unless documented so, and
      must give the same output for the same input in ``eval()`` mode.
    """

    feat_dim: int

    def extract(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, D)`` for the batch ``x``."""
        ...


@runtime_checkable
class BatchSampler(Protocol):
    """Yields the dataset indices of each training batch (a ``torch.utils.data`` batch sampler).

    - ``__iter__`` yields lists of ``int`` indices into the dataset it was built for; every index is
      valid (``0 <= i < len(dataset)``).
    - ``__len__`` is the exact number of batches one pass of ``__iter__`` yields.
    - A sampler built with a seed yields the same batches for the same seed and epoch.
    Metric-learning samplers (P-by-K "balance" samplers) put several items of each label in a batch so
    that every item has a positive.
    """

    def __iter__(self) -> Iterator[list[int]]:
        """The batches, as lists of dataset indices."""
        ...

    def __len__(self) -> int:
        """How many batches one iteration yields."""
        ...


@runtime_checkable
class Miner(Protocol):
    """Chooses training triplets from a batch.

    ``sample(features, labels)``: ``features`` float ``(B, D)``, ``labels`` long ``(B,)``. Returns three
    long tensors ``(anchors, positives, negatives)`` of equal length ``T``, each holding row indices into
    the batch, with ``labels[anchors] == labels[positives]``, ``anchors != positives`` and
    ``labels[anchors] != labels[negatives]``. ``T`` may be 0 when the batch has no valid triplet.
    """

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Indices of anchors, positives and negatives."""
        ...


@runtime_checkable
class PairMiner(Protocol):
    """Chooses pairs from a batch, e.g. to train a pairwise re-ranker.

    ``sample(features, labels)``: ``features`` float ``(B, D)``, ``labels`` long ``(B,)``. Returns three
    tensors of equal length ``P``: long ``ids1`` and ``ids2`` (row indices into the batch, ``ids1 != ids2``)
    and bool ``is_negative`` (``labels[ids1] != labels[ids2]``).
    """

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Indices of the pairs and whether each pair is negative."""
        ...


@runtime_checkable
class Loss(Protocol):
    """A training criterion over a batch of embeddings (usually a ``torch.nn.Module``).

    - ``loss(features, labels)``: ``features`` float ``(B, D)``, ``labels`` long ``(B,)``; returns a float
      scalar tensor (shape ``()``) that is differentiable with respect to ``features`` (and to the
      loss's own parameters, if it has any, e.g. ArcFace's class centres).
    - ``last_logs``: after each call, a mapping of extra figures about that batch (for example the
      fraction of active triplets), plain ``str -> float``; pipelines log it. Empty if there is nothing.
    """

    last_logs: Mapping[str, float]

    def __call__(self, features: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss for the batch."""
        ...


@runtime_checkable
class RetrievalMetric(Protocol):
    """Accumulates validation outputs batch by batch and computes retrieval metrics at the end.

    - ``update(batch)``: ``batch`` maps keys to per-item values of one validation batch, at least
      ``"embeddings"`` float ``(B, D)``, ``"labels"`` long ``(B,)``, ``"is_query"`` and ``"is_gallery"``
      bool ``(B,)``; optional ``"categories"``, ``"sequence"`` and ``"idx"`` (dataset index, used to
      restore order and drop duplicates across processes).
    - ``compute()``: a flat mapping from metric names such as ``"OVERALL/cmc/1"`` to floats. The result
      does not depend on batch order or batch size.
    - ``reset()``: forget everything accumulated, ready for the next epoch.
    """

    def update(self, batch: Mapping[str, Any]) -> None:
        """Take one batch of outputs."""
        ...

    def compute(self) -> dict[str, float]:
        """Metric name to value, over everything accumulated since the last reset."""
        ...

    def reset(self) -> None:
        """Drop the accumulated state."""
        ...


@runtime_checkable
class ExperimentLogger(Protocol):
    """An experiment-tracking backend (TensorBoard, MLflow, W&B, Neptune, ClearML...).

    - ``log_params(params)``: the run's flattened config, logged once.
    - ``log_metrics(metrics, step)``: scalar figures at a step (global training step or epoch).
    - ``log_figure(figure, title, step)``: a matplotlib figure.
    - ``log_artifact(path, name)``: a file the run produced (config, checkpoint, CSV).
    - ``lightning_logger()``: the ``lightning.pytorch.loggers.Logger`` to hand to the ``Trainer``.
    - ``finish(status)``: flush and close; ``status`` is ``"success"`` or ``"failed"``.
    The backend's SDK is imported inside the logger, not at module top level.
    """

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the run's parameters."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record scalar metrics at ``step``."""
        ...

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        """Record a matplotlib figure."""
        ...

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        """Upload or copy a file produced by the run."""
        ...

    def lightning_logger(self) -> Any:
        """The Lightning logger object that writes to the same run."""
        ...

    def finish(self, status: str = "success") -> None:
        """Flush and close the run."""
        ...


@runtime_checkable
class Transform(Protocol):
    """A preprocessing callable: one raw sample in (an image array or PIL image), a tensor out.

    For images the output is float ``(C, H, W)``; the same transform applied twice to the same input
    in evaluation gives the same output (augmentations only in training transforms).
    """

    def __call__(self, sample: Any) -> Any:
        """The transformed sample."""
        ...


@runtime_checkable
class TransformFactory(Protocol):
    """What a ``omlcore.transforms`` entry point names: called with the config's ``args``, returns a
    :class:`Transform`. Factories keep heavy imports (albumentations, torchvision) inside the call."""

    def __call__(self, **kwargs: Any) -> Transform:
        """A new transform configured by ``kwargs``."""
        ...


@runtime_checkable
class PairwiseModel(Protocol):
    """A model that scores pairs of inputs (re-ranking, e.g. OML's STIR ``concat_siamese``).

    - ``forward(x1, x2)``: ``x1``, ``x2`` are batches of the same shape ``(B, ...)``; returns float
      ``(B,)`` raw scores (logits) of "the two are *different*", for training with BCE.
    - ``predict(x1, x2)``: float ``(B,)`` distance-like scores (larger = less similar), e.g. the sigmoid
      of the logit, in inference mode; row ``i`` depends only on ``x1[i]`` and ``x2[i]``.
    """

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Logits ``(B,)`` of "x1[i] and x2[i] are different"."""
        ...

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Distance-like scores ``(B,)`` for inference."""
        ...


@runtime_checkable
class RetrievalPostprocessor(Protocol):
    """Post-processes the top of each query's retrieval result: re-ranking (pairwise models, STIR) or
    thresholding. It works on the streaming top-k of the metrics, never on a ``Q x G`` matrix.

    - ``top_n``: how many leading columns of a row it reads and may reorder (a positive ``int``); ``None``
      when it reads every column (thresholding). A caller searches at least ``min(top_n, G)`` neighbours.
    - ``reads``: what the ``dataset`` argument of ``process`` must be: ``"embeddings"`` (the float
      ``(N, D)`` embeddings the search used), ``"items"`` (a map-style dataset, e.g. images through
      transforms) or ``"nothing"`` (unused).
    - ``process(distances, retrieved, query_ids, dataset)``: ``distances`` float ``(Q, K)`` sorted
      ascending per row; ``retrieved`` long ``(Q, K)``: the retrieved items as row indices of ``dataset``
      (the index space of ``query_ids``), ``-1`` with distance ``inf`` where a row has fewer than ``K``
      results (padding, always at the row's end); ``query_ids`` long ``(Q,)``: the queries' rows.
      Returns the new ``(distances, retrieved)``: same shapes and dtypes, each row sorted ascending,
      padding at the end. Items are never added; an item may be dropped (it becomes padding). Columns
      after ``top_n`` keep their items and order (their distances may all move by one amount per row, so
      that the re-ranked items stay ahead). Rows are independent: a caller may split the queries into
      chunks. Inputs are not modified; the same input gives the same output.
    """

    top_n: int | None
    reads: Literal["embeddings", "items", "nothing"]

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        """The processed distances and retrieved rows."""
        ...


@runtime_checkable
class KnnBackend(Protocol):
    """Exact or approximate nearest-neighbour search used by metrics and inference.

    ``search(queries, gallery, k)``: float ``(Q, D)`` and ``(G, D)``; returns ``(distances, indices)``,
    float and long ``(Q, min(k, G))``, each row sorted by distance ascending with ties broken by the
    smaller gallery index, so results do not depend on chunk sizes. ``metric`` names the distance
    (``"l2"``, ``"cosine"`` or ``"dot"``).
    """

    metric: str

    def search(self, queries: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The ``k`` nearest gallery rows of every query."""
        ...


@runtime_checkable
class Optimizer(Protocol):
    """A ``torch.optim.Optimizer``: built with the model's ``params`` at run time."""

    param_groups: list[dict[str, Any]]

    def step(self, closure: Callable[[], Any] | None = ...) -> Any:
        """One optimisation step."""
        ...

    def zero_grad(self, set_to_none: bool = ...) -> None:
        """Reset the gradients."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Serialisable state."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state."""
        ...


@runtime_checkable
class LRScheduler(Protocol):
    """A learning-rate scheduler: built with the ``optimizer`` at run time."""

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Advance the schedule (once per step or epoch, per the pipeline's ``interval``)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Serialisable state."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state."""
        ...
