"""omlcore-onnx: export any omlcore extractor to ONNX and check it with onnxruntime.

:func:`export_onnx` writes ``extract(input) -> embeddings`` of an extractor to an ``.onnx`` file and compares
onnxruntime's output with torch's; ``omlcore export onnx --extractor SPEC --out model.onnx`` does the same
from the command line.

The names load lazily: the CLI imports :mod:`omlcore_onnx.hooks` (and so this package) at every start and
must not pay for torch then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "BatchCheck": "omlcore_onnx.export",
    "ExportReport": "omlcore_onnx.export",
    "ExtractGraph": "omlcore_onnx.export",
    "declared_input_shape": "omlcore_onnx.export",
    "export_onnx": "omlcore_onnx.export",
    "InputShapeError": "omlcore_onnx.errors",
    "OnnxExportError": "omlcore_onnx.errors",
    "OnnxMismatchError": "omlcore_onnx.errors",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_onnx.errors import InputShapeError as InputShapeError
    from omlcore_onnx.errors import OnnxExportError as OnnxExportError
    from omlcore_onnx.errors import OnnxMismatchError as OnnxMismatchError
    from omlcore_onnx.export import BatchCheck as BatchCheck
    from omlcore_onnx.export import ExportReport as ExportReport
    from omlcore_onnx.export import ExtractGraph as ExtractGraph
    from omlcore_onnx.export import declared_input_shape as declared_input_shape
    from omlcore_onnx.export import export_onnx as export_onnx


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore_onnx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
