"""The run folder: one folder per run holding everything the run produced.

::

    <run.logs_root>/<timestamp>_<postfix>/      (or <run.logs_root>/<run.logs_folder>/)
        config.yaml          the resolved config (defaults filled in) the run used
        metrics.json         one record per validation, appended as the run goes
        checkpoints/
            best.ckpt        best by checkpoint.monitor (best-eNNN.ckpt with save_top_k > 1)
            last.ckpt        the end of the last epoch, or the batch where Ctrl-C stopped the run
        figures/epoch_NNN/   worst-queries figures (metrics.log_images)
        <logger output>      whatever the configured experiment loggers write here

Every file is written to a temporary file in the same folder and renamed into place, so an interrupted
run never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from omlcore.errors import ConfigError

__all__ = [
    "RUN_DIR_ENV",
    "RunFolder",
    "env_rank_is_zero",
    "flatten_config",
    "write_bytes_atomic",
    "write_text_atomic",
]

RUN_DIR_ENV = "OMLCORE_RUN_DIR"
"""Set by the process that creates the run folder, so that processes launched for DDP use the same folder."""


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` through a temporary file renamed into place."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def env_rank_is_zero() -> bool:
    """Whether this process is the first of its run, judged from the launchers' environment variables
    (Lightning's ``LOCAL_RANK``/``NODE_RANK``, torchrun's ``RANK``); True when none is set."""
    return all(os.environ.get(name, "0") in ("", "0") for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def flatten_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer": {"max_epochs": 3}}`` -> ``{"trainer.max_epochs": 3}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = value
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class RunFolder:
    """Paths and files of one run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.created = False
        """True when :meth:`create` made the folder in this process (so :meth:`discard` may delete it)."""

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    # ---- creating ------------------------------------------------------------------------------------
    @staticmethod
    def default_name(postfix: str, now: datetime | None = None) -> str:
        """``2026-11-28_14-03-59`` or ``2026-11-28_14-03-59_<postfix>`` (unsafe characters replaced by ``_``)."""
        stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
        safe = _SAFE.sub("_", postfix).strip("_")
        return f"{stamp}_{safe}" if safe else stamp

    @classmethod
    def create(cls, logs_root: Path, logs_folder: str | None, postfix: str) -> RunFolder:
        """Make a new run folder. A named folder (``logs_folder``) must not hold a run already; a default
        (timestamped) name gets a ``-2``, ``-3``... suffix if two runs start in the same second."""
        if logs_folder is not None:
            path = Path(logs_root) / logs_folder
            if (path / "config.yaml").exists() or (path / "checkpoints").exists():
                raise ConfigError(
                    f"run.logs_folder: {str(path)!r} already holds a run. Continue it with "
                    f"'omlcore train --resume {path}', or choose another run.logs_folder."
                )
            existed = path.exists()
            path.mkdir(parents=True, exist_ok=True)
            folder = cls(path)
            folder.created = not existed
            return folder
        base = cls.default_name(postfix)
        Path(logs_root).mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = Path(logs_root) / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            folder = cls(path)
            folder.created = True
            return folder
        raise ConfigError(f"cannot create a run folder named {base!r} in {str(logs_root)!r}: too many exist")

    def discard(self) -> None:
        """Undo :meth:`create` for a run that could not start: delete the folder if this process made it
        (a named folder that existed before, or a resumed run, is left as it is)."""
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            self.created = False

    # ---- config --------------------------------------------------------------------------------------
    def write_config(self, data: Mapping[str, Any]) -> Path:
        """Save the resolved config as YAML (a config the commands accept as it is)."""
        header = "# The resolved config of this run (defaults filled in).\n"
        return write_text_atomic(self.config_file, header + yaml.safe_dump(dict(data), sort_keys=False))

    # ---- metrics -------------------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.json`` (empty if there is none yet)."""
        if not self.metrics_file.exists():
            return []
        records: list[dict[str, Any]] = json.loads(self.metrics_file.read_text(encoding="utf-8"))
        return records

    def write_metrics(self, records: Sequence[Mapping[str, Any]]) -> Path:
        """Replace ``metrics.json`` with ``records``."""
        return write_text_atomic(self.metrics_file, json.dumps(list(records), indent=1) + "\n")

    def append_metrics(self, record: Mapping[str, Any]) -> int:
        """Add one validation's record; returns how many records there are now."""
        records = self.read_metrics()
        records.append(dict(record))
        self.write_metrics(records)
        return len(records)

    # ---- checkpoints ---------------------------------------------------------------------------------
    def checkpoint_to_resume(self) -> Path:
        """``checkpoints/last.ckpt``; :class:`ConfigError` saying what is missing if it cannot be resumed."""
        if not self.path.is_dir():
            raise ConfigError(f"--resume: the run folder {str(self.path)!r} does not exist.")
        if not self.last_checkpoint.is_file():
            found = sorted(p.name for p in self.checkpoints.glob("*.ckpt")) if self.checkpoints.is_dir() else []
            hint = f" (it has: {', '.join(found)})" if found else ""
            raise ConfigError(
                f"--resume: there is no checkpoint to resume from: {str(self.last_checkpoint)!r} does not exist"
                f"{hint}. A run writes it at the end of every epoch and when Ctrl-C stops it; a run stopped "
                f"before its first epoch ended cannot be resumed, start it again instead."
            )
        if not self.config_file.is_file():
            raise ConfigError(f"--resume: {str(self.config_file)!r} is missing; it is not an omlcore run folder.")
        return self.last_checkpoint
