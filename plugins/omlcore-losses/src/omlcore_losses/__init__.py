"""Metric-learning losses for omlcore, registered in the ``omlcore.losses`` entry-point group.

Every loss is a ``torch.nn.Module`` called as ``loss(features, labels)`` that returns a scalar and fills
``last_logs``. See the package README and ``docs/losses.md`` for formulas and arguments.
"""

from __future__ import annotations

from ._base import (
    LossInputError,
    NoValidPairsError,
    NoValidTripletsError,
    NoValidTuplesError,
)
from .classification import ArcFaceLoss, ArcFaceLossWithMLP, CosFaceLoss, ProxyAnchorLoss
from .distributed import DistributedLoss, gather_with_grad
from .pairs import ContrastiveLoss, MultiSimilarityLoss, SupConLoss, SurrogatePrecisionLoss
from .triplet import TripletLoss, TripletLossPlain, TripletLossWithMiner

__version__ = "0.1.0"

__all__ = [
    "ArcFaceLoss",
    "ArcFaceLossWithMLP",
    "ContrastiveLoss",
    "CosFaceLoss",
    "DistributedLoss",
    "LossInputError",
    "MultiSimilarityLoss",
    "NoValidPairsError",
    "NoValidTripletsError",
    "NoValidTuplesError",
    "ProxyAnchorLoss",
    "SupConLoss",
    "SurrogatePrecisionLoss",
    "TripletLoss",
    "TripletLossPlain",
    "TripletLossWithMiner",
    "__version__",
    "gather_with_grad",
]
