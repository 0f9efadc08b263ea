"""MLflow experiment logger for omlcore (config name ``mlflow``).

Importing this package does not import mlflow; it is imported when a logger is built.
"""

from __future__ import annotations

from omlcore_mlflow.logger import MLflowLogger

__version__ = "0.1.0"
__all__ = ["MLflowLogger"]
