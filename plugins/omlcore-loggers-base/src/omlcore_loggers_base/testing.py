"""Helpers for the tests of logger plugins (imports torch and lightning: use it in tests only).

- :func:`fit_tiny_model`: a real two-epoch ``Trainer.fit`` of a tiny model with a given Lightning logger,
  logging known validation values, so a test can read back what the backend stored.
- :func:`make_figure`: a small matplotlib figure.
- :func:`imported_modules`: the top-level modules a snippet imports in a fresh interpreter.
- :func:`train_on_mock`: a real two-epoch ``omlcore train`` on the mock dataset (a subprocess), for the
  plugins' end-to-end tests; :func:`require_pipeline` skips a test when the pipeline's plugins are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PIPELINE_MODULES",
    "PipelineRun",
    "TinyFit",
    "fit_tiny_model",
    "imported_modules",
    "make_figure",
    "png_image",
    "require_pipeline",
    "sdk_imports_of_plugin",
    "train_on_mock",
]

SDK_MODULES = ("torch", "lightning", "tensorboard", "mlflow", "wandb", "neptune", "clearml", "matplotlib", "numpy")
"""Modules a logger plugin must not import before a logger is built."""


def png_image(width: int, height: int) -> bytes:
    """A ``width`` x ``height`` RGB PNG (a colour gradient), written with the standard library only."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00"
        + bytes(v for x in range(width) for v in (x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_figure(title: str = "curve") -> Any:
    """A small matplotlib ``Figure`` of 100 x 75 pixels (not attached to pyplot, so nothing needs closing);
    without matplotlib, PNG bytes of the same size (loggers take both)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return png_image(100, 75)

    figure = Figure(figsize=(2.0, 1.5), dpi=50)
    axes = figure.add_subplot()
    axes.plot([0, 1, 2], [2.0, 1.0, 1.5])
    axes.set_title(title)
    return figure


@dataclass
class TinyFit:
    """What :func:`fit_tiny_model` ran: the validation values logged per epoch (``val/score``), the number
    of training steps, and the best checkpoint Lightning saved."""

    val_scores: list[float]
    train_steps: int
    best_checkpoint: Path


def fit_tiny_model(lightning_logger: Any, root: Path, max_epochs: int = 2, batches: int = 3) -> TinyFit:
    """Fit a linear model for ``max_epochs`` epochs of ``batches`` batches with ``lightning_logger``.

    Each step logs ``train/loss``; each validation logs ``val/score`` = ``0.25 * (epoch + 1)`` (exact in
    binary, so read-back values compare equal) and ``OVERALL/cmc/1`` = ``0.5 + 0.125 * epoch``. A
    ``ModelCheckpoint`` on ``val/score`` (mode max) writes into ``root/checkpoints``.
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.save_hyperparameters({"hidden": 2, "lr": 0.1})

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.layer(x), y)
            self.log("train/loss", loss, on_step=True, on_epoch=False)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def on_validation_epoch_end(self) -> None:
            if self.trainer.sanity_checking:
                return
            epoch = self.current_epoch
            self.log("val/score", 0.25 * (epoch + 1))
            self.log("OVERALL/cmc/1", 0.5 + 0.125 * epoch)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(4 * batches, 4, generator=generator), torch.arange(4 * batches) % 2)
    checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", monitor="val/score", mode="max", filename="best")
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        logger=lightning_logger,
        callbacks=[checkpoint],
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    return TinyFit(
        val_scores=[0.25 * (epoch + 1) for epoch in range(max_epochs)],
        train_steps=max_epochs * batches,
        best_checkpoint=Path(checkpoint.best_model_path),
    )


def imported_modules(code: str) -> set[str]:
    """Top-level names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AssertionError(f"the snippet failed:\n{code}\n{out.stderr}")
    names: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return {name.split(".")[0] for name in names}


PIPELINE_MODULES = (
    "omlcore_lightning",
    "omlcore_images",
    "omlcore_extractors",
    "omlcore_samplers",
    "omlcore_miners",
    "omlcore_losses",
    "omlcore_optim",
    "omlcore_metrics",
)
"""The plugins ``examples/configs/train.yaml`` needs (``omlcore train`` and its components)."""


def sdk_imports_of_plugin(package: str) -> set[str]:
    """The :data:`SDK_MODULES` loaded, in a fresh interpreter, by importing ``package`` and its ``logger``
    module and running ``omlcore plugins list`` (what must stay free of SDKs until a logger is built)."""
    code = f"""
        import contextlib, io
        import {package}, {package}.logger
        from omlcore.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["plugins", "list"]) == 0
    """
    return imported_modules(code) & set(SDK_MODULES)


def require_pipeline(config: Path) -> None:
    """Skip the calling test unless the training pipeline's plugins and ``config`` are installed/present."""
    import pytest

    for module in PIPELINE_MODULES:
        pytest.importorskip(module, reason=f"the end-to-end test needs {module} (omlcore train and its components)")
    if not config.is_file():
        pytest.skip(f"{config} is not there (tests run outside the repository)")


@dataclass
class PipelineRun:
    """A finished ``omlcore train``: its run folder and the validation records of ``metrics.json``."""

    run_dir: Path
    records: list[dict[str, Any]]
    output: str

    def metric(self, name: str) -> list[float]:
        """The values of metric ``name`` (``"OVERALL/cmc/1"``), one per validation, in order."""
        return [float(record["metrics"][name]) for record in self.records]


TRAIN_OVERRIDES = (
    "run.logs_folder=run",
    "run.tags=[baseline, cpu]",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "transforms_train.args.im_size=32",
    "transforms_val.args.im_size=32",
    "sampler.args.n_labels=2",
    "sampler.args.n_instances=2",
    "data.batch_size_val=12",
    "scheduling.scheduler.args.T_max=2",
    "metrics.log_images=true",
)
"""Two epochs of two batches on 32 px images (a few seconds of training), worst-queries figures on."""


def train_on_mock(
    root: Path, config: Path, overrides: Sequence[str], env: Mapping[str, str | None] | None = None
) -> PipelineRun:
    """Write the mock dataset (``omlcore data mock``) under ``root`` and run ``omlcore train config`` on it
    for two epochs with :data:`TRAIN_OVERRIDES` plus ``overrides`` (``logger.name=mlflow``), in a subprocess
    with working directory ``root`` and the environment changed by ``env`` (``None`` removes a variable).
    The run folder is ``root/logs/run``. Raises ``AssertionError`` with the output if a command fails."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value

    def omlcore(*args: str) -> str:
        command = [sys.executable, "-m", "omlcore", *args]
        out = subprocess.run(
            command, cwd=root, env=environment, capture_output=True, text=True, timeout=900, check=False
        )
        text = out.stdout + out.stderr
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {out.returncode}:\n{text[-8000:]}")
        return text

    root.mkdir(parents=True, exist_ok=True)
    omlcore("data", "mock", str(root / "mock"))
    output = omlcore(
        "train",
        str(config),
        f"data.dataset_root={root / 'mock'}",
        f"run.logs_root={root / 'logs'}",
        *TRAIN_OVERRIDES,
        *overrides,
    )
    run_dir = root / "logs" / "run"
    records: list[dict[str, Any]] = json.loads((run_dir / "metrics.json").read_text())
    return PipelineRun(run_dir, records, output)
