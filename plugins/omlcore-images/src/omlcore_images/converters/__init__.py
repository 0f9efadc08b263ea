"""Converters of public datasets to the CSV format: ``convert(name, src, dst)`` writes ``dst/df.csv``.

Every converter builds the whole table in memory, checks it with
:func:`~omlcore_images.dataframe.check_dataframe` (image files must exist) and only then writes it
through a temporary file renamed into place; a failure leaves nothing behind. Image paths in the CSV are
relative to ``dst`` (the CSV's folder), so ``omlcore data check DST/df.csv`` works as is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from omlcore_images.converters._common import ConversionResult

__all__ = ["CONVERTERS", "ConversionResult", "convert"]


def _emoji(src: Any, dst: Any, **kw: Any) -> ConversionResult:
    from omlcore_images.converters.emoji import convert_emoji

    return convert_emoji(src, dst, **kw)


def _sop(src: Any, dst: Any, **kw: Any) -> ConversionResult:
    from omlcore_images.converters.sop import convert_sop

    return convert_sop(src, dst, **kw)


def _inshop(src: Any, dst: Any, **kw: Any) -> ConversionResult:
    from omlcore_images.converters.inshop import convert_inshop

    return convert_inshop(src, dst, **kw)


def _cub(src: Any, dst: Any, **kw: Any) -> ConversionResult:
    from omlcore_images.converters.cub import convert_cub

    return convert_cub(src, dst, **kw)


def _cars(src: Any, dst: Any, **kw: Any) -> ConversionResult:
    from omlcore_images.converters.cars import convert_cars

    return convert_cars(src, dst, **kw)


CONVERTERS: dict[str, Callable[..., ConversionResult]] = {
    "emoji": _emoji,
    "sop": _sop,
    "inshop": _inshop,
    "cub": _cub,
    "cars": _cars,
}


def convert(name: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: Any) -> ConversionResult:
    """Run the converter ``name`` (one of :data:`CONVERTERS`) on the unpacked dataset ``src``."""
    if name not in CONVERTERS:
        raise ValueError(f"unknown converter {name!r}; known: {', '.join(CONVERTERS)}")
    return CONVERTERS[name](src, dst, **options)
