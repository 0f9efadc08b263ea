"""Verified downloads of weight files into the omlcore cache.

How a file is fetched (:func:`fetch_file`):

1. The destination is ``<cache>/checkpoints/<fname>`` (see :func:`cache_dir`), or a folder the caller names.
2. If the file is there, it is verified (checksums, or the file format when no checksum is known). A file
   that fails (partial, corrupt, changed) is deleted and fetched again.
3. Sources are tried in order: the mirror (``OMLCORE_ZOO_MIRROR``: a base URL, ``<base>/<fname>``, or a local
   folder holding ``<fname>``), then each of the entry's URLs. Each source is streamed into a hidden temporary
   file in the destination folder (``.<fname>.<random>.part``) while it is hashed; the byte count is checked
   against ``Content-Length``, then the checksums; only a file that passes is moved into place with
   :func:`os.replace`, which is atomic. Whatever happens (an error, a timeout, Ctrl-C), the temporary file
   is removed: the destination path holds a complete, verified file or nothing.
4. Two processes fetching the same file take turns on a lock file (``<fname>.lock`` next to it); the second
   finds the file already verified and does not download it again. Where no file locking exists, the
   atomic rename still guarantees that readers see only complete files.

Only the standard library is used; the progress bar is tqdm's when tqdm is importable, else a plain line on
stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from omlcore.errors import OmlcoreError

__all__ = [
    "CACHE_ENV",
    "MIRROR_ENV",
    "TIMEOUT_ENV",
    "Attempt",
    "Checksum",
    "DownloadError",
    "VerificationError",
    "cache_dir",
    "checkpoints_dir",
    "fetch_file",
    "hash_file",
    "mirror",
    "verify_file",
]

CACHE_ENV = "OMLCORE_CACHE_DIR"
MIRROR_ENV = "OMLCORE_ZOO_MIRROR"
TIMEOUT_ENV = "OMLCORE_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20
_USER_AGENT = "omlcore-extractors/0.1 (model zoo download)"

Algorithm = Literal["sha256", "md5"]


@dataclass(frozen=True)
class Checksum:
    """An expected digest of a file: the full hex digest, or a prefix of it (OML publishes md5 prefixes).

    A prefix still catches truncated and corrupt downloads, but is too short to guard against a file
    replaced on purpose; ``source`` says where the value comes from.
    """

    algorithm: Algorithm
    value: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.algorithm not in ("sha256", "md5"):
            raise ValueError(f"unsupported checksum algorithm {self.algorithm!r}; use 'sha256' or 'md5'")
        full = 64 if self.algorithm == "sha256" else 32
        value = self.value.lower()
        if not value or len(value) > full or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"a {self.algorithm} checksum is 1 to {full} hex digits, got {self.value!r}")
        object.__setattr__(self, "value", value)

    @property
    def is_prefix(self) -> bool:
        """True when only the first hex digits of the digest are known."""
        return len(self.value) < (64 if self.algorithm == "sha256" else 32)

    def matches(self, hexdigest: str) -> bool:
        """Whether a computed hex digest agrees with this checksum."""
        return hexdigest.lower().startswith(self.value)

    def describe(self) -> str:
        """``sha256 5806e77c…`` or ``md5 prefix cf0f22``, for messages and tables."""
        return f"{self.algorithm} {'prefix ' if self.is_prefix else ''}{self.value}"


@dataclass(frozen=True)
class Attempt:
    """One source tried by :func:`fetch_file` and why it failed."""

    source: str
    problem: Literal["http", "network", "timeout", "truncated", "checksum", "format", "missing", "html"]
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


class VerificationError(OmlcoreError, ValueError):
    """A file does not match its expected checksum or format."""


class DownloadError(OmlcoreError, OSError):
    """No source delivered a verified file. ``attempts`` lists each source tried and what went wrong."""

    def __init__(self, key: str, fname: str, dest: Path, attempts: Sequence[Attempt], urls: Sequence[str]) -> None:
        self.key = key
        self.fname = fname
        self.dest = dest
        self.attempts = list(attempts)
        self.urls = list(urls)
        tried = "\n".join(f"  - {a}" for a in self.attempts) or "  (none: the entry has no URL and no mirror is set)"
        where = ", ".join(self.urls) if self.urls else "its publisher"
        super().__init__(
            f"Could not fetch the weights {key!r} ({fname}); nothing was written to {dest.parent}.\n"
            f"Sources tried:\n{tried}\n"
            f"What to do: check the network or proxy; on a machine without internet access set {MIRROR_ENV} to a "
            f"folder or base URL that holds {fname}; or download it by hand from {where} and save it as "
            f"{dest} (it is verified on first use)."
        )

    def __str__(self) -> str:
        return str(self.args[0])


# ---- locations ------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The omlcore cache folder: ``$OMLCORE_CACHE_DIR`` if set, else the user cache folder
    (``$XDG_CACHE_HOME/omlcore`` or ``~/.cache/omlcore`` on Linux, ``~/Library/Caches/omlcore`` on macOS,
    ``%LOCALAPPDATA%\\omlcore\\Cache`` on Windows). Not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "omlcore" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "omlcore"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "omlcore"


def checkpoints_dir() -> Path:
    """Where zoo weights are kept: ``<cache_dir()>/checkpoints``."""
    return cache_dir() / "checkpoints"


def mirror() -> str | None:
    """``$OMLCORE_ZOO_MIRROR`` (a base URL or a local folder), or None when unset or empty."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return value or None


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise OmlcoreError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise OmlcoreError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


# ---- verification ---------------------------------------------------------------------------------------
def hash_file(path: Path, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, one per algorithm, read once."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _looks_like_weights(head: bytes) -> bool:
    """The first bytes of a file torch can load: a zip archive (``torch.save`` since 1.6, TorchScript), a
    pickle (legacy ``torch.save``), or a safetensors file (8-byte header length, then JSON)."""
    if head.startswith(b"PK\x03\x04"):
        return True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return len(head) >= 10 and head[8:10] == b'{"'


def _problems(path: Path, checksums: Sequence[Checksum]) -> list[str]:
    """Why ``path`` is not the expected file; empty when it is."""
    if checksums:
        digests = hash_file(path, sorted({c.algorithm for c in checksums}))
        return [
            f"{c.algorithm} checksum mismatch: expected {c.describe()}, got {digests[c.algorithm]}"
            for c in checksums
            if not c.matches(digests[c.algorithm])
        ]
    with open(path, "rb") as f:
        head = f.read(16)
    if not _looks_like_weights(head):
        return [
            "not a weights file (no checksum is known, and it is not a zip, pickle or safetensors file: "
            f"starts with {head[:8]!r})"
        ]
    return []


def verify_file(path: Path, checksums: Sequence[Checksum]) -> None:
    """Raise :class:`VerificationError` unless ``path`` matches every checksum (with no checksum: unless
    it has the format of a weights file)."""
    problems = _problems(Path(path), checksums)
    if problems:
        raise VerificationError(f"{path}: " + "; ".join(problems))


# ---- progress -------------------------------------------------------------------------------------------
class _Progress:
    """A byte counter on stderr: tqdm's bar when available, else a line rewritten at most twice a second."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._bar: Any = None
        self._last = 0.0
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            sys.stderr.write(f"{label}: {_size(total) if total else 'size unknown'}\n")
        else:
            self._bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if sys.stderr.isatty() and now - self._last >= 0.5:
            self._last = now
            pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
            sys.stderr.write(f"\r{self.label}: {_size(self.done)}{pct}")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif sys.stderr.isatty():
            sys.stderr.write("\n")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


# ---- locking --------------------------------------------------------------------------------------------
if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _wait_lock(fd: int) -> None:
        while not _try_lock(fd):
            time.sleep(0.2)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _wait_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[bool]:
    """Hold an exclusive lock on ``lock_path`` (created if needed, never deleted: deleting a lock file races
    with the next process opening it). Yields whether an OS lock is held: False on a file system without
    locks (some network mounts), where the atomic rename alone keeps readers safe."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        try:
            if not _try_lock(fd):
                sys.stderr.write(f"Waiting for another process that is downloading {what}...\n")
                _wait_lock(fd)
            locked = True
        except OSError:
            locked = False
        yield locked
    finally:
        if locked:
            with contextlib.suppress(OSError):
                _unlock(fd)
        os.close(fd)


# ---- sources --------------------------------------------------------------------------------------------
def _mirror_source(base: str, fname: str) -> tuple[str, Path | None]:
    """(display name, local path or None) of ``fname`` at the mirror ``base``."""
    if base.startswith(("http://", "https://")):
        return base.rstrip("/") + "/" + urllib.parse.quote(fname), None
    if base.startswith("file://"):
        folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(base).path))
    else:
        folder = Path(base).expanduser()
    return str(folder / fname), folder / fname


class _SourceFailed(Exception):
    def __init__(self, attempt: Attempt) -> None:
        super().__init__(str(attempt))
        self.attempt = attempt


def _copy_stream(src: IO[bytes], out: IO[bytes], progress: _Progress) -> int:
    received = 0
    while chunk := src.read(_CHUNK):
        out.write(chunk)
        received += len(chunk)
        progress.update(len(chunk))
    return received


def _receive(source: str, local: Path | None, out: IO[bytes], label: str, show: bool, timeout: float) -> None:
    """Stream one source into ``out``; raise :class:`_SourceFailed` describing what went wrong."""
    if local is not None:
        if not local.is_file():
            raise _SourceFailed(Attempt(source, "missing", "not found in the mirror folder"))
        expected = local.stat().st_size
        progress = _Progress(label, expected, show)
        try:
            with open(local, "rb") as src:
                received = _copy_stream(src, out, progress)
        finally:
            progress.close()
        if received != expected:
            raise _SourceFailed(Attempt(source, "truncated", f"read {received} of {expected} bytes"))
        return
    request = urllib.request.Request(source, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            ctype = (response.headers.get("Content-Type") or "").lower()
            if ctype.startswith("text/html"):
                raise _SourceFailed(
                    Attempt(
                        source,
                        "html",
                        "the server sent an HTML page, not a weights file (a login, quota or virus-scan page?)",
                    )
                )
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            progress = _Progress(label, announced, show)
            try:
                received = _copy_stream(response, out, progress)
            finally:
                progress.close()
    except _SourceFailed:
        raise
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(Attempt(source, "http", f"HTTP {exc.code} {exc.reason}")) from exc
    except http.client.IncompleteRead as exc:
        got = len(exc.partial)
        more = f" ({exc.expected} more expected)" if exc.expected is not None else ""
        raise _SourceFailed(
            Attempt(source, "truncated", f"the connection closed early{more}; got {got} bytes in the last read")
        ) from exc
    except TimeoutError as exc:
        raise _SourceFailed(
            Attempt(source, "timeout", f"no data for {timeout:g} s (set {TIMEOUT_ENV} to wait longer)")
        ) from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _SourceFailed(
                Attempt(source, "timeout", f"no answer within {timeout:g} s (set {TIMEOUT_ENV} to wait longer)")
            ) from exc
        raise _SourceFailed(Attempt(source, "network", f"cannot connect: {reason}")) from exc
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _SourceFailed(Attempt(source, "network", f"{type(exc).__name__}: {exc}")) from exc
    if announced is not None and received != announced:
        raise _SourceFailed(Attempt(source, "truncated", f"received {received} of {announced} bytes"))


def _sources(fname: str, urls: Sequence[str], use_mirror: bool) -> list[tuple[str, Path | None]]:
    found: list[tuple[str, Path | None]] = []
    base = mirror() if use_mirror else None
    if base:
        found.append(_mirror_source(base, fname))
    found.extend((u, None) for u in urls)
    return found


def _remove_stale_parts(folder: Path, fname: str) -> None:
    """Delete temporary files of ``fname`` left by a process that was killed (SIGKILL, power loss).
    Called only while holding the file's lock, so no live download owns them."""
    for part in folder.glob(f".{_glob_escape(fname)}.*.part"):
        with contextlib.suppress(OSError):
            part.unlink()


def _glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


# ---- the entry point ------------------------------------------------------------------------------------
def fetch_file(
    *,
    key: str,
    fname: str,
    urls: Sequence[str],
    checksums: Sequence[Checksum] = (),
    folder: Path | None = None,
    progress: bool = True,
    timeout: float | None = None,
    use_mirror: bool = True,
) -> Path:
    """The verified local copy of a weights file, downloaded if missing or broken.

    Args:
        key: the zoo key, named in messages and errors.
        fname: the file name in the cache (and in the mirror).
        urls: where to download it from, tried in order after the mirror.
        checksums: the expected digests (all must match); without any, a downloaded file must at least have
            the format of a weights file and, when the server says, the announced length.
        folder: where to keep the file (default: :func:`checkpoints_dir`).
        progress: show a progress bar on stderr.
        timeout: seconds a connection may stay silent (default ``$OMLCORE_DOWNLOAD_TIMEOUT`` or 60).
        use_mirror: try ``$OMLCORE_ZOO_MIRROR`` first.

    Raises:
        DownloadError: listing every source tried and what went wrong; nothing is left in the cache.
    """
    if not fname or "/" in fname or "\\" in fname or fname in (".", ".."):
        raise ValueError(f"fname must be a plain file name, got {fname!r}")
    folder = Path(folder) if folder is not None else checkpoints_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / fname
    wait_timeout = _timeout() if timeout is None else timeout
    with _exclusive(folder / f"{fname}.lock", fname) as locked:
        if dest.exists():
            problems = _problems(dest, checksums)
            if not problems:
                return dest
            sys.stderr.write(f"The cached {dest} is broken ({'; '.join(problems)}); fetching it again.\n")
            dest.unlink()
        if locked:
            _remove_stale_parts(folder, fname)
        attempts: list[Attempt] = []
        for source, local in _sources(fname, urls, use_mirror):
            try:
                _fetch_one(source, local, dest, checksums, f"{key} ({fname})", progress, wait_timeout)
            except _SourceFailed as failed:
                attempts.append(failed.attempt)
                if progress:
                    sys.stderr.write(f"{failed.attempt}\n")
                continue
            return dest
        raise DownloadError(key=key, fname=fname, dest=dest, attempts=attempts, urls=list(urls))


def _fetch_one(
    source: str,
    local: Path | None,
    dest: Path,
    checksums: Sequence[Checksum],
    label: str,
    progress: bool,
    timeout: float,
) -> None:
    """Stream ``source`` into a temporary file next to ``dest``, verify it, and move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _receive(source, local, out, label, progress, timeout)
            out.flush()
            os.fsync(out.fileno())
        problems = _problems(tmp, checksums)
        if problems:
            kind: Literal["checksum", "format"] = "checksum" if checksums else "format"
            detail = "; ".join(problems) + (
                " (a corrupt transfer, or the file changed at the source)" if checksums else ""
            )
            raise _SourceFailed(Attempt(source, kind, detail))
        os.replace(tmp, dest)
    finally:
        # Also on KeyboardInterrupt: never leave a partial file behind. After os.replace, tmp is gone.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def copy_verified(path: Path, dest: Path, checksums: Sequence[Checksum]) -> Path:
    """Copy an already verified file to ``dest`` atomically (temporary file, then :func:`os.replace`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        verify_file(tmp, checksums)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest
