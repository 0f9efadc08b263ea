"""Reading images the way albumentations pipelines expect them, and calling such a pipeline.

Cheap to import: OpenCV and numpy are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

__all__ = ["ImageDecodeError", "apply", "read_image_cv2"]


class ImageDecodeError(ValueError):
    """A file (or buffer) that exists but is not an image OpenCV can decode; ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path


def read_image_cv2(path: str | os.PathLike[str] | bytes) -> np.ndarray[Any, Any]:
    """The image at ``path`` (or encoded in ``bytes``) as an RGB ``uint8`` array ``(H, W, 3)``.

    Decoded by OpenCV with ``IMREAD_COLOR``: grey images are expanded to three channels, an alpha
    channel is dropped, 16-bit images are scaled to 8 bits, and the EXIF orientation is applied.
    Raises ``FileNotFoundError`` for a missing file and :class:`ImageDecodeError` (a ``ValueError``)
    for one OpenCV cannot decode (empty, truncated, not an image); both messages name the file.
    """
    import cv2
    import numpy as np

    if isinstance(path, bytes):
        where, buffer = f"<{len(path)} bytes>", np.frombuffer(path, dtype=np.uint8)
    else:
        file = Path(path)
        where = str(file)
        if not file.is_file():
            if file.exists():
                raise ImageDecodeError(where, "not a regular file")
            raise FileNotFoundError(f"image file not found: {where}")
        buffer = np.fromfile(file, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    if buffer.size == 0:
        raise ImageDecodeError(where, "the file is empty")
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(where, f"OpenCV failed to decode it ({exc})") from exc
    if bgr is None:
        raise ImageDecodeError(where, "OpenCV cannot decode it (corrupt, truncated or not an image format)")
    rgb: np.ndarray[Any, Any] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


def apply(transform: Any, image: Any) -> Tensor:
    """Run an albumentations pipeline on one image and return its ``"image"`` tensor.

    ``transform(image=image)["image"]``, for any ``albumentations.Compose`` (this package's or a
    user's own, which must end with ``ToTensorV2``); ``image`` is a numpy array ``(H, W, C)`` such as
    :func:`read_image_cv2` returns. Raises ``TypeError`` when the result is not a tensor.
    """
    import torch

    out = transform(image=image)
    result = out.get("image") if isinstance(out, dict) else None
    if not isinstance(result, torch.Tensor):
        got = type(result).__name__ if isinstance(out, dict) else f"a {type(out).__name__}, not a dict"
        raise TypeError(
            f"{type(transform).__name__}(image=...) gave {got} under 'image', not a tensor; "
            "an albumentations pipeline for omlcore must end with albumentations.pytorch.ToTensorV2"
        )
    return result
