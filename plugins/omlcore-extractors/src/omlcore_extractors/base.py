"""What every extractor of this plugin shares: ``feat_dim``, ``extract``, normalisation, freezing, and
building from ``weights`` given as ``None`` (random init), a zoo key or a file.

:func:`from_pretrained` (and the classmethod :meth:`BaseExtractor.from_pretrained`) builds the extractor a zoo
key was published for, with that key's init arguments.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from omlcore_extractors.errors import WeightsError
from omlcore_extractors.weights import KeyLayout, LoadReport, fit_state_dict, load_weights, native_layout

__all__ = ["BaseExtractor", "WeightsSpec", "available_zoo_keys", "from_pretrained", "resolve_weights"]

WeightsSpec = str | os.PathLike[str] | None
"""``None`` (random init), a zoo key, or the path of a checkpoint file."""


def _zoo() -> Any:
    """The zoo module, or None where it is not installed (the zoo lives in :mod:`omlcore_extractors.zoo`)."""
    try:
        return importlib.import_module("omlcore_extractors.zoo")
    except ModuleNotFoundError as exc:
        if exc.name == "omlcore_extractors.zoo":
            return None
        raise


def _zoo_table() -> Mapping[str, Any]:
    """Every zoo entry by key (built in, from plugins, registered in-process)."""
    zoo = _zoo()
    if zoo is None:
        return {}
    entries: Mapping[str, Any] = zoo.all_entries() if hasattr(zoo, "all_entries") else zoo.ZOO
    return entries


def available_zoo_keys(extractor: str | None = None) -> list[str]:
    """Zoo keys, all or those published for the extractor named ``extractor`` (e.g. ``"vit"``)."""
    return sorted(k for k, e in _zoo_table().items() if extractor is None or e.extractor == extractor)


def resolve_weights(weights: WeightsSpec, extractor: str, init_args: Mapping[str, Any]) -> tuple[Path, bool] | None:
    """Where the weights are: ``None``, or ``(file, from_zoo)``.

    A zoo key is checked against the extractor and its ``arch`` before anything is downloaded, then fetched
    (checksum-verified) into the cache; anything else must be an existing file.
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights in _zoo_table():
        entry = _zoo_table()[weights]
        if entry.extractor != extractor:
            raise WeightsError(
                f"The zoo key {weights!r} holds weights for the extractor {entry.extractor!r} "
                f"({_args_text(entry.init_args)}), not for {extractor!r}. Build it with "
                f"omlcore_extractors.from_pretrained({weights!r}), or pick a key of {extractor!r}: "
                f"{', '.join(available_zoo_keys(extractor)) or 'none'}."
            )
        wanted, asked = entry.init_args.get("arch"), init_args.get("arch")
        if wanted is not None and asked is not None and wanted != asked:
            raise WeightsError(
                f"The zoo key {weights!r} holds weights for {extractor}(arch={wanted!r}), but arch={asked!r} was "
                f"asked for. Use arch={wanted!r}, or from_pretrained({weights!r})."
            )
        return Path(_zoo().fetch(weights)), True
    path = Path(weights).expanduser()
    if path.is_file():
        return path, False
    keys = available_zoo_keys(extractor)
    import difflib

    close = difflib.get_close_matches(str(weights), list(_zoo_table()), n=2)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise WeightsError(
        f"weights={str(weights)!r} is neither a zoo key nor an existing file.{hint} Zoo keys of {extractor!r}: "
        f"{', '.join(keys) or 'none'} (omlcore zoo list shows them all); use weights=None for random init."
    )


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "weights")


class BaseExtractor(nn.Module):
    """The base of this plugin's extractors (an :class:`~omlcore.protocols.Extractor`).

    Subclasses set :attr:`registry_name` and :attr:`archs`, build their network in ``__init__``, implement
    :meth:`features` (unnormalised ``(B, feat_dim)``) and :attr:`feat_dim`, and call :meth:`_init_weights`
    with the ``weights`` argument last. ``forward``/``extract`` return :meth:`features`, L2-normalised when
    ``normalise_features`` is set.
    """

    registry_name: ClassVar[str] = ""
    """The entry-point name in ``omlcore.extractors``."""
    archs: ClassVar[tuple[str, ...]] = ()
    """The architectures the ``arch`` argument takes (empty when there is no such argument)."""

    def __init__(self, normalise_features: bool = False) -> None:
        super().__init__()
        self.normalise_features = normalise_features
        self.init_args: dict[str, Any] = {}
        """The constructor arguments other than ``weights`` (to describe and rebuild the extractor)."""
        self.weights_path: Path | None = None
        """The file the weights came from (``None``: random init)."""
        self.load_report: LoadReport | None = None
        """What loading the weights did (layout, prefix, keys left out)."""

    # ---- the Extractor protocol -------------------------------------------------------------------
    @property
    def feat_dim(self) -> int:
        """The size ``D`` of the embeddings."""
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, feat_dim)`` before the optional normalisation."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``features(x)``, divided by its L2 norm when ``normalise_features``."""
        out = self.features(x)
        if self.normalise_features:
            out = nn.functional.normalize(out, p=2.0, dim=1)
        return out

    def extract(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, feat_dim)`` of the batch ``x`` (the same as calling the module)."""
        out: Tensor = self(x)
        return out

    # ---- freezing -----------------------------------------------------------------------------------
    def freeze(self) -> None:
        """Stop gradients to every parameter (``requires_grad=False``); :meth:`unfreeze` undoes it."""
        for p in self.parameters():
            p.requires_grad_(False)

    def unfreeze(self) -> None:
        """Let every parameter train again."""
        for p in self.parameters():
            p.requires_grad_(True)

    @property
    def is_frozen(self) -> bool:
        """True when no parameter takes gradients."""
        return not any(p.requires_grad for p in self.parameters())

    # ---- weights ------------------------------------------------------------------------------------
    def weight_layouts(self) -> list[KeyLayout]:
        """The key layouts this extractor reads (its own first); subclasses add published ones."""
        return [native_layout()]

    def describe(self) -> str:
        """``name(arg=value, ...)``, for messages."""
        return f"{self.registry_name}({_args_text(self.init_args)})"

    def load_weights(
        self,
        weights: str | os.PathLike[str] | Mapping[str, Any],
        *,
        strict: bool = True,
        allow_torchscript: bool = False,
    ) -> LoadReport:
        """Load a checkpoint file or a state dict into this extractor (see :mod:`omlcore_extractors.weights`).

        Raises :class:`~omlcore_extractors.errors.WeightsError` when it does not fit (``strict``), naming the
        missing, unexpected and mis-shaped keys and, when one fits, the architecture the file was made for.
        """
        report = load_weights(
            self,
            weights,
            layouts=self.weight_layouts(),
            strict=strict,
            allow_torchscript=allow_torchscript,
            what=self.describe(),
            diagnose=self._diagnose,
        )
        self.load_report = report
        return report

    def _init_weights(self, weights: WeightsSpec) -> None:
        """Load ``weights`` (``None``, a zoo key or a file) at the end of ``__init__``."""
        found = resolve_weights(weights, self.registry_name, self.init_args)
        if found is None:
            return
        path, from_zoo = found
        self.load_weights(path, allow_torchscript=from_zoo)
        self.weights_path = path

    def _diagnose(self, state_dict: Mapping[str, Tensor]) -> str:
        """Which other ``arch`` the checkpoint fits, if any (architectures are built on the meta device)."""
        if "arch" not in self.init_args or len(self.archs) < 2:
            return ""
        fits = []
        for arch in self.archs:
            if arch == self.init_args["arch"]:
                continue
            try:
                with torch.device("meta"):
                    other = type(self)(**{**self.init_args, "arch": arch, "weights": None})
            except Exception:
                continue
            expected = {k: tuple(v.shape) for k, v in other.state_dict().items()}
            try:
                _, report = fit_state_dict(state_dict, expected, other.weight_layouts())
            except WeightsError:
                continue
            if report.ok:
                fits.append(arch)
        if not fits:
            return ""
        return f"The file fits arch={fits[0]!r}" + (f" (or {', '.join(map(repr, fits[1:]))})" if fits[1:] else "") + "."

    @classmethod
    def from_pretrained(cls, key: str, **overrides: Any) -> BaseExtractor:
        """This extractor with the weights of the zoo key ``key`` and the init arguments published with them.

        ``overrides`` replace init arguments (e.g. ``normalise_features=True``).
        """
        if cls.registry_name:
            entry = _zoo_entry(key)
            if entry.extractor != cls.registry_name:
                raise WeightsError(
                    f"The zoo key {key!r} is for the extractor {entry.extractor!r}, not {cls.registry_name!r} "
                    f"({cls.__name__}); call omlcore_extractors.from_pretrained({key!r})."
                )
        return from_pretrained(key, **overrides)


def _zoo_entry(key: str) -> Any:
    zoo = _zoo()
    if zoo is not None and hasattr(zoo, "get_entry"):
        return zoo.get_entry(key)  # raises UnknownZooKeyError listing the keys
    table = _zoo_table()
    if key not in table:
        import difflib

        close = difflib.get_close_matches(key, list(table), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise WeightsError(
            f"Unknown zoo key {key!r}.{hint} Known: {', '.join(sorted(table)) or 'none (the zoo is not installed)'}."
        )
    return table[key]


def from_pretrained(key: str, **overrides: Any) -> BaseExtractor:
    """The extractor a zoo key was published for, built through the registry with the key's init arguments
    and its weights (downloaded and verified on first use). ``overrides`` replace init arguments."""
    from omlcore.errors import ComponentBuildError, OmlcoreError
    from omlcore.registry import build

    entry = _zoo_entry(key)
    args = {**entry.init_args, **overrides, "weights": key}
    try:
        extractor: BaseExtractor = build("extractor", {"name": entry.extractor, "args": args})
    except ComponentBuildError as exc:
        if isinstance(exc.__cause__, OmlcoreError):
            raise exc.__cause__ from None
        raise
    return extractor
