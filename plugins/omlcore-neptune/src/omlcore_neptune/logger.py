"""The ``neptune`` logger: one Neptune run per omlcore run (neptune 1.x client).

neptune is imported when the logger is built, not when this module is imported. pytorch-lightning 2.6.4
and later ship no working Neptune logger, so :meth:`NeptuneLogger.lightning_logger` hands out omlcore's
forwarding Lightning logger, which writes through this logger into the same run.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from omlcore_loggers_base import (
    BaseLogger,
    LoggerSetupError,
    MissingCredentialsError,
    ParamValue,
    check_reachable,
    first_env,
    import_sdk,
    safe_key,
)

__all__ = ["NeptuneLogger", "server_address"]

log = logging.getLogger("omlcore.loggers")

Mode = Literal["async", "sync", "offline", "debug"]
ONLINE: tuple[str, ...] = ("async", "sync")


def server_address(api_token: str) -> str | None:
    """The server a Neptune API token belongs to (the token is base64-encoded JSON with ``api_address``),
    or ``None`` if the token does not say."""
    try:
        padded = api_token.strip() + "=" * (-len(api_token.strip()) % 4)
        data = json.loads(base64.b64decode(padded))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    address = data.get("api_address") or data.get("api_url") if isinstance(data, dict) else None
    return str(address) if address else None


class NeptuneLogger(BaseLogger):
    """Logs to a Neptune run.

    - params: the flattened config under ``parameters/`` (``parameters/loss/args/margin``; nulls as
      ``"None"``, since Neptune stores no null);
    - tags: ``sys/tags``;
    - metrics: float series ``metrics/<name>`` at their step. Neptune keeps one value per step and needs
      steps to grow: a value logged again at the same or an earlier step of a series is skipped (Lightning
      logs ``epoch`` with every call);
    - figures: image series ``figures/<title>`` at their step;
    - artifacts: files under ``artifacts/<name>``, uploaded from where they are (in offline mode, keep them
      until ``neptune sync``).

    ``mode``: ``async``/``sync`` (online), ``offline`` (files under ``NEPTUNE_DATA_DIRECTORY``, default
    ``.neptune``, uploaded later with ``neptune sync``) or ``debug`` (nothing stored); default
    ``NEPTUNE_MODE``, else ``async``. Online needs ``NEPTUNE_API_TOKEN`` and a project (``project`` or
    ``NEPTUNE_PROJECT``), and the token's server must accept a connection within 5 s; all checked when the
    logger is built. ``name``: default the run folder's name. ``capture_hardware_metrics``: let Neptune
    sample CPU/GPU/memory use.
    """

    backend = "neptune"

    def __init__(
        self,
        project: str | None = None,
        mode: Mode | None = None,
        name: str | None = None,
        capture_hardware_metrics: bool = False,
        log_checkpoint: bool = False,
        strict: bool = False,
        *,
        run_dir: Path | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir=run_dir, tags=tags, log_checkpoint=log_checkpoint, strict=strict)
        self._name = name
        env_mode = (first_env(["NEPTUNE_MODE"]) or "async").lower()
        resolved = mode or env_mode
        if resolved not in (*ONLINE, "offline", "debug"):
            raise LoggerSetupError(
                f"The neptune logger cannot log in mode {resolved!r} (from NEPTUNE_MODE): use async, sync, "
                f"offline or debug."
            )
        self.mode: str = resolved
        self.project = project or first_env(["NEPTUNE_PROJECT"])
        self._run: Any = None
        self._last_step: dict[str, float] = {}
        if not self.active:
            return
        neptune = import_sdk("neptune", self.backend)
        if self.mode in ONLINE:
            self._check_online()
        self._run = neptune.init_run(
            project=self.project,
            mode=self.mode,
            name=self.run_name,
            tags=list(self.tags) or None,
            source_files=[],
            git_ref=False,
            capture_stdout=False,
            capture_stderr=False,
            capture_hardware_metrics=capture_hardware_metrics,
        )

    def _check_online(self) -> None:
        token = first_env(["NEPTUNE_API_TOKEN"])
        missing = []
        if not token:
            missing.append("NEPTUNE_API_TOKEN (your API token)")
        if not self.project:
            missing.append("NEPTUNE_PROJECT (workspace/project), or logger.args.project")
        if missing:
            raise MissingCredentialsError(
                self.backend, [" and ".join(missing)], "use logger.args.mode: offline (or NEPTUNE_MODE=offline)"
            )
        address = server_address(token or "")
        if address is not None:
            check_reachable(
                self.backend,
                address,
                "Check the network and NEPTUNE_API_TOKEN (it names the server), or log offline with "
                "logger.args.mode: offline.",
            )

    @property
    def run_name(self) -> str | None:
        return self._name or super().run_name

    @property
    def run_id(self) -> str | None:
        """The run's id (``sys/id``), known only online."""
        if self._run is None or self.mode not in ONLINE:
            return None
        try:
            return str(self._run["sys/id"].fetch())
        except Exception:  # not synchronised yet
            return None

    @property
    def experiment(self) -> Any:
        """The ``neptune.Run``."""
        return self._run

    def _append(self, path: str, value: Any, step: int | None) -> bool:
        """Append to the series ``path``; False (and nothing sent) when ``step`` does not grow."""
        if step is not None:
            last = self._last_step.get(path)
            if last is not None and step <= last:
                log.debug("neptune logger: skipped %s at step %s (last step %s)", path, step, last)
                return False
            self._last_step[path] = step
        if step is None:
            self._run[path].append(value)
        else:
            self._run[path].append(value, step=step)
        return True

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        self._run["parameters"] = {name: "None" if value is None else value for name, value in params.items()}

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        for name, value in metrics.items():
            self._append(f"metrics/{name}", value, step)

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        from neptune.types import File

        self._append(f"figures/{safe_key(title)}", File.from_content(png, extension="png"), step)

    def _log_artifact(self, path: Path, name: str) -> None:
        self._run[f"artifacts/{safe_key(name)}"].upload(str(path))

    def _finish(self, status: str) -> None:
        self._run["sys/failed"] = status != "success"
        self._run.stop()
