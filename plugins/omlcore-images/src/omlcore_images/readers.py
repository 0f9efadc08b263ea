"""Image readers: PIL for torchvision-style transforms, OpenCV (numpy) for albumentations-style ones.

Both return RGB with 8 bits per channel; transparent pixels are composited on white (emoji and icons
ship as RGBA, and dropping the alpha channel would paint their background black).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = ["ImageReader", "image_size", "imread_cv2", "imread_pillow", "is_albumentations", "reader_for_transform"]

ImageReader = Callable[[bytes], Any]
"""Decodes the bytes of an image file into what a transform expects (a PIL image or an RGB array)."""


def imread_pillow(data: bytes) -> Image.Image:
    """Decode image bytes with PIL into an RGB image (alpha composited on white)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out: Image.Image = Image.alpha_composite(background, rgba).convert("RGB")
            return out
        rgb: Image.Image = im.convert("RGB")
        return rgb


def imread_cv2(data: bytes) -> np.ndarray[Any, Any]:
    """Decode image bytes with OpenCV into an ``(H, W, 3)`` uint8 RGB array (alpha composited on white).

    Needs OpenCV: ``pip install "omlcore-images[opencv]"`` (albumentations installs it too).
    """
    import numpy as np

    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'Reading images for albumentations transforms needs OpenCV: pip install "omlcore-images[opencv]"'
        ) from exc
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("OpenCV cannot decode the data as an image")
    if img.ndim == 2:
        return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB))
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bgr = img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = np.clip(np.rint(bgr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file, after decoding it completely (so a truncated file raises)."""
    from PIL import Image

    with Image.open(Path(path)) as im:
        im.load()
        width, height = im.size
        return int(width), int(height)


def is_albumentations(transform: Any) -> bool:
    """True for a transform of the albumentations family (called as ``t(image=array)["image"]``).

    The class or any of its bases must come from albumentations, so subclasses such as
    omlcore-albumentations' ``TensorCompose`` count too.
    """
    return any(cls.__module__.split(".")[0] == "albumentations" for cls in type(transform).__mro__)


def reader_for_transform(transform: Any) -> ImageReader:
    """The reader a transform expects: OpenCV RGB arrays for albumentations, PIL RGB images otherwise."""
    return imread_cv2 if is_albumentations(transform) else imread_pillow
