"""TensorBoard experiment logger for omlcore (config name ``tensorboard``).

Importing this package imports neither torch nor tensorboard; they are imported when a logger is built.
"""

from __future__ import annotations

from omlcore_tensorboard.logger import TensorBoardLogger

__version__ = "0.1.0"
__all__ = ["TensorBoardLogger"]
