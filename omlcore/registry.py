"""Name → component lookup over entry points, one group per kind.

Listing reads installed-package metadata only; resolving imports only the plugin that provides the
requested name; building validates the config's ``args`` against the constructor's signature.

>>> import omlcore
>>> omlcore.available("loss")             # doctest: +SKIP
['arcface', 'triplet', 'triplet_with_miner']
>>> omlcore.build("loss", {"name": "triplet", "args": {"margin": 0.2}})  # doctest: +SKIP

Tests and notebooks swap the active registry with :func:`use_registry` or add objects with
:func:`register`; nothing in the library checks whether it runs under a test.
"""

from __future__ import annotations

import difflib
import inspect
import os
import threading
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from omlcore import protocols
from omlcore._active import ActiveSlot
from omlcore.errors import (
    ComponentBuildError,
    ConfigIssue,
    ConfigValidationError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
    PluginTypeError,
    UnknownKindError,
)
from omlcore.schemas import ComponentSpec

__all__ = [
    "EXTRA_HINTS",
    "KINDS",
    "PIPELINE_GROUP",
    "CheckResult",
    "Kind",
    "PluginEntry",
    "Registry",
    "available",
    "build",
    "get_registry",
    "kind_of",
    "register",
    "resolve",
    "use_registry",
]

DISABLE_ENV = "OMLCORE_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Kind:
    """A kind of component: its entry-point group, its protocol and the arguments pipelines pass at run
    time (never written in a config, e.g. an optimizer's ``params``)."""

    name: str
    group: str
    protocol: type
    summary: str
    runtime_args: tuple[str, ...] = ()
    factory: bool = False
    """True when the entry point is a factory whose *result* must satisfy ``protocol`` (transforms)."""


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("extractor", "omlcore.extractors", protocols.Extractor, "models producing embeddings"),
        Kind(
            "sampler",
            "omlcore.samplers",
            protocols.BatchSampler,
            "training batch samplers",
            runtime_args=("labels", "label2category"),
        ),
        Kind("miner", "omlcore.miners", protocols.Miner, "triplet miners"),
        Kind("pair_miner", "omlcore.pair_miners", protocols.PairMiner, "pair miners (re-ranking training)"),
        Kind("loss", "omlcore.losses", protocols.Loss, "training losses"),
        Kind("metric", "omlcore.metrics", protocols.RetrievalMetric, "retrieval metrics"),
        Kind(
            "logger",
            "omlcore.loggers",
            protocols.ExperimentLogger,
            "experiment loggers",
            runtime_args=("run_dir", "tags"),
        ),
        Kind("transform", "omlcore.transforms", protocols.Transform, "preprocessing", factory=True),
        Kind(
            "postprocessor",
            "omlcore.postprocessors",
            protocols.RetrievalPostprocessor,
            "retrieval re-rankers",
        ),
        Kind(
            "pairwise_model",
            "omlcore.pairwise_models",
            protocols.PairwiseModel,
            "models scoring pairs (re-ranking)",
        ),
        Kind("knn", "omlcore.knn", protocols.KnnBackend, "nearest-neighbour search backends"),
        Kind("optimizer", "omlcore.optimizers", protocols.Optimizer, "optimizers", runtime_args=("params",)),
        Kind(
            "scheduler",
            "omlcore.schedulers",
            protocols.LRScheduler,
            "learning-rate schedulers",
            runtime_args=("optimizer",),
        ),
    )
}

# Which omlcore extra installs a first-party component, for the "pip install" hint of a missing name.
# Kept in step with plugins/*/pyproject.toml by tests/test_extras.py.
_OPTIMIZERS = ("adadelta", "adagrad", "adam", "adamax", "adamw", "asgd", "nadam", "radam", "rmsprop")
_SCHEDULERS = (
    "constant",
    "cosine_annealing",
    "cosine_annealing_warm_restarts",
    "cyclic",
    "exponential",
    "lambda_warmup",
    "linear",
    "multi_step",
    "one_cycle",
    "polynomial",
    "reduce_on_plateau",
    "step",
)
_MINERS = (
    "all_triplets",
    "hard_cluster",
    "hard_triplets",
    "miner_with_bank",
    "n_hard_triplets",
    "triplets_with_memory",
)
_LOSSES = (
    "arcface",
    "contrastive",
    "cosface",
    "distributed",
    "mlp_arcface",
    "multi_similarity",
    "proxy_anchor",
    "supcon",
    "surrogate_precision",
    "triplet",
    "triplet_plain",
    "triplet_with_miner",
)
_PML_LOSSES = (
    "pml_angular", "pml_arcface", "pml_circle", "pml_contrastive", "pml_cosface", "pml_cross_batch_memory",
    "pml_dynamic_soft_margin", "pml_fast_ap", "pml_generalized_lifted_structure", "pml_histogram",
    "pml_instance", "pml_intra_pair_variance", "pml_large_margin_softmax", "pml_lifted_structure",
    "pml_manifold", "pml_margin", "pml_multi_similarity", "pml_n_pairs", "pml_nca", "pml_normalized_softmax",
    "pml_nt_xent", "pml_p2sgrad", "pml_pnp", "pml_proxy_anchor", "pml_proxy_nca", "pml_ranked_list",
    "pml_signal_to_noise_ratio_contrastive", "pml_smooth_ap", "pml_soft_triple", "pml_sphereface",
    "pml_sub_center_arcface", "pml_supcon", "pml_threshold_consistent_margin", "pml_triplet_margin",
    "pml_tuplet_margin",
)  # fmt: skip
_PML_MINERS = ("pml_angular_miner", "pml_batch_hard_miner", "pml_distance_weighted_miner", "pml_triplet_margin_miner")
_PML_PAIR_MINERS = (
    "pml_batch_easy_hard_miner",
    "pml_hdc_miner",
    "pml_multi_similarity_miner",
    "pml_pair_margin_miner",
    "pml_uniform_histogram_miner",
)
EXTRA_HINTS: dict[tuple[str, str], str] = {
    **{("optimizer", n): "optim" for n in (*_OPTIMIZERS, "rprop", "sgd")},
    **{("scheduler", n): "optim" for n in _SCHEDULERS},
    **{
        ("transform", n): "albumentations"
        for n in ("augs_albu", "norm_albu", "norm_resize_albu", "norm_resize_albu_clip")
    },
    **{("sampler", n): "samplers" for n in ("balance", "category_balance", "distinct_category_balance")},
    **{("miner", n): "miners" for n in _MINERS},
    ("pair_miner", "pairs"): "miners",
    **{("loss", n): "losses" for n in _LOSSES},
    **{("loss", n): "pml" for n in _PML_LOSSES},
    **{("miner", n): "pml" for n in _PML_MINERS},
    **{("pair_miner", n): "pml" for n in _PML_PAIR_MINERS},
    ("knn", "torch"): "metrics",
    ("metric", "retrieval"): "metrics",
    ("knn", "faiss"): "faiss",
    ("knn", "faiss_ivf"): "faiss",
    **{
        ("transform", n): "images"
        for n in ("augs_torch", "norm_torch", "norm_resize_torch", "augs_hypvit_torch", "norm_resize_hypvit_torch")
    },
    **{
        ("extractor", n): "extractors"
        for n in ("vit", "resnet", "vit_clip", "vit_unicom", "extractor_with_mlp", "efficientnet_lite0")
    },
    **{("logger", n): n for n in ("tensorboard", "mlflow", "wandb", "neptune", "clearml")},
    **{
        ("postprocessor", n): "reranking"
        for n in ("pairwise_embeddings", "pairwise_images", "constant_thresholding", "adaptive_thresholding")
    },
    **{("pairwise_model", n): "reranking" for n in ("concat_siamese", "linear_siamese", "trivial_distance_siamese")},
}


def kind_of(kind: str) -> Kind:
    """The :class:`Kind` for a kind name (``"loss"``) or its group (``"omlcore.losses"``)."""
    if kind in KINDS:
        return KINDS[kind]
    for k in KINDS.values():
        if kind == k.group:
            return k
    close = difflib.get_close_matches(kind, [*KINDS, *(k.group for k in KINDS.values())], n=1)
    raise UnknownKindError(kind, sorted(KINDS), close[0] if close else None)


@dataclass(frozen=True)
class PluginEntry:
    """One name offered for one kind: where it comes from and how to load it."""

    kind: str
    name: str
    value: str
    distribution: str | None
    version: str | None
    loader: Callable[[], Any] = field(compare=False, repr=False)

    @property
    def origin(self) -> str:
        """``"omlcore-optim 0.1.0"``, or a description when no distribution provides it."""
        if self.distribution is None:
            return "an in-process registration" if self.value == "<registered>" else "an unknown distribution"
        return f"{self.distribution} {self.version or '(unknown version)'}"

    def load(self) -> Any:
        """Import and return the object (class or factory)."""
        return self.loader()


EntrySource = Callable[[str], Iterable[PluginEntry]]
"""Given an entry-point group, the entries installed for it (metadata only, nothing imported)."""


PIPELINE_GROUP = "omlcore.pipelines"
"""Entry-point group through which plugins add pipelines (config models; see :mod:`omlcore.config`). Its
entries carry the kind ``"pipeline"``, which is not a component kind of :data:`KINDS`."""


def entry_point_source(group: str) -> list[PluginEntry]:
    """The default :data:`EntrySource`: installed distributions' entry points."""
    kind = "pipeline" if group == PIPELINE_GROUP else kind_of(group).name
    out = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        out.append(
            PluginEntry(
                kind=kind,
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                loader=ep.load,
            )
        )
    return out


def normalize_dist(name: str) -> str:
    """Canonical distribution name (PEP 503): ``Omlcore_Optim`` → ``omlcore-optim``."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def disabled_from_env() -> frozenset[str]:
    """Names listed in ``OMLCORE_DISABLE_PLUGINS`` (comma separated), normalised."""
    raw = os.environ.get(DISABLE_ENV, "")
    return frozenset(normalize_dist(n.strip()) for n in raw.split(",") if n.strip())


@dataclass(frozen=True)
class CheckResult:
    """One line of ``omlcore plugins check``."""

    kind: str
    name: str
    origin: str
    ok: bool
    message: str = ""


def _protocol_members(proto: type) -> tuple[list[str], list[str]]:
    """(methods, data attributes) a protocol declares, in declaration order."""
    methods = [n for n, v in vars(proto).items() if callable(v) and (n == "__call__" or not n.startswith("_"))]
    methods += [n for n in ("__iter__", "__len__") if n in vars(proto)]
    attributes = [n for n in getattr(proto, "__annotations__", {}) if not n.startswith("_")]
    return methods, attributes


def missing_members(obj: Any, proto: type, *, instance: bool) -> list[str]:
    """Members of ``proto`` that ``obj`` lacks. On a class only methods can be checked."""
    methods, attributes = _protocol_members(proto)
    wanted = methods + (attributes if instance else [])
    return [m for m in wanted if not hasattr(obj, m)]


def _nested_kind(tp: Any) -> tuple[Kind, Literal["one", "list"], bool] | None:
    """If an annotation names a protocol of a kind (``Miner``, ``Miner | None``, ``list[Miner]``), the
    kind, whether it is a list, and whether ``None`` is allowed."""
    by_proto = {k.protocol: k for k in KINDS.values()}
    if tp in by_proto:
        return by_proto[tp], "one", False
    origin = typing.get_origin(tp)
    targs = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        rest = [a for a in targs if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(targs):
            inner = _nested_kind(rest[0])
            if inner is not None:
                return inner[0], inner[1], True
        return None
    if origin in (list, Sequence, typing.List) and len(targs) == 1 and targs[0] in by_proto:  # noqa: UP006
        return by_proto[targs[0]], "list", False
    return None


def _nested_validator(kind: Kind) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None or isinstance(value, ComponentSpec):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"name", "args"}
            if "name" not in value or not isinstance(value["name"], str) or unknown:
                raise ValueError(
                    f"expected a mapping {{name: <{kind.name} name>, args: {{...}}}}, got keys {sorted(value)}"
                )
            args = value.get("args") or {}
            if not isinstance(args, Mapping):
                raise ValueError(f"'args' of a nested {kind.name} must be a mapping, got {type(args).__name__}")
            return ComponentSpec(name=value["name"], args=dict(args))
        if kind.factory or isinstance(value, kind.protocol):
            return value
        raise ValueError(
            f"expected a {{name, args}} mapping naming a {kind.name} or a {kind.protocol.__name__} object, "
            f"got {type(value).__name__}"
        )

    return check


_NESTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "args": {"type": "object"}},
    "required": ["name"],
    "additionalProperties": False,
}


_UNRESOLVED = object()


def _resolve_annotation(annotation: Any, globalns: dict[str, Any]) -> Any:
    """The annotation as an object; :data:`_UNRESOLVED` when a string annotation cannot be evaluated
    (e.g. a name imported only under ``TYPE_CHECKING``)."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        # Annotations are code by definition (PEP 563). omlcore's protocols are offered as a fallback, so
        # `miner: Miner` works when a plugin imports Miner only under TYPE_CHECKING.
        namespace = {name: getattr(protocols, name) for name in protocols.__all__} | globalns
        try:
            return eval(annotation, namespace)
        except Exception:
            return _UNRESOLVED
    return annotation


@dataclass
class ArgsModel:
    """A pydantic model of a constructor's keyword arguments, with where nested components sit."""

    model: type[BaseModel]
    nested: dict[str, tuple[Kind, Literal["one", "list"]]]
    positional_only: tuple[str, ...]
    accepts: frozenset[str] | None
    """Every parameter name the constructor takes, run-time ones included; None if it takes ``**kwargs``."""
    unchecked: tuple[str, ...] = ()
    """Parameters whose annotation could not be evaluated: they accept any value."""


def signature_model(obj: Any, title: str, exclude: Iterable[str] = ()) -> ArgsModel:
    """Build a model that validates keyword arguments for ``obj`` (a class or a function).

    Unknown keys are rejected unless ``obj`` takes ``**kwargs``; values are checked and coerced as
    pydantic does (``"0.2"`` → ``0.2``); parameters without annotation accept anything; parameters
    annotated with a protocol (``miner: Miner``) take a nested ``{name, args}`` spec or an object.
    """
    target = obj.__init__ if inspect.isclass(obj) else obj
    globalns = getattr(inspect.unwrap(target), "__globals__", {})
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        sig = inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
    excluded = set(exclude)
    fields: dict[str, Any] = {}
    nested: dict[str, tuple[Kind, Literal["one", "list"]]] = {}
    positional_only = []
    unchecked: list[str] = []
    var_kwargs = False
    for i, (pname, param) in enumerate(sig.parameters.items()):
        if param.kind is param.VAR_KEYWORD:
            var_kwargs = True
            continue
        if param.kind is param.VAR_POSITIONAL or pname in excluded:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(pname)
        annotation = _resolve_annotation(param.annotation, globalns)
        if annotation is _UNRESOLVED:
            unchecked.append(pname)
            annotation = Any
        default = ... if param.default is param.empty else param.default
        found = _nested_kind(annotation)
        if found is not None:
            nkind, container, optional = found
            item = typing.Annotated[Any, BeforeValidator(_nested_validator(nkind))]
            annotation = list[item] if container == "list" else item
            nested[pname] = (nkind, container)
            schema: dict[str, Any] = (
                {"type": "array", "items": _NESTED_SCHEMA} if container == "list" else dict(_NESTED_SCHEMA)
            )
            if optional:
                schema = {"anyOf": [schema, {"type": "null"}]}
            fields[f"p{i}"] = (annotation, Field(default, alias=pname, json_schema_extra=schema))
        else:
            fields[f"p{i}"] = (annotation, Field(default, alias=pname))
    config = ConfigDict(
        extra="allow" if var_kwargs else "forbid",
        arbitrary_types_allowed=True,
        populate_by_name=False,
        title=title,
    )
    model = create_model(title, __config__=config, **fields)
    accepts = None if var_kwargs else frozenset(sig.parameters)
    return ArgsModel(model, nested, tuple(positional_only), accepts, tuple(unchecked))


def _config_loc(loc: Sequence[Any], data: Any) -> list[str]:
    """The parts of a pydantic error location that are places in ``data`` (keys and indices).

    pydantic adds the tags of union members (``'float'``, ``'is-instance[Tensor]'``) to locations; they
    are not places in the config, so they are dropped by walking ``data`` along the location.
    """
    parts: list[str] = []
    node, inside = data, True
    for part in loc:
        if not inside:
            parts.append(str(part))
        elif isinstance(node, Mapping):
            parts.append(str(part))
            if part in node:
                node = node[part]
            else:
                inside = False  # a missing or unexpected key
        elif isinstance(part, int):  # an index; past the end when an item is missing
            parts.append(str(part))
            if isinstance(node, (list, tuple)) and 0 <= part < len(node):
                node = node[part]
            else:
                inside = False
        # else: a union member's tag, not a place in the config
    return parts


def issues_from_validation(
    exc: ValidationError, prefix: str, data: Any, known: Sequence[str] = ()
) -> list[ConfigIssue]:
    """One :class:`ConfigIssue` per config place from a pydantic error (union alternatives merged).

    ``known`` are the accepted top-level keys: an unexpected key close to one of them gets a did-you-mean.
    """
    merged: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for err in exc.errors():
        loc = ".".join(_config_loc(err["loc"], data))
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = str(err["msg"])
        msg = msg[:1].lower() + msg[1:]
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1 and known:
            close = difflib.get_close_matches(str(err["loc"][0]), known, n=1)
            msg += f"; did you mean {close[0]!r}?" if close else f"; accepted: {', '.join(known)}"
        if msg not in merged.setdefault(path, []):
            merged[path].append(msg)
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err and path not in shown:
            text = repr(err["input"])
            shown[path] = f" (got {text if len(text) <= 60 else text[:57] + '...'})"
    return [ConfigIssue(path, "; or ".join(msgs) + shown.get(path, "")) for path, msgs in merged.items()]


class Registry:
    """Components by kind and name, from entry points plus in-process registrations.

    ``source`` gives the entries of a group (default: installed distributions); ``disabled`` lists
    distribution names to ignore (default: ``OMLCORE_DISABLE_PLUGINS``).
    """

    def __init__(self, source: EntrySource | None = None, disabled: Iterable[str] | None = None) -> None:
        self._source: EntrySource = source or entry_point_source
        self.disabled = disabled_from_env() if disabled is None else frozenset(normalize_dist(d) for d in disabled)
        self._entries: dict[str, dict[str, list[PluginEntry]]] = {}
        self._registered: dict[str, dict[str, Any]] = {}
        self._loaded: dict[tuple[str, str], Any] = {}
        self._models: dict[tuple[int, str, frozenset[str]], ArgsModel] = {}
        self._lock = threading.RLock()

    # ---- listing: metadata only ---------------------------------------------------------------
    def entries(self, kind: str) -> dict[str, list[PluginEntry]]:
        """Every name of ``kind`` with the entries offering it (several entries = a conflict)."""
        k = kind_of(kind)
        with self._lock:
            if k.name not in self._entries:
                found: dict[str, list[PluginEntry]] = {}
                for entry in self._source(k.group):
                    if entry.distribution and normalize_dist(entry.distribution) in self.disabled:
                        continue
                    found.setdefault(entry.name, []).append(entry)
                self._entries[k.name] = found
            merged = dict(self._entries[k.name])
        for name, obj in self._registered.get(k.name, {}).items():
            merged[name] = [PluginEntry(k.name, name, "<registered>", None, None, _returns(obj))]
        return dict(sorted(merged.items()))

    def pipelines(self) -> dict[str, list[PluginEntry]]:
        """Pipelines added by plugins (group ``omlcore.pipelines``): name → entries offering it. No import."""
        found: dict[str, list[PluginEntry]] = {}
        for entry in self._source(PIPELINE_GROUP):
            if entry.distribution and normalize_dist(entry.distribution) in self.disabled:
                continue
            found.setdefault(entry.name, []).append(entry)
        return dict(sorted(found.items()))

    def refresh(self) -> None:
        """Forget cached entry-point listings and loaded objects (after installing a package)."""
        with self._lock:
            self._entries.clear()
            self._loaded.clear()
            self._models.clear()

    def available(self, kind: str) -> list[str]:
        """The installed names for ``kind``, sorted. Imports no plugin."""
        return list(self.entries(kind))

    # ---- resolving: imports one plugin ---------------------------------------------------------
    def entry(self, kind: str, name: str) -> PluginEntry:
        """The single entry providing ``name``; raises not-found or conflict errors."""
        k = kind_of(kind)
        entries = self.entries(k.name)
        offered = entries.get(name)
        if not offered:
            names = list(entries)
            raise PluginNotFoundError(
                k.name,
                k.group,
                name,
                installed=names,
                suggestions=difflib.get_close_matches(name, names, n=3, cutoff=0.6),
                extra=EXTRA_HINTS.get((k.name, name)),
                not_installed={n: x for (kn, n), x in EXTRA_HINTS.items() if kn == k.name and n not in entries},
            )
        if len(offered) > 1:
            raise PluginConflictError(k.name, k.group, name, [f"{e.origin} ({e.value})" for e in offered])
        return offered[0]

    def resolve(self, kind: str, name: str) -> Any:
        """The class or factory registered as ``name`` for ``kind``, imported on first use."""
        k = kind_of(kind)
        entry = self.entry(k.name, name)
        key = (k.name, name)
        with self._lock:
            if entry.value != "<registered>" and key in self._loaded:
                return self._loaded[key]
            try:
                obj = entry.load()
            except Exception as exc:
                raise PluginLoadError(k.name, name, entry.value, entry.origin, exc) from exc
            if inspect.isclass(obj) and not k.factory:
                missing = missing_members(obj, k.protocol, instance=False)
                if missing:
                    raise PluginTypeError(k.name, name, entry.origin, k.protocol.__name__, missing)
            elif not callable(obj):
                raise PluginTypeError(k.name, name, entry.origin, k.protocol.__name__, ["__call__"])
            if entry.value != "<registered>":
                self._loaded[key] = obj
            return obj

    def register(self, kind: str, name: str, obj: Any) -> None:
        """Offer ``obj`` as ``name`` for ``kind`` in this process; it shadows installed entry points."""
        k = kind_of(kind)
        with self._lock:
            self._registered.setdefault(k.name, {})[name] = obj

    def unregister(self, kind: str, name: str) -> None:
        """Undo :meth:`register`."""
        with self._lock:
            self._registered.get(kind_of(kind).name, {}).pop(name, None)

    # ---- arguments ---------------------------------------------------------------------------------
    def args_model(self, kind: str, name: str, exclude: Iterable[str] = ()) -> ArgsModel:
        """The arguments model of ``name`` (run-time arguments of the kind are left out)."""
        k = kind_of(kind)
        obj = self.resolve(k.name, name)
        drop = frozenset((*k.runtime_args, *exclude))
        key = (id(obj), f"{k.name}:{name}", drop)
        with self._lock:
            if key not in self._models:
                self._models[key] = signature_model(obj, f"{k.name}:{name}", exclude=drop)
            return self._models[key]

    def validate(self, kind: str, spec: ComponentSpec | Mapping[str, Any], path: str = "") -> list[ConfigIssue]:
        """Every problem with ``spec`` (plugin lookup and arguments, nested components included).

        ``path`` is the spec's place in the config (``"loss"``); issues carry full dotted paths.
        """
        k = kind_of(kind)
        path = path or k.name
        try:
            spec = ComponentSpec.model_validate(spec)
        except ValidationError as exc:
            return issues_from_validation(exc, path, spec)
        try:
            am = self.args_model(k.name, spec.name)
        except (PluginNotFoundError, PluginConflictError, PluginLoadError, PluginTypeError) as exc:
            return [ConfigIssue(f"{path}.name", str(exc), cause=exc.__cause__ or exc)]
        issues = [
            ConfigIssue(f"{path}.args.{a}", "is passed by the pipeline at run time; remove it from the config")
            for a in spec.args
            if a in k.runtime_args
        ]
        args = {a: v for a, v in spec.args.items() if a not in k.runtime_args}
        try:
            am.model.model_validate(args)
        except ValidationError as exc:
            known = [f.alias for f in am.model.model_fields.values() if f.alias]
            issues += issues_from_validation(exc, f"{path}.args", args, known)
        for pname, (nkind, container) in am.nested.items():
            value = args.get(pname)
            items = value if container == "list" and isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, Mapping) and isinstance(item.get("name"), str) and set(item) <= {"name", "args"}:
                    where = f"{path}.args.{pname}" + (f".{i}" if container == "list" else "")
                    issues += self.validate(nkind.name, item, where)
        return issues

    def build(self, kind: str, spec: ComponentSpec | Mapping[str, Any], /, **runtime: Any) -> Any:
        """An instance of the component ``spec`` names, with validated ``args`` plus ``runtime`` kwargs.

        Nested ``{name, args}`` values for protocol-typed parameters are built first. Raises
        :class:`ConfigValidationError` listing every problem, or a plugin error.
        """
        k = kind_of(kind)
        spec = ComponentSpec.model_validate(spec)
        issues = self.validate(k.name, spec)
        if issues:
            raise ConfigValidationError(issues, source=f"{k.name} {spec.name!r}")
        obj = self.resolve(k.name, spec.name)
        am = self.args_model(k.name, spec.name)
        parsed = am.model.model_validate(spec.args)
        kwargs = _values_by_alias(parsed)
        kwargs.update(parsed.model_extra or {})
        for pname, (nkind, container) in am.nested.items():
            value = kwargs[pname]
            if container == "list" and isinstance(value, list):
                kwargs[pname] = [self.build(nkind.name, v) if isinstance(v, ComponentSpec) else v for v in value]
            elif isinstance(value, ComponentSpec):
                kwargs[pname] = self.build(nkind.name, value)
        # A kind's run-time arguments are offered to every component of the kind; each takes the ones
        # its constructor names (a `balance` sampler needs `labels` but not `label2category`).
        kwargs.update(
            (name, value)
            for name, value in runtime.items()
            if name not in k.runtime_args or am.accepts is None or name in am.accepts
        )
        positional = [kwargs.pop(p) for p in am.positional_only if p in kwargs]
        try:
            instance = obj(*positional, **kwargs)
        except (ValueError, TypeError) as exc:
            origin = self.entry(k.name, spec.name).origin
            raise ComponentBuildError(k.name, spec.name, origin, dict(spec.args), exc) from exc
        missing = missing_members(instance, k.protocol, instance=True)
        if missing:
            entry = self.entry(k.name, spec.name)
            raise PluginTypeError(k.name, spec.name, entry.origin, k.protocol.__name__, missing)
        return instance

    # ---- diagnostics -----------------------------------------------------------------------------
    def check(self) -> list[CheckResult]:
        """Import every installed component and check it against its kind's protocol."""
        results = []
        for k in KINDS.values():
            for name, offered in self.entries(k.name).items():
                origin = ", ".join(e.origin for e in offered)
                try:
                    self.resolve(k.name, name)
                    am = self.args_model(k.name, name)
                except Exception as exc:
                    results.append(CheckResult(k.name, name, origin, False, f"{type(exc).__name__}: {exc}"))
                else:
                    note = ""
                    if am.unchecked:
                        note = (
                            f"note: annotations of {', '.join(am.unchecked)} cannot be evaluated at run time, "
                            f"so config values for them are not type-checked"
                        )
                    results.append(CheckResult(k.name, name, origin, True, note))
        return results


def _returns(obj: Any) -> Callable[[], Any]:
    def load() -> Any:
        return obj

    return load


def _values_by_alias(parsed: BaseModel) -> dict[str, Any]:
    """The validated values under their parameter names (fields are named p0, p1... internally)."""
    return {info.alias: getattr(parsed, name) for name, info in type(parsed).model_fields.items() if info.alias}


_ACTIVE: ActiveSlot[Registry] = ActiveSlot(Registry)


def get_registry() -> Registry:
    """The registry the module-level functions use (created on first use)."""
    return _ACTIVE.get()


def use_registry(registry: Registry) -> AbstractContextManager[Registry]:
    """Make ``registry`` the active one inside the ``with`` block (tests, sandboxes)."""
    return _ACTIVE.use(registry)


def available(kind: str) -> list[str]:
    """Names installed for ``kind`` (``"loss"`` or ``"omlcore.losses"``); reads metadata only."""
    return get_registry().available(kind)


def resolve(kind: str, name: str) -> Any:
    """The class or factory installed as ``name`` for ``kind``."""
    return get_registry().resolve(kind, name)


def build(kind: str, spec: ComponentSpec | Mapping[str, Any], /, **runtime: Any) -> Any:
    """An instance from a ``{name, args}`` spec; ``runtime`` adds run-time arguments (``params=...``)."""
    return get_registry().build(kind, spec, **runtime)


def register(kind: str, name: str, obj: Any) -> None:
    """Offer ``obj`` as ``name`` for ``kind`` in this process, shadowing installed entry points."""
    get_registry().register(kind, name, obj)
