"""Small components for the pipeline tests: a tiny CNN extractor and a recording experiment logger.

Registered in-process by the tests (``omlcore.registry.register``), and by ``lightning_entry.py`` for
tests that run the CLI in subprocesses (DDP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class TinyExtractor(nn.Module):
    """conv -> batch norm -> ReLU -> pooled 4x4 -> linear: a few thousand parameters.

    Args:
        feat_dim: embedding size.
        dropout: dropout before the last layer (makes training steps random).
        weights: a Lightning checkpoint of the training pipeline (``model.*`` keys) or None.
    """

    def __init__(self, feat_dim: int = 8, dropout: float = 0.0, weights: str | None = None) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(6 * 16, feat_dim)
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
            self.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})

    def extract(self, x: Tensor) -> Tensor:
        h = self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)
        out: Tensor = self.fc(self.drop(h))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.extract(x)


class CentreLoss(nn.Module):
    """A loss with its own parameters (one learnable centre per label), to test freeze_n_epochs."""

    def __init__(self, n_labels: int = 4, feat_dim: int = 8) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.zeros(n_labels, feat_dim))
        self.last_logs: dict[str, float] = {}

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        loss = ((features - self.centres[labels]) ** 2).sum(1).mean()
        self.last_logs = {"centre_norm": float(self.centres.detach().norm())}
        return loss


class RecordingLogger:
    """An experiment logger that records every call (instances are kept in ``RecordingLogger.instances``).

    Args:
        tag: a name telling several instances apart.
        native: hand Lightning a CSVLogger writing to ``run_dir/csv_<tag>`` instead of nothing.
        fail: fail to start, as a backend without credentials does, after writing into ``run_dir``.
        run_dir: given by the pipeline.
    """

    instances: ClassVar[list[RecordingLogger]] = []

    def __init__(self, tag: str = "a", native: bool = False, fail: bool = False, run_dir: Path | None = None) -> None:
        if fail:
            if run_dir is not None:
                (run_dir / f"rec_{tag}").mkdir(parents=True, exist_ok=True)
            raise RuntimeError(f"recording logger {tag!r}: no credentials (set RECORDING_TOKEN)")
        self.tag = tag
        self.native = native
        self.run_dir = run_dir
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.figures: list[tuple[str, int]] = []
        self.artifacts: list[str] = []
        self.status: str | None = None
        RecordingLogger.instances.append(self)

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        self.figures.append((title, step))

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        self.artifacts.append(name or Path(path).name)

    def lightning_logger(self) -> Any:
        if not self.native:
            return None
        from lightning.pytorch.loggers import CSVLogger

        assert self.run_dir is not None
        return CSVLogger(str(self.run_dir), name=f"csv_{self.tag}", version="")

    def finish(self, status: str = "success") -> None:
        self.status = status


def register_fakes() -> None:
    """Offer the fakes under the names the test configs use."""
    from omlcore.registry import register

    register("extractor", "tiny", TinyExtractor)
    register("loss", "centre", CentreLoss)
    register("logger", "recording", RecordingLogger)
