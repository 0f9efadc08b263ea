"""What this plugin exposes from pytorch-metric-learning, under which names, and with which typed parameters.

- :func:`config_name` turns a PML class name into its omlcore name: ``pml_`` + the snake_case class
  name; losses drop the ``Loss`` suffix (``TripletMarginLoss`` → ``pml_triplet_margin``), miners keep
  ``_miner`` (``TripletMarginMiner`` → ``pml_triplet_margin_miner``); a few names are spelled as in
  their papers (:data:`SPELLING`).
- :data:`EXCLUDED_LOSSES` / :data:`EXCLUDED_MINERS` list the PML classes not offered, with the reason.
- :func:`pml_parameters` builds the typed keyword-only parameters of a PML class from its own
  constructor and those of the PML classes its ``**kwargs`` reach. PML annotates almost nothing, so the
  types come from the defaults (``bool``, numbers as ``float``, strings) and from :data:`PARAM_TYPES`
  for integers, required parameters and ``None`` defaults; a parameter whose type cannot be settled
  raises at import time, so a PML upgrade that adds one is noticed by the tests.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Literal

__all__ = [
    "EXCLUDED_LOSSES",
    "EXCLUDED_MINERS",
    "LABEL_FREE_LOSSES",
    "PAIR_MINERS",
    "PARAM_TYPES",
    "SPELLING",
    "TRIPLET_MINERS",
    "config_name",
    "pml_parameters",
]

SPELLING: dict[str, str] = {
    "ArcFaceLoss": "arcface",
    "CosFaceLoss": "cosface",
    "SphereFaceLoss": "sphereface",
    "SubCenterArcFaceLoss": "sub_center_arcface",
    "P2SGradLoss": "p2sgrad",
    "SupConLoss": "supcon",
    "VICRegLoss": "vicreg",
    "HDCMiner": "hdc_miner",
}
"""PML class name → name part where plain snake_case would read badly (``arc_face``, ``p2_s_grad``)."""

EXCLUDED_LOSSES: dict[str, str] = {
    "BaseMetricLossFunction": "abstract base class",
    "BaseLossWrapper": "abstract base class of wrappers",
    "GenericPairLoss": "abstract base class of pair losses",
    "EmbeddingRegularizerMixin": "mixin, not a loss",
    "WeightRegularizerMixin": "mixin, not a loss",
    "MultipleLosses": "a weighted sum of losses with per-loss miners; compose omlcore losses instead",
    "SelfSupervisedLoss": "called as loss(embeddings, ref_emb) without labels, which omlcore's Loss is not",
    "VICRegLoss": "called as loss(embeddings, ref_emb) without labels, which omlcore's Loss is not",
}
"""PML loss classes (from ``pytorch_metric_learning.losses``) not offered, and why."""

EXCLUDED_MINERS: dict[str, str] = {
    "BaseMiner": "abstract base class",
    "EmbeddingsAlreadyPackagedAsTriplets": (
        "assumes the batch is laid out as (anchor, positive, negative) rows and ignores labels; "
        "omlcore's samplers do not produce such batches"
    ),
}
"""PML miner classes (from ``pytorch_metric_learning.miners``) not offered, and why."""

LABEL_FREE_LOSSES: frozenset[str] = frozenset({"ManifoldLoss"})
"""PML losses that refuse labels (unsupervised): called with ``labels=None``, and they take no miner."""

TRIPLET_MINERS: tuple[str, ...] = ("AngularMiner", "BatchHardMiner", "DistanceWeightedMiner", "TripletMarginMiner")
"""PML miners that return ``(anchors, positives, negatives)``: the ``omlcore.miners`` group."""

PAIR_MINERS: tuple[str, ...] = (
    "BatchEasyHardMiner",
    "HDCMiner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "UniformHistogramMiner",
)
"""PML miners that return ``(a1, p, a2, n)`` pairs: the ``omlcore.pair_miners`` group."""

_STRATEGY = Literal["easy", "semihard", "hard", "all"]

PARAM_TYPES: dict[str | tuple[str, str], Any] = {
    # integers (their PML defaults are ints, but so are those of float parameters such as `alpha`)
    "num_classes": int,
    "embedding_size": int,
    "descriptors_dim": int,
    "num_bins": int,
    "K": int,
    "l": int,
    "centers_per_class": int,
    "sub_centers": int,
    "memory_size": int,
    "pos_per_bin": int,
    "neg_per_bin": int,
    # LargeMarginSoftmax and SphereFace use an integer multiplicative angular margin
    ("LargeMarginSoftmaxLoss", "margin"): int,
    ("SphereFaceLoss", "margin"): int,
    # required or None by default
    ("RankedListLoss", "margin"): float,
    ("RankedListLoss", "Tn"): float,
    ("RankedListLoss", "alpha"): float | None,
    ("MarginLoss", "num_classes"): int | None,
    "n_bins": int | None,
    "delta": float | None,
    "allowed_pos_range": tuple[float, float] | None,
    "allowed_neg_range": tuple[float, float] | None,
    # choices
    "triplets_per_anchor": Literal["all"] | int,
    "type_of_triplets": Literal["all", "hard", "semihard", "easy"],
    "pos_strategy": _STRATEGY,
    "neg_strategy": _STRATEGY,
    "variant": Literal["O", "Ds", "Dq", "Iu", "Ib"],
}
"""Parameter types that the defaults do not tell: by parameter name, or by (PML class name, parameter)."""

_BASES = frozenset(
    {
        "BaseMetricLossFunction",
        "BaseLossWrapper",
        "GenericPairLoss",
        "EmbeddingRegularizerMixin",
        "WeightRegularizerMixin",
        "WeightMixin",
        "BaseMiner",
        "ModuleWithRecords",
        "ModuleWithRecordsAndReducer",
        "ModuleWithRecordsAndDistance",
        "ModuleWithRecordsReducerAndDistance",
    }
)
_FIXES_PARENT = frozenset({"BatchHardMiner"})
"""Classes that pass their parent's own parameters themselves (so those cannot come from a config)."""


def config_name(pml_class_name: str) -> str:
    """The omlcore name of a PML loss or miner class: ``TripletMarginLoss`` → ``pml_triplet_margin``."""
    if pml_class_name in SPELLING:
        return "pml_" + SPELLING[pml_class_name]
    stem = pml_class_name.removesuffix("Loss")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()
    return "pml_" + snake


def _param_type(owner: str, param: inspect.Parameter) -> Any:
    for key in ((owner, param.name), param.name):
        if key in PARAM_TYPES:
            return PARAM_TYPES[key]
    default = param.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    if isinstance(default, str):
        return str
    raise TypeError(
        f"no config type known for {owner}.{param.name} (default {default!r}); add it to PARAM_TYPES in {__name__}"
    )


def pml_parameters(cls: type, skip: frozenset[str] = frozenset()) -> list[inspect.Parameter]:
    """Typed keyword-only parameters for ``cls``'s explicit constructor arguments and those of the PML
    classes above it that its ``**kwargs`` reach (base classes and mixins left out; the wrappers add
    ``distance``, ``reducer`` and the regularizers themselves). ``skip`` names parameters the wrapper
    handles itself."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass.__name__ in _BASES or not klass.__module__.startswith("pytorch_metric_learning."):
            continue
        if "__init__" not in vars(klass):
            continue
        for param in inspect.signature(vars(klass)["__init__"]).parameters.values():
            if param.name in ("self", "mat_based_loss") or param.name in found or param.name in skip:
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            found[param.name] = inspect.Parameter(
                param.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=param.default,
                annotation=_param_type(
                    cls.__name__ if (cls.__name__, param.name) in PARAM_TYPES else klass.__name__, param
                ),
            )
        if klass.__name__ in _FIXES_PARENT:
            break
    return list(found.values())
