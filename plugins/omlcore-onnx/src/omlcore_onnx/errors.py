"""Errors of the ONNX export; the ``omlcore`` CLI prints them as one paragraph.

- :class:`InputShapeError` (a :class:`~omlcore.errors.ConfigError`, exit status 2): the input size is missing,
  malformed, or not one the extractor accepts.
- :class:`OnnxExportError` (exit status 1): the exporter failed, or the exported file could not be read back.
- :class:`OnnxMismatchError` (exit status 1): onnxruntime's output differs from torch's beyond the tolerance;
  ``report`` holds the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omlcore.errors import ConfigError, OmlcoreError

if TYPE_CHECKING:
    from omlcore_onnx.export import ExportReport

__all__ = ["InputShapeError", "OnnxExportError", "OnnxMismatchError"]


class OnnxExportError(OmlcoreError):
    """Exporting an extractor to ONNX failed; nothing was written at the destination."""


class InputShapeError(OnnxExportError, ConfigError):
    """The input size given (or declared by the extractor) cannot be used for the export."""


class OnnxMismatchError(OnnxExportError):
    """The exported model's output differs from the extractor's beyond the tolerance."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report
