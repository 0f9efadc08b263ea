"""Helpers for the tests of logger plugins (imports torch and lightning: use it in tests only).

- :func:`fit_tiny_model`: a real two-epoch ``Trainer.fit`` of a tiny model with a given Lightning logger,
  logging known validation values, so a test can read back what the backend stored.
- :func:`make_figure`: a small matplotlib figure.
- :func:`imported_modules`: the top-level modules a snippet imports in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TinyFit", "fit_tiny_model", "imported_modules", "make_figure"]

SDK_MODULES = ("torch", "lightning", "tensorboard", "mlflow", "wandb", "neptune", "clearml", "matplotlib", "numpy")
"""Modules a logger plugin must not import before a logger is built."""


def make_figure(title: str = "curve") -> Any:
    """A small matplotlib ``Figure`` (not attached to pyplot, so nothing needs closing)."""
    from matplotlib.figure import Figure

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
