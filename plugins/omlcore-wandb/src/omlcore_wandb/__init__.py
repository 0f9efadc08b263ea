"""Weights & Biases experiment logger for omlcore (config name ``wandb``).

Importing this package does not import wandb; it is imported when a logger is built.
"""

from __future__ import annotations

from omlcore_wandb.logger import WandbLogger

__version__ = "0.1.0"
__all__ = ["WandbLogger"]
