"""Export an extractor's ``extract`` to ONNX, then check the file with onnxruntime against torch.

The graph is ``extract(input) -> embeddings`` of the extractor in ``eval()`` mode, one float32 input
``(batch, *input_shape)`` named ``input`` and one output ``(batch, D)`` named ``embeddings``. The file is
written into a temporary folder beside the destination, checked, and only then moved into place with
:func:`os.replace`; whatever goes wrong, nothing is left behind (unless ``keep_on_mismatch`` asks to keep a
file whose outputs differ).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from omlcore.errors import ConfigError
from omlcore_onnx.errors import InputShapeError, OnnxExportError, OnnxMismatchError

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "BatchCheck",
    "ExportReport",
    "Exporter",
    "ExtractGraph",
    "declared_input_shape",
    "export_onnx",
]

Exporter = Literal["auto", "dynamo", "torchscript"]
"""Which torch exporter to use: ``dynamo`` (``torch.onnx.export(..., dynamo=True)``, built on
``torch.export``), ``torchscript`` (the tracing exporter), or ``auto``: dynamo when this torch has it
(torch >= 2.5 with onnxscript installed), falling back to TorchScript if dynamo fails."""

INPUT_NAME = "input"
OUTPUT_NAME = "embeddings"
DYNAMO_MIN_OPSET = 18
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4

#: Attributes an extractor may declare its input size with, in the order they are looked at. An int ``S``
#: means ``(3, S, S)``, a pair ``(H, W)`` means ``(3, H, W)``, any other tuple is the whole per-item shape.
SIZE_ATTRIBUTES = ("input_shape", "input_size", "im_size", "img_size")
#: A true value of this attribute says that the declared size is the only one the extractor accepts.
FIXED_SIZE_ATTRIBUTE = "fixed_input_size"


@dataclass(frozen=True)
class BatchCheck:
    """onnxruntime against torch on one random batch."""

    batch_size: int
    max_abs_diff: float
    """``max |onnx - torch|`` over the batch (``inf`` when the shapes differ or a value is not finite)."""
    max_abs_torch: float
    """``max |torch|``: the scale of the outputs the difference is measured against."""
    passed: bool
    """Every element satisfies ``|onnx - torch| <= atol + rtol * |torch|``."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how the check went."""

    path: Path
    input_shape: tuple[int, ...]
    """The shape of one input item (the batch dimension excluded), e.g. ``(3, 224, 224)``."""
    output_dim: int
    dynamic_batch: bool
    batch_size: int
    """The batch size the graph was traced with (the only one it accepts when the batch is not dynamic)."""
    exporter: str
    """``"dynamo"`` or ``"torchscript"``: the exporter that produced the file."""
    opset: int
    size_bytes: int
    """Size of the ``.onnx`` file plus its external-data file, if the weights needed one (over 2 GB)."""
    atol: float
    rtol: float
    checks: tuple[BatchCheck, ...]
    """One entry per checked batch size; empty when the check was turned off."""
    kept: bool
    """Whether the file is at ``path`` (false after a mismatch unless ``keep_on_mismatch``)."""
    notes: tuple[str, ...] = ()

    @property
    def checked(self) -> bool:
        """Whether onnxruntime's output was compared with torch's."""
        return bool(self.checks)

    @property
    def passed(self) -> bool:
        """True when every checked batch matched (also true when nothing was checked)."""
        return all(check.passed for check in self.checks)

    @property
    def max_abs_diff(self) -> float | None:
        """The largest ``|onnx - torch|`` over all checked batches (``None`` if not checked)."""
        return max((check.max_abs_diff for check in self.checks), default=None)

    def summary(self) -> str:
        """A few human-readable lines (what ``omlcore export onnx`` prints)."""
        batch = "batch" if self.dynamic_batch else str(self.batch_size)
        shape_in = ", ".join([batch, *map(str, self.input_shape)])
        exporter = "torch.export-based (dynamo)" if self.exporter == "dynamo" else "TorchScript"
        state = "" if self.kept else " (not kept)"
        lines = [
            f"ONNX file: {self.path}{state}, {_size_text(self.size_bytes)}, {exporter} exporter, opset {self.opset}",
            f"graph: {INPUT_NAME} float32 ({shape_in}) -> {OUTPUT_NAME} float32 ({batch}, {self.output_dim})",
        ]
        lines += [f"note: {note}" for note in self.notes]
        if not self.checked:
            lines.append("check: skipped (--no-check)")
            return "\n".join(lines)
        lines.append(f"check with onnxruntime: pass if |onnx - torch| <= {self.atol:g} + {self.rtol:g} * |torch|")
        for check in self.checks:
            verdict = "ok" if check.passed else "MISMATCH"
            lines.append(
                f"  batch {check.batch_size}: max abs diff {check.max_abs_diff:.3g} "
                f"(max |torch| {check.max_abs_torch:.3g})  {verdict}"
            )
        lines.append(f"result: {'PASSED' if self.passed else 'FAILED'} (max abs diff {self.max_abs_diff:.3g})")
        return "\n".join(lines)


class ExtractGraph(nn.Module):
    """The module that is exported: ``forward(x)`` is ``extractor.extract(x)``."""

    def __init__(self, extractor: Any) -> None:
        super().__init__()
        self.extractor = extractor  # registered as a sub-module when it is one, so its weights are exported

    def forward(self, x: Tensor) -> Tensor:
        """The embeddings of the batch ``x``."""
        out: Tensor = self.extractor.extract(x)
        return out


def _size_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


def _shape_from(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return (3, value, value)
    is_dims = isinstance(value, (tuple, list)) and value
    if is_dims and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        dims = tuple(int(v) for v in value)
        return (3, *dims) if len(dims) == 2 else dims
    return None


def declared_input_shape(extractor: Any) -> tuple[tuple[int, ...], bool] | None:
    """The per-item input shape the extractor declares, and whether it is the only one it accepts.

    Looked up in the attributes ``input_shape``, ``input_size``, ``im_size`` and ``img_size`` (first that is
    set); ``fixed_input_size = True`` marks the size as required. ``None`` when nothing is declared.
    """
    for attribute in SIZE_ATTRIBUTES:
        shape = _shape_from(getattr(extractor, attribute, None))
        if shape is not None:
            return shape, bool(getattr(extractor, FIXED_SIZE_ATTRIBUTE, False))
    return None


def _describe(extractor: Any) -> str:
    return f"the extractor {type(extractor).__name__}"


def _resolve_shape(extractor: Any, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    declared = declared_input_shape(extractor)
    if input_shape is None:
        if declared is None:
            raise InputShapeError(
                f"{_describe(extractor)} declares no input size (none of the attributes "
                f"{', '.join(SIZE_ATTRIBUTES)}); give one: input_shape=(3, 224, 224), or on the command line "
                f"--im-size 224 or --input-shape 3,224,224"
            )
        return declared[0]
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise InputShapeError(
            f"input shape {input_shape!r}: expected the positive sizes of one item without the batch "
            f"dimension, e.g. (3, 224, 224)"
        )
    if declared is not None and declared[1] and declared[0] != shape:
        raise InputShapeError(
            f"{_describe(extractor)} only accepts inputs of shape {declared[0]} (it declares "
            f"{FIXED_SIZE_ATTRIBUTE}=True), got {shape}; use --im-size {declared[0][-1]} or leave the size out"
        )
    return shape


def _module_device(extractor: nn.Module) -> torch.device:
    """The one device of the extractor's weights (CPU when it has none)."""
    devices = {tensor.device for tensor in (*extractor.parameters(), *extractor.buffers())}
    if len(devices) > 1:
        raise OnnxExportError(
            f"{_describe(extractor)} has weights on several devices ({', '.join(sorted(map(str, devices)))}); "
            f"move it to one device (the export runs on CPU)"
        )
    return next(iter(devices), torch.device("cpu"))


def _probe(graph: ExtractGraph, example: Tensor, extractor: Any) -> int:
    """Run the extractor once in torch; clear errors for a size it refuses or an output of the wrong form."""
    try:
        with torch.no_grad():
            out = graph(example)
    except Exception as exc:
        declared = declared_input_shape(extractor)
        hint = (
            f"it declares the input shape {declared[0]}; try --im-size {declared[0][-1]} (or leave the size out)"
            if declared is not None
            else "give the input size it expects with --im-size or --input-shape"
        )
        raise InputShapeError(
            f"{_describe(extractor)} failed on a random input of shape {tuple(example.shape)}: "
            f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}. If the size is wrong, {hint}"
        ) from exc
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != example.shape[0] or not out.is_floating_point():
        got = f"a tensor of shape {tuple(out.shape)} and dtype {out.dtype}" if isinstance(out, Tensor) else repr(out)
        raise OnnxExportError(
            f"{_describe(extractor)}: extract() of a batch of {example.shape[0]} returned {got}; the Extractor "
            f"protocol asks for one float (batch, D) tensor"
        )
    return int(out.shape[1])


def _dynamo_unavailable() -> str | None:
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return f"torch {torch.__version__} has no torch.export-based ONNX exporter (it needs torch>=2.5)"
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return "onnxscript, which the torch.export-based exporter needs, is not installed (pip install onnxscript)"
    return None


def _export_dynamo(graph: ExtractGraph, example: Tensor, file: Path, opset: int | None, dynamic_batch: bool) -> None:
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    # torch.export prints graphs and hints when it fails; the gist goes into the error message instead
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            (example,),
            None,
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            **kwargs,
        )
    if program is None:  # pragma: no cover - torch returns the program when no file is given
        raise OnnxExportError("torch.onnx.export(dynamo=True) returned no ONNX program")
    program.save(str(file))  # one file; weights go to FILE.data only past protobuf's 2 GB limit


def _export_torchscript(
    graph: ExtractGraph, example: Tensor, file: Path, opset: int | None, dynamic_batch: bool
) -> None:
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if opset is not None:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings():  # the tracer's warnings and, on new torch, its deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(file),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            **kwargs,
        )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def _first_line(exc: BaseException) -> str:
    """The gist of an exporter's error: its first line, or the summary line torch's exporter puts further down."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines()]
    if "## Exception summary" in lines:
        summary = [line for line in lines[lines.index("## Exception summary") + 1 :] if line]
        if summary:
            return _CLASS.sub(r"\1", summary[0])
    first = next((line for line in lines if line), "")
    return f"{type(exc).__name__}: {first}"


def _clear(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()


def _run_exporter(
    graph: ExtractGraph, example: Tensor, file: Path, opset: int | None, dynamic_batch: bool, exporter: Exporter
) -> tuple[str, list[str]]:
    notes: list[str] = []
    if exporter == "torchscript":
        try:
            _export_torchscript(graph, example, file, opset, dynamic_batch)
        except Exception as exc:
            raise OnnxExportError(f"the TorchScript ONNX exporter failed: {_first_line(exc)}") from exc
        return "torchscript", notes
    unavailable = _dynamo_unavailable()
    if unavailable is None and exporter == "auto" and opset is not None and opset < DYNAMO_MIN_OPSET:
        unavailable = (
            f"opset {opset} was asked for and the torch.export-based exporter writes {DYNAMO_MIN_OPSET} or newer"
        )
    if unavailable is not None:
        if exporter == "dynamo":
            raise OnnxExportError(f"exporter 'dynamo' is not available: {unavailable}")
        notes.append(f"used the TorchScript exporter: {unavailable}")
        return _run_exporter(graph, example, file, opset, dynamic_batch, "torchscript")[0], notes
    try:
        _export_dynamo(graph, example, file, opset, dynamic_batch)
    except Exception as exc:
        if exporter == "dynamo":
            raise OnnxExportError(
                f"the torch.export-based ONNX exporter failed: {_first_line(exc)} "
                f"(--exporter torchscript tries the tracing exporter)"
            ) from exc
        _clear(file.parent)
        try:
            _export_torchscript(graph, example, file, opset, dynamic_batch)
        except Exception as exc2:
            raise OnnxExportError(
                f"both ONNX exporters failed. torch.export-based: {_first_line(exc)}; TorchScript: {_first_line(exc2)}"
            ) from exc2
        notes.append(f"the torch.export-based exporter failed ({_first_line(exc)}); used the TorchScript exporter")
        return "torchscript", notes
    return "dynamo", notes


def _opset_of(file: Path) -> int:
    import onnx

    try:
        model = onnx.load(str(file), load_external_data=False)
        onnx.checker.check_model(str(file))
    except Exception as exc:
        raise OnnxExportError(f"the exported file does not pass onnx.checker: {_first_line(exc)}") from exc
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _check(
    graph: ExtractGraph,
    file: Path,
    input_shape: tuple[int, ...],
    batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
    seed: int,
) -> list[BatchCheck]:
    import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

    graph.eval()  # an exporter may have switched modes; the reference is the eval-mode output
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes about graph optimisations on stderr
    try:
        session = ort.InferenceSession(str(file), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxExportError(
            f"onnxruntime {ort.__version__} cannot load the exported model: {_first_line(exc)}"
        ) from exc
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for batch in batch_sizes:
        x = torch.randn((batch, *input_shape), generator=generator)
        with torch.no_grad():
            reference = graph(x).detach().to(torch.float64).numpy()
        try:
            got = np.asarray(session.run(None, {input_name: x.numpy()})[0], dtype=np.float64)
        except Exception as exc:
            raise OnnxExportError(
                f"onnxruntime failed on a batch of shape {tuple(x.shape)}: {_first_line(exc)}"
            ) from exc
        scale = float(np.abs(reference).max()) if reference.size else 0.0
        if got.shape != reference.shape:
            checks.append(BatchCheck(batch, math.inf, scale, False))
            continue
        diff = np.abs(got - reference)
        max_diff = float(diff.max()) if diff.size else 0.0
        finite = bool(np.isfinite(got).all() and np.isfinite(reference).all())
        passed = finite and bool((diff <= atol + rtol * np.abs(reference)).all())
        checks.append(BatchCheck(batch, max_diff if finite else math.inf, scale, passed))
    return checks


def export_onnx(
    extractor: Any,
    path: str | os.PathLike[str],
    *,
    input_shape: Sequence[int] | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    batch_size: int | None = None,
    check: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    check_batch_sizes: Sequence[int] | None = None,
    exporter: Exporter = "auto",
    keep_on_mismatch: bool = False,
    seed: int = 0,
) -> ExportReport:
    """Export ``extractor.extract`` to the ONNX file ``path`` and check it with onnxruntime.

    Args:
        extractor: any :class:`omlcore.protocols.Extractor` (usually a ``torch.nn.Module``); exported in
            ``eval()`` mode on CPU (a module on another device is moved to CPU for the export and back
            afterwards, so that the reference is free of TF32 and other accelerator shortcuts), its training
            flag restored afterwards.
        path: the ``.onnx`` file to write (its folder must exist); replaced if it exists.
        input_shape: the shape of one input item without the batch dimension, e.g. ``(3, 224, 224)``;
            default: the size the extractor declares (see :func:`declared_input_shape`).
        opset: the ONNX opset; default: the exporter's.
        dynamic_batch: leave the batch dimension free; otherwise the graph only takes ``batch_size`` items.
        batch_size: the batch of the example input the graph is traced with; default 2 when dynamic (it must
            be at least 2 then, as ``torch.export`` specialises sizes 0 and 1), else 1.
        check: run the file with onnxruntime on random inputs and compare with torch.
        atol, rtol: the check passes when every ``|onnx - torch| <= atol + rtol * |torch|``.
        check_batch_sizes: the batch sizes checked; default ``(1, 3)`` when dynamic, else ``(batch_size,)``.
        exporter: see :data:`Exporter`.
        keep_on_mismatch: keep the file at ``path`` when the check fails (the error is raised all the same).
        seed: seed of the random inputs.

    Returns:
        The :class:`ExportReport`.

    Raises:
        InputShapeError: no usable input size, or the extractor fails on the size given.
        OnnxExportError: the exporter failed or the file cannot be read back; nothing is written.
        OnnxMismatchError: the outputs differ beyond the tolerance (``.report`` has the figures).
    """
    exporter_names = get_args(Exporter)
    if exporter not in exporter_names:
        raise ValueError(f"exporter={exporter!r}: expected one of {', '.join(exporter_names)}")
    if atol < 0 or rtol < 0 or not (math.isfinite(atol) and math.isfinite(rtol)):
        raise ValueError(f"atol={atol}, rtol={rtol}: tolerances must be finite and >= 0")
    if batch_size is None:
        batch_size = 2 if dynamic_batch else 1
    if batch_size < (2 if dynamic_batch else 1):
        raise ValueError(f"batch_size={batch_size}: must be >= {2 if dynamic_batch else 1}")
    if check_batch_sizes is None:
        check_batch_sizes = (1, 3) if dynamic_batch else (batch_size,)
    if not dynamic_batch and any(b != batch_size for b in check_batch_sizes):
        raise ValueError(f"check_batch_sizes={tuple(check_batch_sizes)}: a static graph only takes {batch_size}")
    if any(b < 1 for b in check_batch_sizes):
        raise ValueError(f"check_batch_sizes={tuple(check_batch_sizes)}: batch sizes must be >= 1")
    if not callable(getattr(extractor, "extract", None)):
        raise OnnxExportError(f"{type(extractor).__name__} is not an Extractor: it has no extract() method")

    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {target}: the folder {folder} does not exist")
    shape = _resolve_shape(extractor, input_shape)

    was_training = extractor.training if isinstance(extractor, nn.Module) else None
    home = _module_device(extractor) if isinstance(extractor, nn.Module) else torch.device("cpu")
    graph = ExtractGraph(extractor)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    try:
        graph.eval()  # eval() of the wrapper reaches the extractor when it is a module
        if home.type != "cpu":
            extractor.to("cpu")
        generator = torch.Generator().manual_seed(seed)
        example = torch.randn((batch_size, *shape), generator=generator)
        output_dim = _probe(graph, example, extractor)

        file = work / target.name
        used, notes = _run_exporter(graph, example, file, opset, dynamic_batch, exporter)
        if not file.is_file():
            raise OnnxExportError(f"the {used} exporter wrote no file")
        opset_used = _opset_of(file)
        if opset is not None and opset_used != opset:
            notes.append(f"opset {opset} was asked for; the {used} exporter wrote opset {opset_used}")
        size = sum(p.stat().st_size for p in work.iterdir() if p.is_file())
        checks = _check(graph, file, shape, check_batch_sizes, atol, rtol, seed + 1) if check else []
        passed = all(c.passed for c in checks)
        keep = passed or keep_on_mismatch
        report = ExportReport(
            path=target,
            input_shape=shape,
            output_dim=output_dim,
            dynamic_batch=dynamic_batch,
            batch_size=batch_size,
            exporter=used,
            opset=opset_used,
            size_bytes=size,
            atol=atol,
            rtol=rtol,
            checks=tuple(checks),
            kept=keep,
            notes=tuple(notes),
        )
        if keep:
            # external-data files first, so the .onnx file never names data that is not there yet
            for item in sorted(work.iterdir(), key=lambda p: p == file):
                os.replace(item, folder / item.name)
        if not passed:
            what = f"kept at {target} (keep_on_mismatch)" if keep else "not kept"
            raise OnnxMismatchError(
                f"the ONNX model's output differs from torch's: max abs diff {report.max_abs_diff:.3g} > "
                f"atol {atol:g} + rtol {rtol:g} * |torch|; the file was {what}",
                report,
            )
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(extractor, nn.Module) and was_training is not None:
            extractor.train(was_training)  # the exporters may have switched modes too
            if home.type != "cpu":
                extractor.to(home)
