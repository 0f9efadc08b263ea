"""The ``mlflow`` logger: one MLflow run per omlcore run, in a local sqlite store or on a tracking server.

mlflow is imported when the logger is built, not when this module is imported.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

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

__all__ = ["MLflowLogger"]

PARAM_VALUE_LIMIT = 6000
"""MLflow stores at most this many characters of a parameter value; longer values are cut."""

_INVALID_KEY = re.compile(r"[^A-Za-z0-9_\-. /:]")
_CREDENTIALS = [
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic authentication)",
    "MLFLOW_TRACKING_TOKEN (bearer token)",
]


def _key(name: str) -> str:
    """A name MLflow accepts as a param or metric key (other characters become ``_``)."""
    return _INVALID_KEY.sub("_", name)


def _local_store_dir(uri: str) -> Path | None:
    """The folder of a local store (``sqlite:///path/mlflow.db``, ``file:///path`` or a plain path)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    if uri.startswith("file:"):
        return Path(urlsplit(uri).path)
    return Path(uri) if "://" not in uri else None


class MLflowLogger(BaseLogger):
    """Logs to MLflow through ``MlflowClient``: one run in ``experiment_name``.

    - params: the flattened config (``loss/args/margin``), values as text (at most 6000 characters);
    - tags: each tag becomes a run tag with an empty value; ``omlcore.run_dir`` records the run folder;
    - metrics: MLflow metrics at their step (0 when none is given);
    - figures: PNG artifacts ``figures/<title>/step_<step>.png``;
    - artifacts: files under the run's artifacts, as ``name``.

    ``tracking_uri``: where the runs are stored; default ``MLFLOW_TRACKING_URI``, else a sqlite store
    ``mlflow.db`` next to the run folders (``<logs_root>/mlflow.db``), else MLflow's default.
    ``artifact_location``: where a *new* experiment keeps artifacts; default for a local store: its
    ``mlartifacts`` folder, for a server: the server's choice. ``run_name``: default the run folder's name.

    An ``http(s)`` tracking server must accept a connection within 5 s; a server that refuses the
    credentials (``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``, read
    by MLflow itself) fails at construction.
    """

    backend = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "omlcore",
        run_name: str | None = None,
        artifact_location: str | None = None,
        log_checkpoint: bool = False,
        strict: bool = False,
        *,
        run_dir: Path | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir=run_dir, tags=tags, log_checkpoint=log_checkpoint, strict=strict)
        self._run_name = run_name
        self.experiment_name = experiment_name
        self.tracking_uri = tracking_uri or first_env(["MLFLOW_TRACKING_URI"]) or self._default_uri()
        self.artifact_location = artifact_location
        self._client: Any = None
        self._run_id: str | None = None
        self.experiment_id: str | None = None
        if not self.active:
            return
        import_sdk("mlflow", self.backend)
        from mlflow.tracking import MlflowClient

        if self.tracking_uri is None:
            import mlflow

            self.tracking_uri = mlflow.get_tracking_uri()
        uri = self.tracking_uri
        if uri.startswith(("http://", "https://")):
            check_reachable(
                self.backend,
                uri,
                "Start the tracking server, or fix logger.args.tracking_uri / MLFLOW_TRACKING_URI; to log "
                "without a server use a local store such as sqlite:///mlflow.db.",
            )
        self._client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment_id()
        run_tags = {_key(tag): "" for tag in self.tags}
        if self.run_dir is not None:
            run_tags["omlcore.run_dir"] = str(self.run_dir)
        run = self._client.create_run(self.experiment_id, run_name=self.run_name, tags=run_tags)
        self._run_id = run.info.run_id

    def _default_uri(self) -> str | None:
        if self.run_dir is None:
            return None  # MLflow's own default, asked once mlflow is imported
        return f"sqlite:///{(self.run_dir.parent / 'mlflow.db').resolve()}"

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        try:
            experiment = self._client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                return str(experiment.experiment_id)
            location = self.artifact_location
            store = _local_store_dir(self.tracking_uri or "")
            if location is None and store is not None:
                location = str((store / "mlartifacts").resolve())
            try:
                return str(self._client.create_experiment(self.experiment_name, artifact_location=location))
            except MlflowException:  # created meanwhile by another process?
                experiment = self._client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
                return str(experiment.experiment_id)
        except MlflowException as exc:
            text = str(exc)
            if any(code in text for code in ("401", "403", "Unauthorized", "Forbidden", "PERMISSION_DENIED")):
                raise MissingCredentialsError(
                    self.backend,
                    _CREDENTIALS,
                    "use a local store (tracking_uri: sqlite:///mlflow.db)",
                ) from exc
            raise LoggerSetupError(
                f"The mlflow logger cannot open the experiment {self.experiment_name!r} at {self.tracking_uri}: "
                f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            ) from exc

    @property
    def run_name(self) -> str | None:
        return self._run_name or super().run_name

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def experiment(self) -> Any:
        """The ``mlflow.tracking.MlflowClient`` (the run is :attr:`run_id`)."""
        return self._client

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        from mlflow.entities import Param

        items = [Param(_key(name), str(value)[:PARAM_VALUE_LIMIT]) for name, value in params.items()]
        for start in range(0, len(items), 100):
            self._client.log_batch(self._run_id, params=items[start : start + 100])

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(name), value, now, step or 0) for name, value in metrics.items()]
        for start in range(0, len(items), 1000):
            self._client.log_batch(self._run_id, metrics=items[start : start + 1000])

    def _upload_as(self, write: Any, name: str) -> None:
        """Write a file named like ``name`` in a temporary folder with ``write(path)``, then upload it."""
        target = PurePosixPath(name)
        with tempfile.TemporaryDirectory(prefix="omlcore-mlflow-") as tmp:
            local = Path(tmp) / target.name
            write(local)
            folder = str(target.parent) if str(target.parent) != "." else None
            self._client.log_artifact(self._run_id, str(local), artifact_path=folder)

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        self._upload_as(lambda path: path.write_bytes(png), f"figures/{safe_key(title)}/step_{step:06d}.png")

    def _log_artifact(self, path: Path, name: str) -> None:
        target = PurePosixPath(name)
        folder = str(target.parent) if str(target.parent) != "." else None
        if target.name == path.name:
            self._client.log_artifact(self._run_id, str(path), artifact_path=folder)
        else:
            self._upload_as(lambda local: shutil.copyfile(path, local), name)

    def _finish(self, status: str) -> None:
        self._client.set_terminated(self._run_id, "FINISHED" if status == "success" else "FAILED")

    def _make_lightning_logger(self) -> Any:
        from omlcore_mlflow._lightning import GuardedMLFlowLogger

        return GuardedMLFlowLogger.for_owner(self)
