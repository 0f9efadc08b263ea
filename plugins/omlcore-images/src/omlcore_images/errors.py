"""The exceptions this plugin raises; each names the file, the CSV line and the column concerned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omlcore.errors import OmlcoreError

if TYPE_CHECKING:
    from omlcore_images.dataframe import Report

__all__ = ["ConversionError", "DataFrameError", "ImageReadError", "PretrainedTransformNotFoundError"]


class DataFrameError(OmlcoreError, ValueError):
    """A dataset CSV (or DataFrame) breaks the format; ``report`` lists every problem found."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.format())


class ImageReadError(OmlcoreError, OSError):
    """An image is missing or cannot be decoded; the message names the file and its CSV line."""

    def __init__(self, path: str, where: str, cause: BaseException | str) -> None:
        self.path = path
        self.where = where
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"Cannot read image {path!r} ({where}): {reason}")


class ConversionError(OmlcoreError, ValueError):
    """A converter's source folder does not have the layout it expects; nothing was written."""


class PretrainedTransformNotFoundError(OmlcoreError, LookupError):
    """No installed plugin declares the evaluation transform of a pretrained weights key."""

    def __init__(self, key: str, known: list[str], suggestions: list[str]) -> None:
        self.key = key
        self.known = known
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        listed = ", ".join(known) if known else "none"
        super().__init__(
            f"No evaluation transform is declared for the pretrained weights {key!r}.{hint} Known keys: {listed}. "
            f'A plugin declares one under [project.entry-points."omlcore.pretrained_transforms"] '
            f'as {key} = "package.module:zero_arg_function".'
        )
