"""omlcore-lightning: config-driven train / validate / predict pipelines for omlcore, on Lightning.

- :func:`train`, :func:`validate`, :func:`predict`: the pipelines behind ``omlcore train|validate|predict``;
- :class:`ExtractorModule`: the LightningModule (loss, optimizer, scheduler, ``freeze_n_epochs``);
- :class:`MetricValCallback`: feeds validation outputs to a retrieval metric and logs the results;
- :class:`RunFolder`: the layout of a run folder.

Names load lazily, so that the CLI hook (which imports this package) does not import torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "train": "omlcore_lightning.pipelines",
    "validate": "omlcore_lightning.pipelines",
    "predict": "omlcore_lightning.pipelines",
    "RunResult": "omlcore_lightning.pipelines",
    "PredictResult": "omlcore_lightning.pipelines",
    "expected_metric_names": "omlcore_lightning.pipelines",
    "ExtractorModule": "omlcore_lightning.module",
    "optimizers_config": "omlcore_lightning.module",
    "param_groups": "omlcore_lightning.module",
    "MetricValCallback": "omlcore_lightning.callbacks",
    "GracefulInterrupt": "omlcore_lightning.callbacks",
    "RunFolder": "omlcore_lightning.run",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_lightning.callbacks import GracefulInterrupt as GracefulInterrupt
    from omlcore_lightning.callbacks import MetricValCallback as MetricValCallback
    from omlcore_lightning.module import ExtractorModule as ExtractorModule
    from omlcore_lightning.module import optimizers_config as optimizers_config
    from omlcore_lightning.module import param_groups as param_groups
    from omlcore_lightning.pipelines import PredictResult as PredictResult
    from omlcore_lightning.pipelines import RunResult as RunResult
    from omlcore_lightning.pipelines import expected_metric_names as expected_metric_names
    from omlcore_lightning.pipelines import predict as predict
    from omlcore_lightning.pipelines import train as train
    from omlcore_lightning.pipelines import validate as validate
    from omlcore_lightning.run import RunFolder as RunFolder


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omlcore_lightning' has no attribute {name!r}")
