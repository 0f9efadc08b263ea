"""The ``wandb`` logger: one Weights & Biases run per omlcore run, online or offline.

wandb is imported when the logger is built, not when this module is imported.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from omlcore_loggers_base import (
    BaseLogger,
    MissingCredentialsError,
    ParamValue,
    artifact_kind,
    check_reachable,
    first_env,
    import_sdk,
    png_to_pil,
    safe_key,
)

__all__ = ["STEP_KEY", "WandbLogger"]

STEP_KEY = "trainer/global_step"
"""The x-axis of every chart: the step given to ``log_metrics``, logged as this key (as Lightning's W&B
logger does), so that steps given out of W&B's own order are never dropped."""

DEFAULT_BASE_URL = "https://api.wandb.ai"

Mode = Literal["online", "offline", "disabled"]


def resolve_mode(mode: Mode | None) -> Mode:
    """The mode a run uses: ``mode`` if given, else ``WANDB_MODE`` (``dryrun`` means offline), else online."""
    if mode is not None:
        return mode
    env = (first_env(["WANDB_MODE"]) or "online").lower()
    if env in ("offline", "dryrun"):
        return "offline"
    if env == "disabled":
        return "disabled"
    return "online"


def _netrc_has(host: str) -> bool:
    """Whether the netrc file W&B reads (``NETRC``, else ``~/.netrc`` or ``~/_netrc``) has a password for
    ``host``."""
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if not path.is_file():
            continue
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            continue
        if entry is not None and entry[2]:
            return True
    return False


def has_credentials(base_url: str) -> bool:
    """Whether W&B would find credentials for ``base_url``: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``,
    or a netrc entry (what ``wandb login`` writes)."""
    if first_env(["WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"]):
        return True
    host = urlsplit(base_url).hostname or ""
    return _netrc_has(host)


class WandbLogger(BaseLogger):
    """Logs to a W&B run in ``project`` (and ``entity``).

    - params: the flattened config as the run's config (``loss/args/margin``);
    - tags: the run's tags;
    - metrics: logged with ``trainer/global_step`` = ``step`` as their x-axis;
    - figures: ``wandb.Image`` under the title, at the step;
    - artifacts: one W&B artifact per file, named ``<run id>-<name>``, of type ``config``, ``dataset``,
      ``model`` or ``file`` (from the extension).

    ``mode``: ``online``, ``offline`` (a local run folder, uploaded later with ``wandb sync``) or
    ``disabled``; default: ``WANDB_MODE``, else online. Online needs credentials from W&B itself
    (``WANDB_API_KEY``, or ``wandb login``) and a reachable server (``WANDB_BASE_URL``, default
    api.wandb.ai); both are checked when the logger is built. ``save_dir``: the folder that receives
    ``wandb/``; default the run folder. ``name``: default the run folder's name.
    """

    backend = "wandb"

    def __init__(
        self,
        project: str = "omlcore",
        entity: str | None = None,
        mode: Mode | None = None,
        name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        save_dir: Path | None = None,
        log_checkpoint: bool = False,
        strict: bool = False,
        *,
        run_dir: Path | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir=run_dir, tags=tags, log_checkpoint=log_checkpoint, strict=strict)
        self.project = project
        self._name = name
        self.mode: Mode = resolve_mode(mode)
        self.save_dir = Path(save_dir) if save_dir is not None else self.run_dir
        self._run: Any = None
        if not self.active:
            return
        wandb = import_sdk("wandb", self.backend)
        if self.mode == "online":
            base_url = first_env(["WANDB_BASE_URL"]) or DEFAULT_BASE_URL
            if not has_credentials(base_url):
                raise MissingCredentialsError(
                    self.backend,
                    ["WANDB_API_KEY", "run `wandb login` (it stores the key in ~/.netrc)"],
                    "use logger.args.mode: offline (or WANDB_MODE=offline) and upload later with `wandb sync`",
                )
            check_reachable(
                self.backend,
                base_url,
                "Check the network, or WANDB_BASE_URL for a self-hosted server; or log offline with "
                "logger.args.mode: offline.",
            )
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project,
            entity=entity,
            name=self.run_name,
            group=group,
            job_type=job_type,
            tags=list(self.tags) or None,
            dir=str(self.save_dir) if self.save_dir is not None else None,
            mode=self.mode,
            reinit="create_new",
        )
        self._run.define_metric(STEP_KEY)
        self._run.define_metric("*", step_metric=STEP_KEY, step_sync=True)

    @property
    def run_name(self) -> str | None:
        return self._name or super().run_name

    @property
    def run_id(self) -> str | None:
        return str(self._run.id) if self._run is not None else None

    @property
    def experiment(self) -> Any:
        """The ``wandb`` run."""
        return self._run

    @property
    def run_folder(self) -> Path | None:
        """The local folder of the run (``.../wandb/offline-run-...``), where W&B keeps its files."""
        folder = getattr(getattr(self._run, "settings", None), "sync_dir", None)
        return Path(folder) if folder else None

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        self._run.config.update(params, allow_val_change=True)

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        self._run.log(dict(metrics) if step is None else {**metrics, STEP_KEY: step})

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        import wandb

        self._run.log({title: wandb.Image(png_to_pil(png)), STEP_KEY: step})

    def _log_artifact(self, path: Path, name: str) -> None:
        import wandb

        artifact = wandb.Artifact(name=f"{self._run.id}-{safe_key(name, keep_slash=False)}", type=artifact_kind(name))
        artifact.add_file(str(path), name=name)
        self._run.log_artifact(artifact)

    def _finish(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "success" else 1)

    def _make_lightning_logger(self) -> Any:
        from omlcore_wandb._lightning import GuardedWandbLogger

        return GuardedWandbLogger.for_owner(self)
