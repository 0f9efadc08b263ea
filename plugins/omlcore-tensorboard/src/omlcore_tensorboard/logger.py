"""The ``tensorboard`` logger: event files in a local folder, readable by ``tensorboard --logdir``.

torch's ``SummaryWriter`` (and so tensorboard) is imported when the logger is built, not when this
module is imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omlcore_loggers_base import BaseLogger, ParamValue, import_sdk, png_to_rgb_array
from pydantic import PositiveInt

__all__ = ["TensorBoardLogger"]


def _hparam_value(value: ParamValue) -> str | float | int:
    """TensorBoard's hparams hold numbers and text: bools and nulls are written as text."""
    if value is None or isinstance(value, bool):
        return str(value)
    return value


def _markdown_table(params: dict[str, ParamValue]) -> str:
    rows = [f"| {name} | {text} |" for name, text in ((n, str(v).replace("|", "\\|")) for n, v in params.items())]
    return "\n".join(["| parameter | value |", "|---|---|", *rows])


class TensorBoardLogger(BaseLogger):
    """Logs to TensorBoard event files under ``save_dir``.

    - params: the flattened config as TensorBoard hparams (HPARAMS tab) and as a text table ``params``;
    - tags: a text ``tags``;
    - metrics: scalars, one series per name, at the given step;
    - figures: images (PNG rendered once, decoded to RGB), at the given step;
    - artifacts: copied into ``save_dir/artifacts/<name>`` (TensorBoard has no artifact store).

    ``save_dir`` defaults to ``<run folder>/tensorboard`` (``./tensorboard`` without a run folder);
    ``flush_secs``: how often pending events are written to disk. No credentials, no server.
    """

    backend = "tensorboard"

    def __init__(
        self,
        save_dir: Path | None = None,
        flush_secs: PositiveInt = 30,
        log_checkpoint: bool = False,
        strict: bool = False,
        *,
        run_dir: Path | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        super().__init__(run_dir=run_dir, tags=tags, log_checkpoint=log_checkpoint, strict=strict)
        if save_dir is None:
            save_dir = (self.run_dir / "tensorboard") if self.run_dir is not None else Path("tensorboard")
        self.save_dir = Path(save_dir)
        self._writer: Any = None
        if not self.active:
            return
        tensorboard = import_sdk("torch.utils.tensorboard", self.backend)
        import_sdk("tensorboard", self.backend)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self._writer = tensorboard.SummaryWriter(log_dir=str(self.save_dir), flush_secs=int(flush_secs))
        if self.tags:
            self._call("tags", lambda: self._writer.add_text("tags", ", ".join(self.tags), 0))

    @property
    def experiment(self) -> Any:
        """The ``torch.utils.tensorboard.SummaryWriter``."""
        return self._writer

    @property
    def run_name(self) -> str | None:
        return super().run_name or self.save_dir.name

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        from torch.utils.tensorboard.summary import hparams

        experiment, start, end = hparams(  # type: ignore[no-untyped-call]
            {k: _hparam_value(v) for k, v in params.items()}, {}
        )
        writer = self._writer._get_file_writer()  # where SummaryWriter.add_hparams writes too
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        self._writer.add_text("params", _markdown_table(params), 0)

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        self._writer.add_image(title, png_to_rgb_array(png), step, dataformats="HWC")

    def _log_artifact(self, path: Path, name: str) -> None:
        target = self.save_dir / "artifacts" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _finish(self, status: str) -> None:
        self._writer.add_text("status", status, 0)
        self._writer.flush()
        self._writer.close()

    def _make_lightning_logger(self) -> Any:
        from omlcore_tensorboard._lightning import GuardedTensorBoardLogger

        return GuardedTensorBoardLogger.for_owner(self)
