"""Reading checkpoints safely and fitting their keys to an extractor.

A checkpoint may be a plain state dict, a Lightning checkpoint (``{"state_dict": ..., "epoch": ...}``), a
training checkpoint of another framework (MoCo's ``module.encoder_q.*``, a CLIP model whose image tower is
under ``visual.*``), or what an omlcore or OML extractor saved. :func:`load_weights` finds, among the key
layouts an extractor understands (:class:`KeyLayout`), the layout and key prefix under which the most
checkpoint keys name the extractor's parameters, converts those keys, and loads them strictly. Keys outside
the chosen prefix (a loss's class centres, a momentum encoder, an optimizer's state) are left out and listed
in the :class:`LoadReport`.

Files are read with ``torch.load(weights_only=True)``: a pickle that would import or call Python code is
refused. TorchScript archives (OpenAI's CLIP files) are read only when the caller allows it, which the zoo
does for files whose checksum it has verified.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omlcore_extractors.errors import WeightsError

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "LOSS_PREFIXES",
    "KeyLayout",
    "LoadReport",
    "load_weights",
    "native_layout",
    "prefixed_layout",
    "read_state_dict",
    "select_state_dict",
]

log = logging.getLogger("omlcore_extractors")

CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "teacher")
"""Keys under which checkpoints nest their state dict, tried in this order (Lightning uses ``state_dict``)."""

LOSS_PREFIXES = ("criterion.", "criterions.", "loss.", "losses.", "loss_fn.")
"""Top-level modules of a training module that hold a loss's weights (ArcFace's class centres); dropped."""


def _never(key: str) -> bool:
    return False


@dataclass(frozen=True)
class KeyLayout:
    """A way checkpoint keys can be named for one extractor.

    ``rename(key)`` maps a checkpoint key (with the prefix already removed) to the extractor's own
    ``state_dict`` key, or returns ``None`` when the key is not part of this layout. ``ignore(key)`` marks
    keys files of this layout carry but the extractor does not use (DINOv2's ``mask_token``, a classifier
    that ``remove_fc`` dropped). ``transform(native_key, tensor)`` reshapes a tensor where the layouts
    store it differently (CLIP's class embedding is ``(D,)``, timm's class token ``(1, 1, D)``).
    """

    name: str
    rename: Callable[[str], str | None]
    ignore: Callable[[str], bool] = _never
    transform: Callable[[str, Tensor], Tensor] | None = None


def native_layout(name: str = "omlcore") -> KeyLayout:
    """The extractor's own keys (what ``extractor.state_dict()`` saves)."""
    return KeyLayout(name, lambda key: key)


def prefixed_layout(name: str, prefix: str, ignore: Callable[[str], bool] = _never) -> KeyLayout:
    """Keys of a published backbone that the extractor holds under ``prefix`` (``"model."``)."""
    return KeyLayout(name, lambda key: prefix + key, ignore)


@dataclass
class LoadReport:
    """What :func:`load_weights` did: the layout and prefix it chose and every key it used or left out."""

    source: str
    layout: str
    prefix: str
    loaded: list[str] = field(default_factory=list)
    """Extractor keys that received a tensor."""
    ignored: list[str] = field(default_factory=list)
    """Checkpoint keys left out: outside the prefix, loss weights, or known to be unused by the extractor."""
    missing: list[str] = field(default_factory=list)
    """Extractor keys the checkpoint had no tensor for."""
    unexpected: list[str] = field(default_factory=list)
    """Checkpoint keys (under the prefix) the extractor has no place for."""
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    """``(key, checkpoint shape, extractor shape)`` for tensors of the wrong shape."""

    @property
    def ok(self) -> bool:
        """True when every extractor key got a tensor of the right shape and nothing was unexpected."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int = 8) -> str:
        """The missing, unexpected and mismatched keys, readable, ``limit`` of each at most."""
        lines = []
        if self.missing:
            lines.append(
                f"  {len(self.missing)} missing key(s) (in the extractor, not in the file): {_few(self.missing, limit)}"
            )
        if self.unexpected:
            lines.append(
                f"  {len(self.unexpected)} unexpected key(s) (in the file, not in the extractor): "
                f"{_few(self.unexpected, limit)}"
            )
        if self.mismatched:
            shown = ", ".join(f"{k}: file {list(a)} vs extractor {list(b)}" for k, a, b in self.mismatched[:limit])
            more = f", ... ({len(self.mismatched)} in all)" if len(self.mismatched) > limit else ""
            lines.append(f"  {len(self.mismatched)} shape mismatch(es): {shown}{more}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many tensors loaded from where, and what was left out."""
        where = f" under prefix {self.prefix!r}" if self.prefix else ""
        left = f"; left out {len(self.ignored)} key(s): {_few(self.ignored, 4)}" if self.ignored else ""
        return f"loaded {len(self.loaded)} tensor(s) from {self.source} ({self.layout} layout{where}){left}"


def _few(items: Iterable[str], limit: int) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


# ---- reading ------------------------------------------------------------------------------------------


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_state_dict(path: str | os.PathLike[str], *, allow_torchscript: bool = False) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, keyed by name (see :func:`select_state_dict` for nesting).

    ``.safetensors`` files are read with safetensors; everything else with
    ``torch.load(map_location="cpu", weights_only=True)``. A pickle holding anything but tensors and plain
    containers is refused with :class:`WeightsError`, as is a TorchScript archive unless
    ``allow_torchscript`` (its code is then compiled by ``torch.jit.load`` but never run).
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"The weights file {str(p)!r} does not exist.")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device="cpu"))
        except Exception as exc:
            raise WeightsError(f"Cannot read the safetensors file {str(p)!r}: {exc}") from exc
    if _is_torchscript(p):
        if not allow_torchscript:
            raise WeightsError(
                f"{str(p)!r} is a TorchScript archive (a compiled model with code), not a state dict; it is "
                "not loaded from an arbitrary path. Zoo keys whose TorchScript files are checksum-verified "
                "(openai_vit*) load it; otherwise convert it once, where you trust it: "
                "torch.save(torch.jit.load(path).state_dict(), 'weights.pth')."
            )
        try:
            with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; these files still are it
                warnings.simplefilter("ignore", FutureWarning)
                scripted: Any = torch.jit.load(str(p), map_location="cpu")  # type: ignore[no-untyped-call,unused-ignore]
        except Exception as exc:
            raise WeightsError(f"Cannot read the TorchScript archive {str(p)!r}: {exc}") from exc
        return {k: v for k, v in scripted.state_dict().items() if isinstance(v, torch.Tensor)}
    try:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            obj = _load_with_inert_metadata(p, exc)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"Cannot read {str(p)!r} as a PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            "Is the file complete (not a truncated download) and saved with torch.save?"
        ) from exc
    return select_state_dict(obj, source=str(p))


METADATA_GLOBALS = (
    "argparse.Namespace",
    "collections.defaultdict",
    "datetime.",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "numpy.",
    "omegaconf.",
    "pathlib.",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "typing.",
)
"""Python objects training checkpoints carry next to their tensors (Lightning's hyper-parameters, paths and
numpy numbers of callbacks, OmegaConf configs). A file whose only non-tensor objects are these is read with
each replaced by an inert stand-in, so none of their code is imported or run; any other object is refused."""

_DICT_LIKE = ("AttributeDict",)


class _Inert:
    """Stands in for a metadata object while unpickling: takes any arguments and state, does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<metadata left out>"


def _is_metadata(name: str) -> bool:
    return any(name == m or (m.endswith(".") and name.startswith(m)) for m in METADATA_GLOBALS)


def _load_with_inert_metadata(path: Path, error: pickle.UnpicklingError) -> Any:
    """Retry a refused ``weights_only`` load when every offending global is checkpoint metadata."""
    import torch

    serialization: Any = torch.serialization
    try:
        names = list(serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # old torch, or a file it cannot scan
        names = []
    code = [n for n in names if not _is_metadata(n)]
    if code or not names:
        detail = (
            ", ".join(code)
            if code
            else next((line.strip() for line in str(error).splitlines() if "global" in line.lower()), "unknown objects")
        )
        raise WeightsError(
            f"Refused to load {str(path)!r}: besides tensors it pickles Python objects whose loading could run "
            f"code ({detail}). Only tensors, plain containers and training metadata are read "
            "(torch.load(weights_only=True)). If you trust the file, re-save its tensors once: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')."
        ) from error
    stand_ins = [(dict if n.endswith(_DICT_LIKE) else _Inert, n) for n in names]
    try:
        with serialization.safe_globals(stand_ins):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, TypeError) as exc:
        raise WeightsError(
            f"Cannot read {str(path)!r} without running code: its metadata ({', '.join(names)}) does not "
            f"unpickle with inert stand-ins ({exc}). Re-save its tensors where you trust the file: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')."
        ) from exc


def select_state_dict(obj: Any, source: str = "the checkpoint") -> dict[str, Tensor]:
    """The tensors of a loaded checkpoint: ``obj`` itself if it maps names to tensors, else the first of
    :data:`CONTAINER_KEYS` that does (Lightning's ``state_dict``...). Non-tensor entries are dropped."""
    import torch

    node = obj
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(node, Mapping):
            break
        tensors = {str(k): v for k, v in node.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) * 2 >= len(node):
            return tensors
        nested = next((node[k] for k in CONTAINER_KEYS if isinstance(node.get(k), Mapping)), None)
        if nested is None:
            if tensors:
                return tensors
            break
        node = nested
    keys = list(obj)[:10] if isinstance(obj, Mapping) else []
    raise WeightsError(
        f"No state dict found in {source}: expected a mapping of names to tensors, or one nested under "
        f"{', '.join(repr(k) for k in CONTAINER_KEYS)}; got {type(obj).__name__}"
        + (f" with keys {keys}" if keys else "")
        + "."
    )


# ---- matching -----------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    layout: KeyLayout
    prefix: str
    fitting: int
    hits: int
    first: int

    def score(self) -> tuple[int, int, int, int]:
        return (self.fitting, self.hits, -self.first, -len(self.prefix))


def _best_candidate(
    state_dict: Mapping[str, Tensor], keys: list[str], expected: Mapping[str, tuple[int, ...]], layouts: list[KeyLayout]
) -> _Candidate | None:
    """The (layout, prefix) under which the most checkpoint keys name extractor keys.

    Keys whose tensor also has the right shape count first (a CLIP file's text tower has the same key names
    as its image tower, under another prefix), then keys that only match by name. Ties go to the prefix
    whose first match comes earliest in the file (MoCo stores ``encoder_q`` before its momentum copy
    ``encoder_k``), then to the shorter prefix.
    """
    best: _Candidate | None = None
    for layout in layouts:
        found: dict[str, _Candidate] = {}
        for position, key in enumerate(keys):
            parts = key.split(".")
            for cut in range(len(parts)):
                prefix = ".".join(parts[:cut]) + ("." if cut else "")
                target = layout.rename(key[len(prefix) :])
                if target is None or target not in expected:
                    continue
                cand = found.setdefault(prefix, _Candidate(layout, prefix, 0, 0, position))
                cand.hits += 1
                tensor = state_dict[key]
                if layout.transform is not None:
                    tensor = layout.transform(target, tensor)
                if tuple(tensor.shape) == tuple(expected[target]):
                    cand.fitting += 1
        for cand in found.values():
            if best is None or cand.score() > best.score():
                best = cand
    return best


def fit_state_dict(
    state_dict: Mapping[str, Tensor],
    expected: Mapping[str, tuple[int, ...]],
    layouts: list[KeyLayout],
    source: str = "the checkpoint",
) -> tuple[dict[str, Tensor], LoadReport]:
    """Choose a layout and prefix for ``state_dict``, convert its keys, and compare with ``expected``
    (extractor key -> shape). Returns the converted tensors and a report; raises nothing about fit."""
    keys = list(state_dict)
    losses = [k for k in keys if k.startswith(LOSS_PREFIXES)]
    usable = [k for k in keys if not k.startswith(LOSS_PREFIXES)]
    best = _best_candidate(state_dict, usable, expected, layouts)
    if best is None:
        raise WeightsError(
            f"No key of {source} names a parameter of this extractor in any layout it reads "
            f"({', '.join(lay.name for lay in layouts)}): the file holds {_few(keys, 6)}. "
            "It is probably a checkpoint of another model."
        )
    layout, prefix = best.layout, best.prefix
    report = LoadReport(source=source, layout=layout.name, prefix=prefix, ignored=losses)
    out: dict[str, Tensor] = {}
    for key in usable:
        if not key.startswith(prefix):
            report.ignored.append(key)
            continue
        rest = key[len(prefix) :]
        if layout.ignore(rest):
            report.ignored.append(key)
            continue
        target = layout.rename(rest)
        if target is None or target not in expected:
            report.unexpected.append(key)
            continue
        tensor = state_dict[key]
        if layout.transform is not None:
            tensor = layout.transform(target, tensor)
        if tuple(tensor.shape) != tuple(expected[target]):
            report.mismatched.append((target, tuple(tensor.shape), tuple(expected[target])))
            continue
        out[target] = tensor
    report.loaded = list(out)
    matched = set(out) | {k for k, _, _ in report.mismatched}
    report.missing = [k for k in expected if k not in matched]
    return out, report


def load_weights(
    module: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    layouts: list[KeyLayout] | None = None,
    strict: bool = True,
    allow_torchscript: bool = False,
    what: str = "",
    diagnose: Callable[[dict[str, Tensor]], str] | None = None,
) -> LoadReport:
    """Load a checkpoint file (or an in-memory state dict / checkpoint) into ``module``.

    ``layouts`` default to the module's own keys. With ``strict`` (the default) any missing, unexpected or
    mis-shaped key raises :class:`WeightsError` with a readable report, and nothing is loaded; otherwise
    the tensors that fit are loaded and the report says what did not. ``what`` names the extractor in
    messages (``"vit(arch='vits16')"``); ``diagnose(state_dict)`` may add a hint (another arch that fits).
    """
    if isinstance(source, Mapping):
        name = "the given state dict"
        state_dict = select_state_dict(source, source=name)
    else:
        name = str(source)
        state_dict = read_state_dict(source, allow_torchscript=allow_torchscript)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    converted, report = fit_state_dict(state_dict, expected, layouts or [native_layout()], source=name)
    if not report.ok:
        label = what or type(module).__name__
        hint = diagnose(state_dict) if diagnose else ""
        message = f"The weights {name} do not fit {label} ({report.layout} layout"
        message += f", prefix {report.prefix!r}):\n" if report.prefix else "):\n"
        message += report.problems()
        if hint:
            message += f"\n{hint}"
        elif report.mismatched or len(report.missing) > len(expected) // 4:
            message += "\nThe file looks like a checkpoint of another architecture; check arch and the other args."
        if strict:
            raise WeightsError(message)
        log.warning("%s", message)
    module.load_state_dict(converted, strict=False)
    log.info("%s", report.summary())
    return report
