"""omlcore-albumentations: the albumentations image transforms that omlcore configs name.

The factories ``augs_albu``, ``norm_albu``, ``norm_resize_albu`` and ``norm_resize_albu_clip`` are
entry points of the group ``omlcore.transforms``; a config names one as
``transforms_train: {name: augs_albu, args: {im_size: 64}}`` and omlcore calls it with the ``args``.
Each returns a :class:`~omlcore_albumentations.compose.TensorCompose`, an ``albumentations.Compose``
that turns an RGB ``uint8`` ``(H, W, 3)`` array into a float ``(3, H, W)`` tensor:
``t(image=array)["image"]`` (albumentations' call) or ``t(array)`` (omlcore's).

Importing this package is cheap: albumentations, OpenCV and torch load when a factory is called
(``TensorCompose`` is imported on first access).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omlcore_albumentations.io import ImageDecodeError, apply, read_image_cv2
from omlcore_albumentations.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_COLOR,
    augs_albu,
    norm_albu,
    norm_resize_albu,
    norm_resize_albu_clip,
)

if TYPE_CHECKING:
    from omlcore_albumentations.compose import TensorCompose

__version__ = "0.1.0"

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAD_COLOR",
    "ImageDecodeError",
    "TensorCompose",
    "__version__",
    "apply",
    "augs_albu",
    "norm_albu",
    "norm_resize_albu",
    "norm_resize_albu_clip",
    "read_image_cv2",
]


def __getattr__(name: str) -> Any:
    """``TensorCompose`` on first access (its module imports albumentations and torch)."""
    if name == "TensorCompose":
        from omlcore_albumentations.compose import TensorCompose

        return TensorCompose
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
