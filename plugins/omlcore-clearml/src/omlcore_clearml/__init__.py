"""ClearML experiment logger for omlcore (config name ``clearml``).

Importing this package does not import clearml; it is imported when a logger is built.
"""

from __future__ import annotations

from omlcore_clearml.logger import ClearMLLogger

__version__ = "0.1.0"
__all__ = ["ClearMLLogger"]
