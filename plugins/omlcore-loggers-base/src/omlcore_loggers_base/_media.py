"""Figures: a matplotlib figure becomes PNG bytes once, and each backend takes the form it needs."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["PNG_SIGNATURE", "figure_to_png", "png_size", "png_to_pil", "png_to_rgb_array"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figure_to_png(figure: Any, dpi: float | None = None) -> bytes:
    """PNG bytes of ``figure``: a matplotlib figure (anything with ``savefig``), a PIL image, or PNG bytes
    (passed through). The figure is neither shown nor closed; the caller owns it."""
    if isinstance(figure, (bytes, bytearray, memoryview)):
        data = bytes(figure)
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("bytes given as a figure are not a PNG image (no PNG signature)")
        return data
    buffer = io.BytesIO()
    if callable(getattr(figure, "savefig", None)):
        kwargs: dict[str, Any] = {"format": "png"}
        if dpi is not None:
            kwargs["dpi"] = dpi
        figure.savefig(buffer, **kwargs)
    elif callable(getattr(figure, "save", None)) and hasattr(figure, "mode"):  # a PIL image
        figure.save(buffer, format="PNG")
    else:
        raise TypeError(
            f"cannot log a {type(figure).__module__}.{type(figure).__name__} as a figure: expected a matplotlib "
            f"figure, a PIL image or PNG bytes"
        )
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` read from the PNG header, without decoding the image."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def png_to_pil(png: bytes) -> Any:
    """The PNG as an RGB ``PIL.Image.Image`` (imports Pillow)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")


def png_to_rgb_array(png: bytes) -> Any:
    """The PNG as a ``uint8`` numpy array of shape ``(H, W, 3)`` (imports Pillow and numpy)."""
    import numpy as np

    return np.asarray(png_to_pil(png), dtype=np.uint8)
