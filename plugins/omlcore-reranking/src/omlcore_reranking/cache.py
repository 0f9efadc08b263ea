"""A cache of embeddings on disk, keyed by everything that changes them, written atomically.

Training a pairwise re-ranker mines pairs with the embeddings of a *frozen* extractor; computing them
once and reusing them across runs saves most of the run. A cache is only safe if it is never used for
inputs it was not made from, so the key (:func:`embeddings_cache_key`) records:

- the extractor's ``{name, args}`` (architecture, weights key or path, normalisation...);
- the content (SHA-256) of every file the extractor spec names (e.g. a ``weights`` path) and of any
  other file passed in ``files``; size and modification time are stored too, and only used to skip
  re-hashing a file whose size and mtime did not change;
- the transforms' ``{name, args}``;
- the SHA-256 of the dataset CSV;
- the code: versions of omlcore, omlcore-reranking, torch and the distribution providing the extractor;
- anything else the caller passes in ``extra`` (e.g. a digest of the images' sizes and mtimes from
  :func:`files_stat_digest`, the inference precision).

:class:`EmbeddingsCache` stores ``{"format", "key", "embeddings"}`` in one ``torch.save`` file, written to
a temporary file in the same folder and moved into place with ``os.replace``, so a reader never sees a
half-written cache. Loading a file whose key differs raises :class:`StaleEmbeddingsCacheError`, naming
each difference; it is never used silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omlcore_reranking.errors import RerankingError, StaleEmbeddingsCacheError

__all__ = ["FORMAT", "EmbeddingsCache", "embeddings_cache_key", "file_fingerprint", "files_stat_digest"]

FORMAT = 1
"""Version of the cache file layout; a file of another format is stale."""

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: str | os.PathLike[str], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"size", "mtime_ns", "sha256"}`` of a file; ``previous`` (a stored fingerprint) with the same
    size and mtime saves hashing the file again."""
    st = os.stat(path)
    if (
        previous is not None
        and previous.get("size") == st.st_size
        and previous.get("mtime_ns") == st.st_mtime_ns
        and isinstance(previous.get("sha256"), str)
    ):
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": previous["sha256"]}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def files_stat_digest(paths: Iterable[str | os.PathLike[str]]) -> str:
    """SHA-256 over each file's path, size and mtime (cheap: no file is read). Put it in ``extra`` to make
    the key change when an image is replaced."""
    digest = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        digest.update(f"{os.fspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (tuples -> lists, paths -> str, pydantic models -> dicts)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _named_files(value: Any) -> list[Path]:
    """Every string in ``value`` (recursively) that names an existing file."""
    found: list[Path] = []
    if isinstance(value, str):
        if value and len(value) < 4096:
            try:
                p = Path(value)
                if p.is_file():
                    found.append(p.resolve())
            except OSError:
                pass
    elif isinstance(value, Mapping):
        for v in value.values():
            found += _named_files(v)
    elif isinstance(value, list):
        for v in value:
            found += _named_files(v)
    return found


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _extractor_origin(name: str) -> str:
    try:
        from omlcore.registry import get_registry

        return get_registry().entry("extractor", name).origin
    except Exception:  # not installed here: the key still records the name; the build would fail anyway
        return "unknown"


def embeddings_cache_key(
    *,
    extractor: Any,
    transforms: Any = None,
    csv: str | os.PathLike[str] | None = None,
    files: Iterable[str | os.PathLike[str]] = (),
    extra: Mapping[str, Any] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The key of the embeddings an extractor makes of a dataset (see the module docstring).

    ``extractor`` and ``transforms`` are ``{name, args}`` specs (mappings or ``ComponentSpec``);
    ``csv`` the dataset CSV; ``files`` more files whose content matters; ``extra`` more JSON-able facts;
    ``previous`` a stored key, whose file fingerprints spare re-hashing unchanged files.
    """
    spec = _plain(extractor)
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise TypeError(f"extractor must be a {{name, args}} spec, got {extractor!r}")
    old_files: Mapping[str, Any] = (previous or {}).get("files", {}) or {}
    wanted = [*_named_files(spec.get("args", {})), *(Path(f).resolve() for f in files)]
    fingerprints: dict[str, Any] = {}
    for p in wanted:
        if not p.is_file():
            raise FileNotFoundError(f"embeddings cache key: {p} does not exist")
        fingerprints[str(p)] = file_fingerprint(p, old_files.get(str(p)))
    csv_part: dict[str, Any] | None = None
    if csv is not None:
        csv_path = Path(csv).resolve()
        old_csv = (previous or {}).get("csv") or {}
        fp = file_fingerprint(csv_path, old_csv if old_csv.get("path") == str(csv_path) else None)
        csv_part = {"path": str(csv_path), **fp}
    versions = {
        "omlcore": _dist_version("omlcore"),
        "omlcore-reranking": _dist_version("omlcore-reranking"),
        "torch": str(torch.__version__),
        "extractor": _extractor_origin(spec["name"]),
    }
    key: dict[str, Any] = _plain(
        {
            "extractor": spec,
            "transforms": _plain(transforms) if transforms is not None else None,
            "csv": csv_part,
            "files": fingerprints,
            "versions": versions,
            "extra": _plain(dict(extra or {})),
        }
    )
    return key


def _comparable(key: Mapping[str, Any]) -> dict[str, Any]:
    """What decides staleness: contents, not paths or times of files already identified by content."""
    out = dict(key)
    out["files"] = {p: (fp or {}).get("sha256") for p, fp in (key.get("files") or {}).items()}
    csv = key.get("csv")
    out["csv"] = None if csv is None else {"sha256": csv.get("sha256")}
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def key_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"path: stored -> current"`` for every field that differs between two keys."""
    a, b = _flatten(_comparable(stored)), _flatten(_comparable(current))
    absent = object()

    def show(value: Any) -> str:
        return "<absent>" if value is absent else repr(value)

    out = []
    for name in sorted(set(a) | set(b)):
        old, new = a.get(name, absent), b.get(name, absent)
        if old != new:
            out.append(f"{name}: {show(old)} -> {show(new)}")
    return out


class EmbeddingsCache:
    """One cache file of embeddings ``(N, D)`` and the key they were made with.

    Args:
        path: the cache file (its folder is created when saving).
        refresh: ignore an existing file and recompute (it is then overwritten).

    Use :meth:`key` to build the current key (reusing the stored file hashes), then
    :meth:`get_or_compute`. Loading a file made from other inputs raises
    :class:`~omlcore_reranking.errors.StaleEmbeddingsCacheError`.
    """

    def __init__(self, path: str | os.PathLike[str], refresh: bool = False) -> None:
        self.path = Path(path)
        self.refresh = refresh

    def __repr__(self) -> str:
        return f"EmbeddingsCache({str(self.path)!r}, refresh={self.refresh})"

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise RerankingError(
                f"{self.path} is not a readable embeddings cache ({type(exc).__name__}: {exc}); delete it or "
                f"recompute it (refresh=True)"
            ) from exc
        if not isinstance(data, dict) or not {"format", "key", "embeddings"} <= set(data):
            raise RerankingError(
                f"{self.path} is not an embeddings cache file; delete it or recompute it (refresh=True)"
            )
        return data

    def stored_key(self) -> dict[str, Any] | None:
        """The key stored in the file (None if there is no file); cheap: the embeddings are memory-mapped."""
        if self.refresh:
            return None
        data = self._read()
        return None if data is None else dict(data["key"])

    def key(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`embeddings_cache_key` with the stored fingerprints as ``previous``."""
        stored = None
        if self.path.exists() and not self.refresh:
            try:
                stored = self.stored_key()
            except RerankingError:
                stored = None
        return embeddings_cache_key(previous=stored, **kwargs)

    def load(self, key: Mapping[str, Any], n_rows: int | None = None) -> Tensor | None:
        """The cached embeddings for ``key``; None if there is no file (or ``refresh``).

        Raises :class:`StaleEmbeddingsCacheError` if the file was made with another key, another format,
        or (``n_rows`` given) holds another number of rows.
        """
        if self.refresh:
            return None
        data = self._read()
        if data is None:
            return None
        if data["format"] != FORMAT:
            raise StaleEmbeddingsCacheError(str(self.path), [f"format: {data['format']!r} -> {FORMAT!r}"])
        changes = key_differences(data["key"], key)
        emb = data["embeddings"]
        if not isinstance(emb, Tensor) or emb.ndim != 2:
            raise RerankingError(f"{self.path} holds no (N, D) embeddings; delete it or recompute it (refresh=True)")
        if n_rows is not None and emb.shape[0] != n_rows:
            changes.append(f"rows: {emb.shape[0]} -> {n_rows}")
        if changes:
            raise StaleEmbeddingsCacheError(str(self.path), changes)
        return emb.clone()

    def save(self, key: Mapping[str, Any], embeddings: Tensor) -> None:
        """Write ``embeddings`` and ``key`` atomically (a temporary file in the same folder, then
        ``os.replace``); an error leaves any previous file untouched."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            raise ValueError(f"embeddings must be a (N, D) tensor, got {type(embeddings).__name__}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            torch.save({"format": FORMAT, "key": dict(key), "embeddings": embeddings.detach().cpu().contiguous()}, tmp)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def get_or_compute(
        self, key: Mapping[str, Any], compute: Callable[[], Tensor], n_rows: int | None = None
    ) -> tuple[Tensor, bool]:
        """``(embeddings, from_cache)``: the cached ones for ``key``, or ``compute()`` saved for next time.

        A stale file raises (see :meth:`load`) unless ``refresh`` is set.
        """
        cached = self.load(key, n_rows)
        if cached is not None:
            return cached, True
        emb = compute()
        if n_rows is not None and emb.shape[0] != n_rows:
            raise RerankingError(f"computed {emb.shape[0]} embeddings for {n_rows} rows; nothing was cached")
        self.save(key, emb)
        return emb, False
