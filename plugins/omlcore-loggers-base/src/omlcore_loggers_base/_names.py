"""Names: artifacts, their kinds, and keys that backends with stricter rules accept."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

__all__ = ["ARTIFACT_KINDS", "artifact_kind", "artifact_name", "safe_key", "split_metric_name"]

ARTIFACT_KINDS: dict[str, tuple[str, ...]] = {
    "config": (".yaml", ".yml", ".json", ".toml"),
    "dataset": (".csv", ".tsv", ".parquet"),
    "model": (".ckpt", ".pt", ".pth", ".safetensors", ".onnx"),
}
"""Artifact kind by file extension (W&B artifact types, namespaces); anything else is ``"file"``."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def artifact_name(path: str | Path, name: str | None = None) -> str:
    """The name a file is stored under: ``name`` if given, else the file's own name.

    ``name`` may contain ``/`` (a folder inside the run's artifacts) but must be relative and must not
    step out with ``..``; a ``ValueError`` says what was wrong.
    """
    if name is None:
        return Path(path).name
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or pure.is_absolute() or ".." in pure.parts or not pure.name:
        raise ValueError(f"artifact name {name!r} must be a relative file name such as 'config.yaml' or 'data/df.csv'")
    return str(pure)


def artifact_kind(name: str) -> str:
    """``"config"``, ``"dataset"``, ``"model"`` or ``"file"`` from the name's extension."""
    suffix = PurePosixPath(name).suffix.lower()
    for kind, suffixes in ARTIFACT_KINDS.items():
        if suffix in suffixes:
            return kind
    return "file"


def safe_key(text: str, keep_slash: bool = True) -> str:
    """``text`` with characters other than letters, digits, ``_ . -`` (and ``/`` when ``keep_slash``)
    replaced by ``_``; empty path segments are dropped. ``"top 5 worst/OVERALL map@5"`` →
    ``"top_5_worst/OVERALL_map_5"``."""
    parts = text.split("/") if keep_slash else [text]
    cleaned = [_UNSAFE.sub("_", part).strip("_") or "_" for part in parts if part != ""]
    return "/".join(cleaned) if cleaned else "_"


def split_metric_name(name: str) -> tuple[str, str]:
    """A metric name as ``(group, series)`` for backends that plot series in groups (ClearML):
    ``"OVERALL/cmc/1"`` → ``("OVERALL/cmc", "1")``; a name without ``/`` is its own group and series."""
    head, sep, tail = name.rpartition("/")
    return (head, tail) if sep and head and tail else (name, name)
