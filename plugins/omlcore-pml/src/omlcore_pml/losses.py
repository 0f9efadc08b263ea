"""PML losses as omlcore losses (``omlcore.losses``).

Each PML loss class gets a generated subclass of :class:`PmlLoss` whose signature (``__signature__``)
lists, with config types and no ``**kwargs``:

- the loss's own parameters and those of the PML loss classes its ``**kwargs`` reach
  (``SubCenterArcFaceLoss`` gets ``num_classes`` and ``embedding_size`` from ``ArcFaceLoss``);
- ``distance``, ``reducer``, ``embedding_regularizer`` and ``embedding_reg_weight`` (every PML loss),
  plus ``weight_regularizer`` and ``weight_reg_weight`` for the losses with class weights
  (see :mod:`omlcore_pml.specs` for the names);
- ``miner`` (a nested omlcore :class:`~omlcore.protocols.Miner`) or ``pair_miner`` (a nested
  :class:`~omlcore.protocols.PairMiner`): when given, it is called on the batch and its triplets or
  pairs are passed to PML as ``indices_tuple``; any omlcore miner works, not only the ``pml_`` ones;
- ``collect_stats``: turn on PML's statistics, reported in ``last_logs``.

The instance is a ``torch.nn.Module``; the PML loss is its ``pml`` submodule, so trainable class
weights (ArcFace, CosFace, SoftTriple, ProxyAnchor, NormalizedSoftmax...) are among its parameters and
must be given to the optimizer with the model's. ``CrossBatchMemory`` is written by hand (it wraps
another ``pml_`` loss and keeps a memory of past batches).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from pytorch_metric_learning import losses as _pml  # type: ignore[import-untyped]
from pytorch_metric_learning.utils import common_functions as _c_f  # type: ignore[import-untyped]
from torch import Tensor

from omlcore.protocols import Loss, Miner, PairMiner
from omlcore_pml import catalog
from omlcore_pml.miners import PmlPairMiner, PmlTripletMiner, pairs_to_pml
from omlcore_pml.specs import (
    DistanceArg,
    ReducerArg,
    RegularizerArg,
    build_distance,
    build_reducer,
    build_regularizer,
)

__all__ = ["LOSS_CLASSES", "CrossBatchMemory", "PmlLoss", "PmlLossBase"]

_KW = inspect.Parameter.KEYWORD_ONLY
_STATS_LOCK = threading.Lock()


@contextmanager
def _stats_collected(on: bool) -> Iterator[None]:
    """Build PML objects with statistics on: PML reads a module-level flag when it builds the default
    reducer and distance of a loss, so the flag is set for the duration of the construction only."""
    with _STATS_LOCK:
        before = _c_f.COLLECT_STATS
        _c_f.COLLECT_STATS = on
        try:
            yield
        finally:
            _c_f.COLLECT_STATS = before


def _check_miners(miner: Any, pair_miner: Any) -> None:
    if miner is not None and pair_miner is not None:
        raise ValueError("give 'miner' or 'pair_miner', not both")


class PmlLossBase(torch.nn.Module):
    """Calls the PML loss (``self.pml``) as ``loss(features, labels)`` and fills ``last_logs``.

    ``last_logs`` holds, after each call: ``mined_triplets`` or ``mined_pos_pairs`` / ``mined_neg_pairs``
    when a miner is used, and, with ``collect_stats``, every statistic PML recorded on the loss, its
    reducer, distance and regularizers and on the miner (e.g. ``reducer.num_past_filter``,
    ``miner.num_triplets``), as floats. Without ``collect_stats`` and a miner it is empty: PML does not
    expose its per-batch figures otherwise.
    """

    pml: torch.nn.Module
    last_logs: dict[str, float]
    label_free: ClassVar[bool] = False
    """True for unsupervised PML losses (``ManifoldLoss``), which are called without the labels."""

    def __init__(self, miner: Miner | None = None, pair_miner: PairMiner | None = None) -> None:
        super().__init__()
        _check_miners(miner, pair_miner)
        self.miner = miner
        self.pair_miner = pair_miner
        self.last_logs = {}

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss of the batch: PML's value, on PML's ``indices_tuple`` when a miner is set."""
        logs: dict[str, float] = {}
        indices: tuple[Tensor, ...] | None = None
        if self.miner is not None:
            indices = tuple(self.miner.sample(features, labels))
            logs["mined_triplets"] = float(indices[0].numel())
        elif self.pair_miner is not None:
            indices = pairs_to_pml(*self.pair_miner.sample(features, labels))
            logs["mined_pos_pairs"] = float(indices[0].numel())
            logs["mined_neg_pairs"] = float(indices[2].numel())
        value: Tensor = self.pml(features, None if self.label_free else labels, indices)
        logs.update(self._recorded_stats())
        self.last_logs = logs
        return value

    def _recorded_stats(self) -> dict[str, float]:
        """PML's recorded statistics of every submodule, keyed by path (``pml`` segments dropped)."""
        out: dict[str, float] = {}
        for path, module in self.named_modules():
            for name in getattr(module, "_record_these_stats", ()):
                value = getattr(module, name, None)
                if isinstance(value, Tensor):
                    if value.numel() != 1:
                        continue
                    value = value.item()
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    key = ".".join([p for p in path.split(".") if p and p != "pml"] + [name])
                    out[key] = float(value)
        return out


class PmlLoss(PmlLossBase):
    """A PML loss built from validated config arguments (generated subclasses set ``pml_class``)."""

    pml_class: ClassVar[type]

    def __init__(
        self,
        *,
        miner: Miner | None = None,
        pair_miner: PairMiner | None = None,
        distance: Any = None,
        reducer: Any = None,
        embedding_regularizer: Any = None,
        weight_regularizer: Any = None,
        collect_stats: bool = False,
        **params: Any,
    ) -> None:
        super().__init__(miner, pair_miner)
        if self.label_free and (miner is not None or pair_miner is not None):
            raise ValueError(f"{self.pml_class.__name__} uses no labels, so it takes no miner")
        kwargs = dict(params)
        with _stats_collected(collect_stats):
            for key, value in (
                ("distance", build_distance(distance)),
                ("reducer", build_reducer(reducer)),
                ("embedding_regularizer", build_regularizer(embedding_regularizer)),
                ("weight_regularizer", build_regularizer(weight_regularizer)),
            ):
                if value is not None:
                    kwargs[key] = value
            try:
                self.pml = self.pml_class(**kwargs)
            except AssertionError as exc:  # PML checks its arguments with assert
                raise ValueError(f"{self.pml_class.__name__} rejected the arguments: {exc}") from exc

    def extra_repr(self) -> str:
        """Which PML class this wraps."""
        return f"pytorch_metric_learning.losses.{self.pml_class.__name__}"


def _has_class_weights(pml_class: type) -> bool:
    return issubclass(pml_class, _pml.WeightRegularizerMixin)


def _loss_signature(pml_class: type, label_free: bool) -> inspect.Signature:
    params = catalog.pml_parameters(pml_class)
    params += [
        inspect.Parameter("distance", _KW, default=None, annotation=DistanceArg),
        inspect.Parameter("reducer", _KW, default=None, annotation=ReducerArg),
        inspect.Parameter("embedding_regularizer", _KW, default=None, annotation=RegularizerArg),
        inspect.Parameter("embedding_reg_weight", _KW, default=1.0, annotation=float),
    ]
    if _has_class_weights(pml_class):
        params += [
            inspect.Parameter("weight_regularizer", _KW, default=None, annotation=RegularizerArg),
            inspect.Parameter("weight_reg_weight", _KW, default=1.0, annotation=float),
        ]
    if not label_free:
        params += [
            inspect.Parameter("miner", _KW, default=None, annotation=Miner | None),
            inspect.Parameter("pair_miner", _KW, default=None, annotation=PairMiner | None),
        ]
    params.append(inspect.Parameter("collect_stats", _KW, default=False, annotation=bool))
    return inspect.Signature(params)


def _wrap(pml_class_name: str) -> Any:
    pml_class = getattr(_pml, pml_class_name)
    label_free = pml_class_name in catalog.LABEL_FREE_LOSSES
    sig = _loss_signature(pml_class, label_free)
    notes = " It has trainable class weights: optimise its parameters too." if _has_class_weights(pml_class) else ""
    notes += " Unsupervised: the labels are not used." if label_free else ""
    doc = (
        f"``{catalog.config_name(pml_class_name)}``: PML's ``{pml_class_name}``.{notes} Parameters: "
        + ", ".join(f"``{p.name}``" for p in sig.parameters.values())
        + "."
    )
    return type(
        pml_class_name,
        (PmlLoss,),
        {
            "pml_class": pml_class,
            "label_free": label_free,
            "__signature__": sig,
            "__doc__": doc,
            "__module__": __name__,
            "__qualname__": pml_class_name,
        },
    )


class CrossBatchMemory(PmlLossBase):
    """``pml_cross_batch_memory``: PML's ``CrossBatchMemory`` (XBM) around another ``pml_`` loss.

    It keeps the last ``memory_size`` embeddings and labels and computes ``loss`` between the batch and
    the memory. ``loss`` is a nested ``pml_`` loss spec (without a miner of its own); ``miner`` or
    ``pair_miner`` is a nested ``pml_`` miner spec, which PML runs against the memory. Not deterministic
    across calls: the memory changes with every batch.
    """

    def __init__(
        self,
        *,
        loss: Loss,
        embedding_size: int,
        memory_size: int = 1024,
        miner: Miner | None = None,
        pair_miner: PairMiner | None = None,
        collect_stats: bool = False,
    ) -> None:
        super().__init__()
        _check_miners(miner, pair_miner)
        if not isinstance(loss, PmlLoss):
            raise ValueError(f"'loss' must be a pml_ loss, got {type(loss).__name__}")
        if loss.miner is not None or loss.pair_miner is not None:
            raise ValueError("give the miner to pml_cross_batch_memory, not to its inner loss")
        pml_miner = None
        if miner is not None:
            if not isinstance(miner, PmlTripletMiner):
                raise ValueError(f"'miner' must be a pml_ miner, got {type(miner).__name__}")
            pml_miner = miner.pml
        if pair_miner is not None:
            if not isinstance(pair_miner, PmlPairMiner):
                raise ValueError(f"'pair_miner' must be a pml_ pair miner, got {type(pair_miner).__name__}")
            pml_miner = pair_miner.pml
        with _stats_collected(collect_stats):
            try:
                self.pml = _pml.CrossBatchMemory(
                    loss.pml, embedding_size, memory_size=memory_size, miner=pml_miner, collect_stats=collect_stats
                )
            except AssertionError as exc:
                raise ValueError(f"CrossBatchMemory rejected the arguments: {exc}") from exc


AngularLoss = _wrap("AngularLoss")
ArcFaceLoss = _wrap("ArcFaceLoss")
CircleLoss = _wrap("CircleLoss")
ContrastiveLoss = _wrap("ContrastiveLoss")
CosFaceLoss = _wrap("CosFaceLoss")
DynamicSoftMarginLoss = _wrap("DynamicSoftMarginLoss")
FastAPLoss = _wrap("FastAPLoss")
GeneralizedLiftedStructureLoss = _wrap("GeneralizedLiftedStructureLoss")
HistogramLoss = _wrap("HistogramLoss")
InstanceLoss = _wrap("InstanceLoss")
IntraPairVarianceLoss = _wrap("IntraPairVarianceLoss")
LargeMarginSoftmaxLoss = _wrap("LargeMarginSoftmaxLoss")
LiftedStructureLoss = _wrap("LiftedStructureLoss")
ManifoldLoss = _wrap("ManifoldLoss")
MarginLoss = _wrap("MarginLoss")
MultiSimilarityLoss = _wrap("MultiSimilarityLoss")
NCALoss = _wrap("NCALoss")
NPairsLoss = _wrap("NPairsLoss")
NTXentLoss = _wrap("NTXentLoss")
NormalizedSoftmaxLoss = _wrap("NormalizedSoftmaxLoss")
P2SGradLoss = _wrap("P2SGradLoss")
PNPLoss = _wrap("PNPLoss")
ProxyAnchorLoss = _wrap("ProxyAnchorLoss")
ProxyNCALoss = _wrap("ProxyNCALoss")
RankedListLoss = _wrap("RankedListLoss")
SignalToNoiseRatioContrastiveLoss = _wrap("SignalToNoiseRatioContrastiveLoss")
SmoothAPLoss = _wrap("SmoothAPLoss")
SoftTripleLoss = _wrap("SoftTripleLoss")
SphereFaceLoss = _wrap("SphereFaceLoss")
SubCenterArcFaceLoss = _wrap("SubCenterArcFaceLoss")
SupConLoss = _wrap("SupConLoss")
ThresholdConsistentMarginLoss = _wrap("ThresholdConsistentMarginLoss")
TripletMarginLoss = _wrap("TripletMarginLoss")
TupletMarginLoss = _wrap("TupletMarginLoss")

LOSS_CLASSES: dict[str, type] = {
    name: obj
    for name, obj in list(globals().items())
    if isinstance(obj, type) and issubclass(obj, PmlLossBase) and obj not in (PmlLossBase, PmlLoss)
}
"""PML class name → the omlcore wrapper class, for every loss offered."""
