"""PML miners as omlcore miners (``omlcore.miners``) and pair miners (``omlcore.pair_miners``).

Each PML miner class gets a generated subclass of :class:`PmlTripletMiner` or :class:`PmlPairMiner`
whose signature (``__signature__``) lists the miner's own parameters with config types, plus
``distance`` (see :mod:`omlcore_pml.specs`) and ``collect_stats``; there is no ``**kwargs``, so omlcore
rejects unknown or mistyped arguments. The PML miner itself is the ``pml`` submodule.

- Triplet miners return PML's ``(a, p, n)`` as they are: omlcore's :class:`~omlcore.protocols.Miner`.
- Pair miners return PML's ``(a1, p, a2, n)`` as omlcore's :class:`~omlcore.protocols.PairMiner`
  ``(ids1, ids2, is_negative)``: the positive pairs ``(a1, p)`` first, then the negative pairs ``(a2, n)``.
  :func:`pairs_to_pml` turns that back into PML's form (used by the loss wrappers).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from pytorch_metric_learning import miners as _pml  # type: ignore[import-untyped]
from torch import Tensor

from omlcore_pml import catalog
from omlcore_pml.specs import DistanceArg, build_distance

__all__ = [
    "AngularMiner",
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "HDCMiner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "PmlMinerBase",
    "PmlPairMiner",
    "PmlTripletMiner",
    "TripletMarginMiner",
    "UniformHistogramMiner",
    "pairs_to_pml",
]

_COMMON = [
    inspect.Parameter("distance", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DistanceArg),
    inspect.Parameter("collect_stats", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool),
]


class PmlMinerBase(torch.nn.Module):
    """Holds a PML miner (``self.pml``) built from validated config arguments.

    ``distance`` is a distance spec (name or ``{name, args}``); ``collect_stats`` turns on PML's
    statistics (e.g. ``pos_pair_dist``), which a wrapping loss reports in its ``last_logs``.
    """

    pml_class: ClassVar[type]

    def __init__(self, *, distance: Any = None, collect_stats: bool = False, **params: Any) -> None:
        super().__init__()
        kwargs = dict(params)
        built = build_distance(distance)
        if built is not None:
            kwargs["distance"] = built
        try:
            self.pml = self.pml_class(collect_stats=collect_stats, **kwargs)
        except AssertionError as exc:  # PML checks its arguments with assert
            raise ValueError(f"{self.pml_class.__name__} rejected the arguments: {exc}") from exc

    def extra_repr(self) -> str:
        """Which PML class this wraps."""
        return f"pytorch_metric_learning.miners.{self.pml_class.__name__}"


class PmlTripletMiner(PmlMinerBase):
    """A PML miner that yields triplets, as an omlcore :class:`~omlcore.protocols.Miner`."""

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(anchors, positives, negatives)``: long row indices of the mined triplets."""
        a, p, n = self.pml(features, labels)
        return a.long(), p.long(), n.long()

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Same as :meth:`sample`."""
        return self.sample(features, labels)


class PmlPairMiner(PmlMinerBase):
    """A PML miner that yields pairs, as an omlcore :class:`~omlcore.protocols.PairMiner`."""

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(ids1, ids2, is_negative)``: positive pairs first, then negative pairs."""
        a1, p, a2, n = self.pml(features, labels)
        ids1 = torch.cat([a1, a2]).long()
        ids2 = torch.cat([p, n]).long()
        is_negative = torch.cat(
            [
                torch.zeros(a1.numel(), dtype=torch.bool, device=a1.device),
                torch.ones(a2.numel(), dtype=torch.bool, device=a2.device),
            ]
        )
        return ids1, ids2, is_negative

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Same as :meth:`sample`."""
        return self.sample(features, labels)


def pairs_to_pml(ids1: Tensor, ids2: Tensor, is_negative: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """omlcore's ``(ids1, ids2, is_negative)`` as PML's ``(a1, p, a2, n)``."""
    positive = ~is_negative.bool()
    return ids1[positive], ids2[positive], ids1[~positive], ids2[~positive]


def _wrap(pml_class_name: str, base: type[PmlMinerBase]) -> Any:
    pml_class = getattr(_pml, pml_class_name)
    params = [*catalog.pml_parameters(pml_class, skip=frozenset({"distance", "collect_stats"})), *_COMMON]
    doc = (
        f"``{catalog.config_name(pml_class_name)}``: PML's ``{pml_class_name}`` "
        f"({'pairs' if base is PmlPairMiner else 'triplets'}). Parameters: "
        + ", ".join(f"``{p.name}``" for p in params)
        + "."
    )
    return type(
        pml_class_name,
        (base,),
        {
            "pml_class": pml_class,
            "__signature__": inspect.Signature(params),
            "__doc__": doc,
            "__module__": __name__,
            "__qualname__": pml_class_name,
        },
    )


AngularMiner = _wrap("AngularMiner", PmlTripletMiner)
BatchHardMiner = _wrap("BatchHardMiner", PmlTripletMiner)
DistanceWeightedMiner = _wrap("DistanceWeightedMiner", PmlTripletMiner)
TripletMarginMiner = _wrap("TripletMarginMiner", PmlTripletMiner)

BatchEasyHardMiner = _wrap("BatchEasyHardMiner", PmlPairMiner)
HDCMiner = _wrap("HDCMiner", PmlPairMiner)
MultiSimilarityMiner = _wrap("MultiSimilarityMiner", PmlPairMiner)
PairMarginMiner = _wrap("PairMarginMiner", PmlPairMiner)
UniformHistogramMiner = _wrap("UniformHistogramMiner", PmlPairMiner)
