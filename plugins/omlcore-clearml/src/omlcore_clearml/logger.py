"""The ``clearml`` logger: one ClearML task per omlcore run, online or offline.

clearml is imported when the logger is built, not when this module is imported. Lightning has no ClearML
logger, so :meth:`ClearMLLogger.lightning_logger` hands out omlcore's forwarding Lightning logger, which
writes through this logger into the same task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from omlcore_loggers_base import (
    BaseLogger,
    LoggerSetupError,
    MissingCredentialsError,
    ParamValue,
    check_reachable,
    env_flag,
    first_env,
    import_sdk,
    png_to_rgb_array,
    split_metric_name,
)

__all__ = ["PARAMS_SECTION", "ClearMLLogger"]

PARAMS_SECTION = "config"
"""The hyperparameter section (CONFIGURATION tab) that holds the flattened config."""

TaskType = Literal["training", "testing", "inference", "data_processing", "custom"]


def has_credentials() -> bool:
    """Whether ClearML would find credentials: ``CLEARML_AUTH_TOKEN``, or an access and a secret key from
    ``CLEARML_API_ACCESS_KEY``/``CLEARML_API_SECRET_KEY`` or ``api.credentials`` of ``clearml.conf``."""
    if first_env(["CLEARML_AUTH_TOKEN"]):
        return True
    from clearml.config import config_obj

    key = first_env(["CLEARML_API_ACCESS_KEY", "TRAINS_API_ACCESS_KEY"]) or config_obj.get(
        "api.credentials.access_key", None
    )
    secret = first_env(["CLEARML_API_SECRET_KEY", "TRAINS_API_SECRET_KEY"]) or config_obj.get(
        "api.credentials.secret_key", None
    )
    return bool(key and secret)


class ClearMLLogger(BaseLogger):
    """Logs to a ClearML task in ``project_name``.

    - params: the flattened config in the hyperparameter section ``config`` (nulls as ``"None"``);
    - tags: the task's tags;
    - metrics: scalars; ``OVERALL/cmc/1`` is series ``1`` of the plot ``OVERALL/cmc`` (a name without
      ``/`` is its own plot and series), at iteration ``step`` (0 when none is given);
    - figures: debug images, split the same way, at iteration ``step``;
    - artifacts: task artifacts named ``name``;
    - the end: the status is written to the task's console log, a failed run is marked failed.

    ``offline``: keep everything in a local session folder (``<CLEARML_CACHE_DIR or ~/.clearml/cache>/
    offline/<task id>`` and a ``.zip`` of it, imported later with ``clearml-task --import-offline-session``
    or ``Task.import_offline_session``); default ``CLEARML_OFFLINE_MODE``, else online. Online needs
    ClearML's credentials (``CLEARML_API_ACCESS_KEY`` and ``CLEARML_API_SECRET_KEY``, or ``clearml.conf``
    from ``clearml-init``) and an API server (``CLEARML_API_HOST`` or ``clearml.conf``) accepting a
    connection within 5 s; both checked when the logger is built. ``task_name``: default the run folder's
    name. ``report_in_subprocess``: ClearML's ``sdk.development.report_use_subprocess``; omlcore turns it off
    by default (for the whole process), since with it ``close()`` took about 11 s and could hang.

    A task already running in the process (the user's own ``Task.init``) is logged into and left open.
    ClearML keeps one task per process: use one ``clearml`` logger at a time.
    """

    backend = "clearml"

    def __init__(
        self,
        project_name: str = "omlcore",
        task_name: str | None = None,
        task_type: TaskType = "training",
        offline: bool | None = None,
        report_in_subprocess: bool = False,
        log_checkpoint: bool = False,
        strict: bool = False,
        *,
        run_dir: Path | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir=run_dir, tags=tags, log_checkpoint=log_checkpoint, strict=strict)
        self.project_name = project_name
        self._task_name = task_name
        self.offline = offline if offline is not None else bool(env_flag("CLEARML_OFFLINE_MODE"))
        self._task: Any = None
        self._owns_task = True
        if not self.active:
            return
        clearml = import_sdk("clearml", self.backend)
        Task = clearml.Task
        if not report_in_subprocess and hasattr(Task, "_report_subprocess_enabled"):
            Task._report_subprocess_enabled = False  # the sdk.development.report_use_subprocess switch
        current = Task.current_task()
        if current is not None:
            self._task, self._owns_task = current, False
            if self.tags:
                current.add_tags(list(self.tags))
            return
        if not self.offline:
            self._check_online()  # before set_offline(False): going online opens a session
        Task.set_offline(offline_mode=self.offline)  # note: ClearML also sets CLEARML_OFFLINE_MODE for the process
        self._task = Task.init(
            project_name=project_name,
            task_name=self.run_name or "omlcore run",
            task_type=Task.TaskTypes[task_type],
            tags=list(self.tags) or None,
            reuse_last_task_id=False,
            auto_connect_frameworks=False,
            auto_resource_monitoring=False,
            auto_connect_arg_parser=False,
            auto_connect_streams=False,
        )
        if not isinstance(self._task, Task):
            master = first_env(["CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID"])
            raise LoggerSetupError(
                f"The clearml logger got no task: ClearML takes this process for a subprocess of another one "
                f"(CLEARML_PROC_MASTER_ID={master!r}, inherited from the process that started this one) and hands "
                f"out a placeholder that records nothing. Unset CLEARML_PROC_MASTER_ID and TRAINS_PROC_MASTER_ID "
                f"before starting the run."
            )

    def _check_online(self) -> None:
        if not has_credentials():
            raise MissingCredentialsError(
                self.backend,
                [
                    "CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY (and CLEARML_API_HOST for your server)",
                    "run `clearml-init` (it writes ~/clearml.conf)",
                ],
                "use logger.args.offline: true (or CLEARML_OFFLINE_MODE=1)",
            )
        from clearml.backend_api import Session

        check_reachable(
            self.backend,
            Session.get_api_server_host(),
            "Check the network and CLEARML_API_HOST / api.api_server in clearml.conf, or log offline with "
            "logger.args.offline: true.",
        )

    @property
    def run_name(self) -> str | None:
        return self._task_name or super().run_name

    @property
    def run_id(self) -> str | None:
        return str(self._task.id) if self._task is not None else None

    @property
    def experiment(self) -> Any:
        """The ``clearml.Task``."""
        return self._task

    @property
    def offline_folder(self) -> Path | None:
        """The local session folder of an offline task."""
        if self._task is None or not self.offline:
            return None
        return Path(self._task.get_offline_mode_folder())

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        self._task.connect({name: "None" if value is None else value for name, value in params.items()}, PARAMS_SECTION)

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        logger = self._task.get_logger()
        for name, value in metrics.items():
            title, series = split_metric_name(name)
            logger.report_scalar(title, series, value, iteration=step or 0)

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        group, series = split_metric_name(title)
        self._task.get_logger().report_image(group, series, iteration=step, image=png_to_rgb_array(png))

    def _log_artifact(self, path: Path, name: str) -> None:
        self._task.upload_artifact(name, artifact_object=str(path), wait_on_upload=True)

    def _finish(self, status: str) -> None:
        self._task.get_logger().report_text(f"omlcore: the run finished with status {status!r}")
        if status != "success":
            self._task.mark_failed(status_reason=f"omlcore: the run finished with status {status!r}", force=True)
        self._task.flush(wait_for_uploads=True)
        if self._owns_task:
            self._task.close()
