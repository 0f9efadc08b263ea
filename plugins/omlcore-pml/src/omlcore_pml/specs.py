"""Config-level choices of PML's helper objects: distances, reducers and regularizers.

pytorch-metric-learning (PML) configures a loss or miner with *objects* (``distance=CosineSimilarity()``,
``reducer=AvgNonZeroReducer()``). A config cannot hold objects, so the wrappers in this package take
them by name, optionally with arguments, in omlcore's usual ``{name, args}`` form::

    distance: cosine                                   # a bare name
    distance: {name: lp, args: {p: 1, normalize_embeddings: false}}
    reducer: {name: threshold, args: {low: 0.1}}

These are pydantic models, so omlcore validates them (unknown names and arguments, wrong types) with
the rest of the config. ``build_*`` turn a validated spec into the PML object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

__all__ = [
    "DISTANCES",
    "REDUCERS",
    "DistanceArg",
    "DistanceArgs",
    "DistanceSpec",
    "ReducerArg",
    "ReducerArgs",
    "ReducerSpec",
    "RegularizerArg",
    "RegularizerArgs",
    "RegularizerSpec",
    "build_distance",
    "build_reducer",
    "build_regularizer",
]

DistanceName = Literal["lp", "cosine", "dot", "snr"]
ReducerName = Literal["mean", "sum", "avg_non_zero", "divisor", "threshold", "class_weighted"]
RegularizerName = Literal["lp", "zero_mean", "center_invariant", "regular_face"]

DISTANCES: dict[str, str] = {
    "lp": "LpDistance",
    "cosine": "CosineSimilarity",
    "dot": "DotProductSimilarity",
    "snr": "SNRDistance",
}
"""Config name → ``pytorch_metric_learning.distances`` class name."""

REDUCERS: dict[str, str] = {
    "mean": "MeanReducer",
    "sum": "SumReducer",
    "avg_non_zero": "AvgNonZeroReducer",
    "divisor": "DivisorReducer",
    "threshold": "ThresholdReducer",
    "class_weighted": "ClassWeightedReducer",
}
"""Config name → ``pytorch_metric_learning.reducers`` class name. ``do_nothing`` (a non-scalar loss),
``per_anchor`` and ``multiple`` (which nest reducers) are not offered."""

REGULARIZERS: dict[str, str] = {
    "lp": "LpRegularizer",
    "zero_mean": "ZeroMeanRegularizer",
    "center_invariant": "CenterInvariantRegularizer",
    "regular_face": "RegularFaceRegularizer",
}
"""Config name → ``pytorch_metric_learning.regularizers`` class name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name_only(value: Any) -> Any:
    """Let a bare string stand for ``{name: <string>}``."""
    return {"name": value} if isinstance(value, str) else value


class DistanceArgs(_Strict):
    """Arguments every PML distance takes (``is_inverted`` is fixed by the distance itself)."""

    normalize_embeddings: bool = True
    p: float = 2
    power: float = 1


class DistanceSpec(_Strict):
    """A PML distance: ``lp`` (Lp distance), ``cosine`` (cosine similarity), ``dot`` (dot product
    similarity) or ``snr`` (signal-to-noise ratio distance)."""

    name: DistanceName
    args: DistanceArgs = DistanceArgs()


class ReducerArgs(_Strict):
    """Arguments of the reducers that take any: ``threshold`` (``low`` and/or ``high``) and
    ``class_weighted`` (``weights``, one per class)."""

    low: float | None = None
    high: float | None = None
    weights: list[float] | None = None


class ReducerSpec(_Strict):
    """A PML reducer, which turns per-element losses into the scalar loss."""

    name: ReducerName
    args: ReducerArgs = ReducerArgs()

    @model_validator(mode="after")
    def _args_fit_name(self) -> ReducerSpec:
        given = {k for k, v in self.args.model_dump().items() if v is not None}
        allowed = {"threshold": {"low", "high"}, "class_weighted": {"weights"}}.get(self.name, set())
        if given - allowed:
            raise ValueError(f"reducer {self.name!r} takes no argument {sorted(given - allowed)}")
        if self.name == "threshold" and not given:
            raise ValueError("reducer 'threshold' needs 'low' or 'high'")
        if self.name == "class_weighted" and not given:
            raise ValueError("reducer 'class_weighted' needs 'weights'")
        return self


class RegularizerArgs(_Strict):
    """Arguments of the ``lp`` regularizer (the others take none)."""

    p: float = 2
    power: float = 1


class RegularizerSpec(_Strict):
    """A PML regularizer: ``lp`` or ``zero_mean`` for embeddings; ``center_invariant`` or
    ``regular_face`` for the class weights of classification losses."""

    name: RegularizerName
    args: RegularizerArgs | None = None

    @model_validator(mode="after")
    def _args_fit_name(self) -> RegularizerSpec:
        if self.args is not None and self.name != "lp":
            raise ValueError(f"regularizer {self.name!r} takes no arguments")
        return self


DistanceArg = Annotated[DistanceSpec | None, BeforeValidator(_name_only)]
"""Annotation of a ``distance`` parameter: a name, a ``{name, args}`` mapping, or None (PML's default)."""
ReducerArg = Annotated[ReducerSpec | None, BeforeValidator(_name_only)]
"""Annotation of a ``reducer`` parameter."""
RegularizerArg = Annotated[RegularizerSpec | None, BeforeValidator(_name_only)]
"""Annotation of a regularizer parameter."""


def _spec(model: type[BaseModel], value: Any) -> Any:
    if value is None or isinstance(value, model):
        return value
    if isinstance(value, (str, Mapping)):
        return model.model_validate(_name_only(value))
    raise TypeError(f"expected a {model.__name__}, a name or a mapping, got {type(value).__name__}")


def build_distance(value: DistanceSpec | str | Mapping[str, Any] | None) -> Any:
    """The PML distance object for a spec (None stays None: the loss or miner keeps its default)."""
    spec = _spec(DistanceSpec, value)
    if spec is None:
        return None
    from pytorch_metric_learning import distances  # type: ignore[import-untyped]

    return getattr(distances, DISTANCES[spec.name])(**spec.args.model_dump())


def build_reducer(value: ReducerSpec | str | Mapping[str, Any] | None) -> Any:
    """The PML reducer object for a spec (None stays None)."""
    spec = _spec(ReducerSpec, value)
    if spec is None:
        return None
    import torch
    from pytorch_metric_learning import reducers

    cls = getattr(reducers, REDUCERS[spec.name])
    if spec.name == "threshold":
        return cls(low=spec.args.low, high=spec.args.high)
    if spec.name == "class_weighted":
        return cls(weights=torch.tensor(spec.args.weights, dtype=torch.float32))
    return cls()


def build_regularizer(value: RegularizerSpec | str | Mapping[str, Any] | None) -> Any:
    """The PML regularizer object for a spec (None stays None)."""
    spec = _spec(RegularizerSpec, value)
    if spec is None:
        return None
    from pytorch_metric_learning import regularizers

    cls = getattr(regularizers, REGULARIZERS[spec.name])
    return cls(**spec.args.model_dump()) if spec.args is not None else cls()
