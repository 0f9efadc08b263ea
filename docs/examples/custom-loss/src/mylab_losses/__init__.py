"""mylab-losses: an example omlcore plugin with one loss, ``focal_triplet``.

Importing this package is cheap: torch is imported only when :class:`FocalTripletLoss` is first used
(``from mylab_losses import FocalTripletLoss`` or the entry point ``mylab_losses.focal:FocalTripletLoss``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FocalTripletLoss", "__version__"]

if TYPE_CHECKING:
    from mylab_losses.focal import FocalTripletLoss


def __getattr__(name: str) -> Any:
    if name == "FocalTripletLoss":
        return importlib.import_module("mylab_losses.focal").FocalTripletLoss
    raise AttributeError(f"module 'mylab_losses' has no attribute {name!r}")
