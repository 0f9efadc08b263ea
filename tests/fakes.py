"""Tiny fake components (no torch) used by the core tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omlcore.protocols import Loss, Miner


class PairMiner:
    """A miner with one typed argument."""

    def __init__(self, k: int = 3) -> None:
        self.k = k

    def sample(self, features: Any, labels: Any) -> tuple[Any, Any, Any]:
        return ([], [], [])


class MarginLoss:
    """A loss with typed, defaulted, nested and optional arguments."""

    def __init__(self, margin: float = 0.1, miner: Miner | None = None, reduction: str = "mean") -> None:
        self.margin = margin
        self.miner = miner
        self.reduction = reduction
        self.last_logs: Mapping[str, float] = {}

    def __call__(self, features: Any, labels: Any) -> Any:
        return 0.0


class EnsembleLoss:
    """Takes a list of nested losses and extra keyword arguments."""

    def __init__(self, parts: list[Loss], scale: float = 1.0, **extra: Any) -> None:
        self.parts = parts
        self.scale = scale
        self.extra = extra
        self.last_logs: Mapping[str, float] = {}

    def __call__(self, features: Any, labels: Any) -> Any:
        return 0.0


class NotALoss:
    def __init__(self) -> None:
        pass


class ForgetsLogs:
    """Has ``__call__`` but never sets ``last_logs``: only an instance check can tell."""

    def __call__(self, features: Any, labels: Any) -> Any:
        return 0.0


class Optim:
    def __init__(self, params: Any, lr: float = 0.1) -> None:
        self.params = list(params)
        self.lr = lr
        self.param_groups: list[dict[str, Any]] = [{"lr": lr}]

    def step(self, closure: Any = None) -> None: ...
    def zero_grad(self, set_to_none: bool = True) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class ToyExtractor:
    def __init__(self, dim: int = 8) -> None:
        self.feat_dim = dim

    def extract(self, x: Any) -> Any:
        return x


class Tensorish:
    """A type that no config value can be (like ``torch.Tensor``)."""


def _toy_pipeline_model() -> Any:
    from typing import Literal

    from pydantic import BaseModel, ConfigDict

    from omlcore.errors import ConfigIssue
    from omlcore.schemas import ComponentSpec, Slot

    class ToyPipelineConfig(BaseModel):
        """``pipeline: toy_distill``: a pipeline added by a plugin."""

        model_config = ConfigDict(extra="forbid")
        pipeline: Literal["toy_distill"]
        teacher: ComponentSpec = Slot("extractor")
        student: ComponentSpec = Slot("extractor")
        temperature: float = 1.0

        def cross_field_issues(self) -> list[ConfigIssue]:
            if self.teacher == self.student:
                return [ConfigIssue("student", "must differ from the teacher")]
            return []

    return ToyPipelineConfig


ToyPipelineConfig = _toy_pipeline_model()
