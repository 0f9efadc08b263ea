"""Neptune experiment logger for omlcore (config name ``neptune``; neptune 1.x client).

Importing this package does not import neptune; it is imported when a logger is built.
"""

from __future__ import annotations

from omlcore_neptune.logger import NeptuneLogger

__version__ = "0.1.0"
__all__ = ["NeptuneLogger"]
