"""Evaluate embeddings made anywhere against a retrieval CSV (``omlcore evaluate``).

The inputs are an ``N x D`` array (``.npy``, ``.pt``/``.pth`` or ``.parquet``) whose row ``i`` is the
embedding of data row ``i`` of the CSV, and the CSV itself, with the columns of the omlcore format:

- ``label`` (required): integers, or text (then each distinct text is one label); never both;
- ``is_query``, ``is_gallery`` (required): ``True``/``False``/``1``/``0``; rows where both are empty or
  false (training rows) are left out;
- ``category`` (optional): per-category metrics; ``sequence`` (optional): gallery items of the query's
  sequence are ignored;
- ``path`` and ``x_1, x_2, y_1, y_2`` (optional): only for the visual report.

Everything is checked before the kNN search starts: a bad input raises :class:`EvaluationInputError`
naming the file, the line (the header is line 1) and the column.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import numpy.typing as npt

    from omlcore_metrics.functional import MetricsResult


__all__ = [
    "EMBEDDING_SUFFIXES",
    "EvaluationInputError",
    "EvaluationResult",
    "EvaluationTable",
    "MetricArgs",
    "cmd_evaluate",
    "evaluate_files",
    "format_metrics_table",
    "load_embeddings",
    "metrics_to_json",
    "read_table",
]

EMBEDDING_SUFFIXES = (".npy", ".pt", ".pth", ".parquet")
REQUIRED_COLUMNS = ("label", "is_query", "is_gallery")
BBOX_COLUMNS = ("x_1", "x_2", "y_1", "y_2")
_TRUE = frozenset({"1", "1.0", "true", "t", "yes"})
_FALSE = frozenset({"0", "0.0", "false", "f", "no"})
EXIT_OK, EXIT_INVALID = 0, 2


class EvaluationInputError(ValueError):
    """The files or options given to an evaluation cannot be used; the message says where and why."""


# ---- options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricArgs:
    """Which metrics to compute, checked on construction (``k >= 1``, rates in range)."""

    cmc_top_k: tuple[int, ...] = (1, 5)
    precision_top_k: tuple[int, ...] = (5,)
    map_top_k: tuple[int, ...] = (5,)
    fmr_vals: tuple[float, ...] = ()
    pcf_variance: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        for name in ("cmc_top_k", "precision_top_k", "map_top_k"):
            for k in getattr(self, name):
                if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
                    raise EvaluationInputError(f"{name}: every k must be a positive integer, got {k!r}")
        for v in self.fmr_vals:
            if not 0.0 <= v <= 1.0:
                raise EvaluationInputError(f"fmr_vals: every rate must lie in [0, 1], got {v!r}")
        for v in self.pcf_variance:
            if not 0.0 < v <= 1.0:
                raise EvaluationInputError(f"pcf_variance: every level must lie in (0, 1], got {v!r}")
        if not (self.cmc_top_k or self.precision_top_k or self.map_top_k or self.fmr_vals or self.pcf_variance):
            raise EvaluationInputError("no metric asked for: give at least one of cmc, precision, map, fmr, pcf")

    @property
    def max_k(self) -> int:
        """The largest k of the rank-based metrics (0 if there are none)."""
        return max((*self.cmc_top_k, *self.precision_top_k, *self.map_top_k), default=0)


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"1,5"`` -> ``(1, 5)``; an empty string gives ``()``; non-integers and ``k <= 0`` raise."""
    out: list[int] = []
    for part in _split_list(text):
        try:
            k = int(part)
        except ValueError:
            raise EvaluationInputError(f"{option}: {part!r} is not an integer (expected e.g. '1,5')") from None
        if k <= 0:
            raise EvaluationInputError(f"{option}: k must be a positive integer, got {k}")
        out.append(k)
    return tuple(out)


def parse_float_list(text: str, option: str) -> tuple[float, ...]:
    """``"0.01,0.1"`` -> ``(0.01, 0.1)``; an empty string gives ``()``."""
    out: list[float] = []
    for part in _split_list(text):
        try:
            v = float(part)
        except ValueError:
            raise EvaluationInputError(f"{option}: {part!r} is not a number (expected e.g. '0.01,0.1')") from None
        if not math.isfinite(v):
            raise EvaluationInputError(f"{option}: {part!r} is not a finite number")
        out.append(v)
    return tuple(out)


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


# ---- the CSV ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationTable:
    """The rows of a CSV that take part in the evaluation (queries and gallery items), in CSV order.

    ``rows`` holds their 0-based data-row numbers (line = row + 2) and ``labels`` their labels: the
    integers of the file, or codes of text labels with ``label_names[code]`` the text (else None).
    ``n_rows`` counts every data row of the file.
    """

    csv_path: Path
    n_rows: int
    rows: list[int]
    labels: list[int]
    label_names: list[str] | None
    is_query: list[bool]
    is_gallery: list[bool]
    categories: list[str] | None = None
    sequence: list[str | None] | None = None
    paths: list[str] | None = None
    bboxes: list[tuple[int, int, int, int] | None] | None = None
    left_out: int = 0

    def __len__(self) -> int:
        return len(self.rows)


def _line(row: int) -> int:
    return row + 2


def _rows_text(rows: Sequence[int], limit: int = 5) -> str:
    lines = ", ".join(str(_line(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"line{'s' if len(rows) > 1 else ''} {lines}{more}"


def _parse_flag(value: str) -> bool | None:
    v = value.strip().lower()
    if v == "" or v == "nan":
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(value)


def _parse_int(value: str) -> int | None:
    """The integer written in ``value`` (``3`` or ``3.0``), or None if it is not a number."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    if not f.is_integer():
        raise ValueError(value)
    return int(f)


def read_table(csv_path: str | Path, *, sep: str = ",") -> EvaluationTable:
    """Read and check the CSV's evaluation columns; raise :class:`EvaluationInputError` on any problem."""
    path = Path(csv_path)
    if not path.is_file():
        raise EvaluationInputError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=sep)
            header = next(reader, None)
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationInputError(f"{path}: cannot read it as a CSV: {exc}") from exc
    if header is None:
        raise EvaluationInputError(f"{path}: the file is empty (expected a header line)")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise EvaluationInputError(
            f"{path}: missing column(s) {', '.join(missing)}; the header has: {', '.join(header) or '(nothing)'}"
        )
    col = {name: i for i, name in enumerate(header)}
    for r, rec in enumerate(records):
        if len(rec) != len(header):
            raise EvaluationInputError(
                f"{path}, line {_line(r)}: {len(rec)} fields, but the header has {len(header)} columns"
            )

    def cell(rec: list[str], name: str) -> str:
        return rec[col[name]].strip()

    # flags: which rows take part
    keep: list[int] = []
    q_flags: list[bool] = []
    g_flags: list[bool] = []
    for r, rec in enumerate(records):
        flags: list[bool | None] = []
        for name in ("is_query", "is_gallery"):
            try:
                flags.append(_parse_flag(cell(rec, name)))
            except ValueError:
                raise EvaluationInputError(
                    f"{path}, line {_line(r)}, column {name}: {cell(rec, name)!r} is not a boolean "
                    f"(expected True/False, 1/0 or empty)"
                ) from None
        q, g = bool(flags[0]), bool(flags[1])
        if q or g:
            keep.append(r)
            q_flags.append(q)
            g_flags.append(g)
    if not records:
        raise EvaluationInputError(f"{path}: the file has a header but no rows")
    if not any(q_flags):
        raise EvaluationInputError(f"{path}: no row has is_query true, so there is nothing to evaluate")
    if not any(g_flags):
        raise EvaluationInputError(f"{path}: no row has is_gallery true, so there is nothing to retrieve from")

    labels, label_names = _read_labels(path, records, keep, col["label"])
    categories = None
    if "category" in col:
        categories = [cell(records[r], "category") for r in keep]
        empty = [r for r, c in zip(keep, categories, strict=True) if c == "" or c.lower() == "nan"]
        if empty:
            raise EvaluationInputError(f"{path}, {_rows_text(empty)}, column category: empty category")
        if "OVERALL" in categories:
            raise EvaluationInputError(f"{path}, column category: 'OVERALL' is reserved for the whole dataset")
    sequence = None
    if "sequence" in col:
        sequence = [cell(records[r], "sequence") or None for r in keep]
    paths = [cell(records[r], "path") for r in keep] if "path" in col else None
    bboxes = _read_bboxes(path, records, keep, col) if all(c in col for c in BBOX_COLUMNS) else None
    return EvaluationTable(
        csv_path=path,
        n_rows=len(records),
        rows=keep,
        labels=labels,
        label_names=label_names,
        is_query=q_flags,
        is_gallery=g_flags,
        categories=categories,
        sequence=sequence,
        paths=paths,
        bboxes=bboxes,
        left_out=len(records) - len(keep),
    )


def _read_labels(
    path: Path, records: list[list[str]], keep: list[int], index: int
) -> tuple[list[int], list[str] | None]:
    raw = [records[r][index].strip() for r in keep]
    empty = [r for r, v in zip(keep, raw, strict=True) if v == "" or v.lower() == "nan"]
    if empty:
        raise EvaluationInputError(f"{path}, {_rows_text(empty)}, column label: missing label")
    numbers: list[int | None] = []
    for r, v in zip(keep, raw, strict=True):
        try:
            numbers.append(_parse_int(v))
        except ValueError:
            raise EvaluationInputError(
                f"{path}, line {_line(r)}, column label: {v!r} is not an integer label"
            ) from None
    numeric = [r for r, n in zip(keep, numbers, strict=True) if n is not None]
    text = [r for r, n in zip(keep, numbers, strict=True) if n is None]
    if numeric and text:
        raise EvaluationInputError(
            f"{path}, column label: labels of mixed types: line {_line(numeric[0])} has the number "
            f"{records[numeric[0]][index].strip()!r} but line {_line(text[0])} has the text "
            f"{records[text[0]][index].strip()!r}; use integers only or text only"
        )
    if text:
        names = sorted(set(raw))
        code = {name: i for i, name in enumerate(names)}
        return [code[v] for v in raw], names
    return [n for n in numbers if n is not None], None


def _read_bboxes(
    path: Path, records: list[list[str]], keep: list[int], col: Mapping[str, int]
) -> list[tuple[int, int, int, int] | None]:
    out: list[tuple[int, int, int, int] | None] = []
    for r in keep:
        raw = [records[r][col[c]].strip() for c in BBOX_COLUMNS]
        if all(v == "" or v.lower() == "nan" for v in raw):
            out.append(None)
            continue
        try:
            x1, x2, y1, y2 = (_parse_int(v) for v in raw)
        except ValueError:
            x1 = None  # falls through to the error below
            x2 = y1 = y2 = None
        if x1 is None or x2 is None or y1 is None or y2 is None or not (0 <= x1 < x2 and 0 <= y1 < y2):
            raise EvaluationInputError(
                f"{path}, line {_line(r)}, columns x_1, x_2, y_1, y_2: {raw} is not a box "
                f"(four integers with 0 <= x_1 < x_2 and 0 <= y_1 < y_2, or all empty)"
            )
        out.append((x1, y1, x2, y2))
    return out


# ---- the embeddings -----------------------------------------------------------------------------------


def load_embeddings(path: str | Path) -> npt.NDArray[np.float32]:
    """Read an ``N x D`` float array from ``.npy``, ``.pt``/``.pth`` (a tensor, or a dict with an
    ``"embeddings"`` tensor) or ``.parquet`` (every column numeric; needs pandas and pyarrow)."""
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise EvaluationInputError(f"{file}: no such file")
    suffix = file.suffix.lower()
    array: Any
    try:
        if suffix == ".npy":
            array = np.load(file, allow_pickle=False)
        elif suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(file, map_location="cpu", weights_only=True)
            if isinstance(obj, Mapping):
                if "embeddings" not in obj:
                    raise EvaluationInputError(
                        f"{file}: holds a dict without an 'embeddings' entry (keys: {', '.join(map(str, obj))})"
                    )
                obj = obj["embeddings"]
            if not isinstance(obj, torch.Tensor):
                raise EvaluationInputError(f"{file}: holds a {type(obj).__name__}, expected a tensor")
            array = obj.detach().to(torch.float32).numpy()
        elif suffix == ".parquet":
            try:
                import pandas as pd  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                raise EvaluationInputError(f"{file}: reading .parquet needs pandas and pyarrow") from None
            frame = pd.read_parquet(file)
            bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
            if bad:
                raise EvaluationInputError(f"{file}: non-numeric column(s) {', '.join(bad)}")
            array = frame.to_numpy()
        else:
            raise EvaluationInputError(
                f"{file}: unknown embeddings format {suffix or '(no suffix)'!r}; use one of "
                f"{', '.join(EMBEDDING_SUFFIXES)}"
            )
    except EvaluationInputError:
        raise
    except Exception as exc:  # unreadable file of a known format
        raise EvaluationInputError(f"{file}: cannot read the embeddings: {type(exc).__name__}: {exc}") from exc
    if array.dtype.kind not in "fiu":
        raise EvaluationInputError(f"{file}: the array has dtype {array.dtype}, expected numbers")
    if array.ndim != 2:
        raise EvaluationInputError(f"{file}: the array has shape {tuple(array.shape)}, expected N x D (2 dimensions)")
    if array.shape[1] == 0:
        raise EvaluationInputError(f"{file}: the embeddings have 0 dimensions")
    return np.ascontiguousarray(array, dtype=np.float32)


def check_embeddings(embeddings: npt.NDArray[np.float32], table: EvaluationTable, source: str) -> None:
    """Row count equal to the CSV's; finite values in every row that takes part."""
    import numpy as np

    if embeddings.shape[0] != table.n_rows:
        raise EvaluationInputError(
            f"{source} has {embeddings.shape[0]} rows but {table.csv_path} has {table.n_rows} data rows; "
            f"row i of the embeddings must be the embedding of data row i of the CSV"
        )
    used = embeddings[table.rows]
    bad_rows = np.flatnonzero(~np.isfinite(used).all(axis=1))
    if bad_rows.size:
        rows = [table.rows[int(i)] for i in bad_rows]
        raise EvaluationInputError(
            f"{source}: NaN or infinite values in the embeddings of {len(rows)} row(s), "
            f"CSV {_rows_text(rows)} (array rows {', '.join(str(r) for r in rows[:5])})"
        )


# ---- evaluation ---------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """The metrics of one evaluation and what produced them (rows of ``table`` index ``result``)."""

    result: MetricsResult
    table: EvaluationTable
    embeddings: Any  # torch.Tensor (N_used, D), the rows of ``table.rows``
    args: MetricArgs
    warnings: list[str] = field(default_factory=list)

    @property
    def reduced(self) -> dict[str, dict[str, dict[Any, float]]]:
        """``{"OVERALL": {"cmc": {1: v}}, "<category>": ...}``."""
        return self.result.reduced

    def to_json(self, per_query: bool = False) -> dict[str, Any]:
        """See :func:`metrics_to_json`."""
        return metrics_to_json(self, per_query=per_query)


def evaluate_files(
    embeddings: str | Path,
    csv_path: str | Path,
    *,
    args: MetricArgs | None = None,
    backend: str = "torch",
    no_positive: str = "skip",
    recall_top_k: Sequence[int] = (),
    sep: str = ",",
    postprocessor: Any = None,
) -> EvaluationResult:
    """Check the inputs, then compute the metrics of ``embeddings`` over the rows of ``csv_path``.

    ``postprocessor``: a :class:`~omlcore.protocols.RetrievalPostprocessor` that reads embeddings (or
    nothing), applied to every query's top results before the per-query metrics (see
    :mod:`omlcore_metrics.postprocessing`). Raises :class:`EvaluationInputError` for any bad input before
    the search starts.
    """
    import warnings

    import torch

    from omlcore_metrics.functional import retrieval_metrics
    from omlcore_metrics.postprocessing import postprocessed_retrieval_metrics

    metric_args = args or MetricArgs()
    if no_positive not in ("skip", "miss", "raise"):
        raise EvaluationInputError(f"no_positive must be 'skip', 'miss' or 'raise', got {no_positive!r}")
    if postprocessor is not None and getattr(postprocessor, "reads", None) == "items":
        raise EvaluationInputError(
            f"the postprocessor {type(postprocessor).__name__} reads dataset items (images), and omlcore evaluate "
            f"has only embeddings: use one that reads embeddings (pairwise_embeddings), or omlcore validate"
        )
    table = read_table(csv_path, sep=sep)
    array = load_embeddings(embeddings)
    check_embeddings(array, table, str(embeddings))
    _check_backend(backend)
    used = torch.from_numpy(array[table.rows])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arrays = (used, table.labels, table.is_query, table.is_gallery)
            kwargs: dict[str, Any] = dict(
                categories=table.categories,
                sequence=table.sequence,
                cmc_top_k=metric_args.cmc_top_k,
                precision_top_k=metric_args.precision_top_k,
                map_top_k=metric_args.map_top_k,
                fmr_vals=metric_args.fmr_vals,
                pcf_variance=metric_args.pcf_variance,
                recall_top_k=recall_top_k,
                no_positive=no_positive,
                backend=backend,
            )
            if postprocessor is None:
                result = retrieval_metrics(*arrays, **kwargs)
            else:
                result = postprocessed_retrieval_metrics(*arrays, postprocessor, **kwargs)
        except (ValueError, TypeError) as exc:
            raise EvaluationInputError(f"{csv_path}: {exc}") from exc
    return EvaluationResult(
        result=result, table=table, embeddings=used, args=metric_args, warnings=[str(w.message) for w in caught]
    )


def _check_backend(backend: str) -> None:
    if backend == "torch":
        return
    from omlcore.registry import available

    names = available("knn")
    if backend not in names:
        raise EvaluationInputError(f"unknown kNN backend {backend!r}; installed: {', '.join(names) or '(none)'}")


def _json_key(key: Any) -> str:
    return str(key)


def _json_value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def metrics_to_json(evaluation: EvaluationResult, per_query: bool = False) -> dict[str, Any]:
    """``{"OVERALL": {"cmc": {"1": v}, ...}, "<category>": {...}}`` (NaN written as null).

    With ``per_query``, also ``"per_query"``: ``{"rows": [CSV data row of each query], "label": [...],
    "category": [...] (when present), "cmc": {"1": [value per query]}, ...}`` in the order of the
    queries in the CSV.
    """
    out: dict[str, Any] = {
        group: {metric: {_json_key(k): _json_value(v) for k, v in values.items()} for metric, values in metrics.items()}
        for group, metrics in evaluation.reduced.items()
    }
    if per_query:
        if "per_query" in out:
            raise EvaluationInputError("a category named 'per_query' clashes with the per-query section")
        table, res = evaluation.table, evaluation.result
        q_rows = [int(r) for r in res.query_rows.tolist()]
        section: dict[str, Any] = {
            "rows": [table.rows[r] for r in q_rows],
            "label": [table.label_names[table.labels[r]] if table.label_names else table.labels[r] for r in q_rows],
        }
        if table.categories is not None:
            section["category"] = [table.categories[r] for r in q_rows]
        for metric, values in res.unreduced["OVERALL"].items():
            section[metric] = {_json_key(k): [_json_value(float(x)) for x in v.tolist()] for k, v in values.items()}
        out["per_query"] = section
    return out


def format_metrics_table(reduced: Mapping[str, Mapping[str, Mapping[Any, float]]]) -> str:
    """A plain-text table: one line per metric, one column per group (OVERALL first)."""
    from omlcore_metrics.report import metrics_table_rows

    groups, rows = metrics_table_rows(reduced)
    head = ["metric", *groups]
    body = [
        [name, *("" if v is None else ("nan" if math.isnan(v) else f"{v:.4f}") for v in values)]
        for name, values in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- the command --------------------------------------------------------------------------------------


def _metric_args_from_cli(args: argparse.Namespace) -> MetricArgs:
    return MetricArgs(
        cmc_top_k=parse_int_list(args.cmc, "--cmc"),
        precision_top_k=parse_int_list(args.precision, "--precision"),
        map_top_k=parse_int_list(args.map, "--map"),
        fmr_vals=parse_float_list(args.fmr, "--fmr"),
        pcf_variance=parse_float_list(args.pcf, "--pcf"),
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``omlcore evaluate``: print the metrics table; write JSON (``--out``) and a report (``--report``).

    Exit 0 on success, 2 on bad input (the message says what and where).
    """
    import sys

    try:
        return _run(args)
    except EvaluationInputError as exc:
        print(f"omlcore: error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    metric_args = _metric_args_from_cli(args)
    recall = parse_int_list(args.recall, "--recall")
    if args.report_queries is not None:
        report_rows = parse_int_list_allow_zero(args.report_queries, "--report-queries")
    else:
        report_rows = ()
    worst_by = _split_list(args.worst_by) if args.worst_by else None
    for option, value in (("--n-queries", args.n_queries), ("--n-instances", args.n_instances)):
        if value <= 0:
            raise EvaluationInputError(f"{option} must be a positive integer, got {value}")
    if args.per_query and args.out is None:
        raise EvaluationInputError("--per-query writes into the JSON file: give --out as well")
    if (worst_by or report_rows) and args.report is None:
        raise EvaluationInputError("--worst-by and --report-queries choose the figures of --report: give --report DIR")
    if args.report is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EvaluationInputError('--report needs matplotlib: pip install "omlcore-metrics[report]"') from None
        if worst_by:
            known = _known_metric_names(metric_args, recall)
            from omlcore_metrics.report import parse_metric_name

            for name in worst_by:
                try:
                    parse_metric_name(name, known)
                except ValueError as exc:
                    raise EvaluationInputError(f"--worst-by: {exc}") from None
    postprocessor = None
    if getattr(args, "postprocessor", None):
        from omlcore.config import component_spec_from_text
        from omlcore.registry import build

        spec = component_spec_from_text(args.postprocessor, "postprocessor", option="--postprocessor")
        postprocessor = build("postprocessor", spec)
    evaluation = evaluate_files(
        args.embeddings, args.csv, args=metric_args, backend=args.backend, no_positive=args.no_positive,
        recall_top_k=recall, postprocessor=postprocessor,
    )  # fmt: skip
    if report_rows:
        position = {r: i for i, r in enumerate(evaluation.table.rows)}
        missing = [r for r in report_rows if r not in position or not evaluation.table.is_query[position[r]]]
        if missing:
            raise EvaluationInputError(f"--report-queries: data rows {missing} of {args.csv} are not queries")
    table = evaluation.table
    print(
        f"{args.csv}: {sum(table.is_query)} queries, {sum(table.is_gallery)} gallery items"
        + (f", {table.left_out} rows neither (left out)" if table.left_out else "")
    )
    for message in evaluation.warnings:
        print(f"warning: {message}")
    print(format_metrics_table(evaluation.reduced))
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(evaluation.to_json(per_query=args.per_query), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if args.report is not None:
        page = write_report(
            evaluation, args.report, root=args.root, worst_by=worst_by, rows=report_rows,
            n_queries=args.n_queries, n_instances=args.n_instances,
        )  # fmt: skip
        print(f"wrote {page}")
    return EXIT_OK


def parse_int_list_allow_zero(text: str, option: str) -> tuple[int, ...]:
    """``"0,3"`` -> ``(0, 3)``: non-negative integers (row numbers)."""
    out: list[int] = []
    for part in _split_list(text):
        if not re.fullmatch(r"\d+", part):
            raise EvaluationInputError(f"{option}: {part!r} is not a row number (expected e.g. '0,3')")
        out.append(int(part))
    return tuple(out)


def _known_metric_names(metric_args: MetricArgs, recall: Sequence[int]) -> list[str]:
    names = [f"cmc/{k}" for k in metric_args.cmc_top_k]
    names += [f"precision/{k}" for k in metric_args.precision_top_k]
    names += [f"map/{k}" for k in metric_args.map_top_k]
    names += [f"recall/{k}" for k in recall]
    return names


def write_report(
    evaluation: EvaluationResult,
    directory: str | Path,
    *,
    root: str | Path | None = None,
    worst_by: Sequence[str] | None = None,
    rows: Sequence[int] = (),
    n_queries: int = 5,
    n_instances: int = 5,
) -> Path:
    """The HTML report of an evaluation (see :func:`omlcore_metrics.report.write_html_report`); ``rows``
    are CSV data rows of queries to draw; image paths are relative to ``root`` (default: the CSV's folder)."""
    from omlcore_metrics.report import ReportData, write_html_report

    table = evaluation.table
    data = ReportData(
        labels=table.labels,
        paths=table.paths,
        bboxes=table.bboxes,
        root=Path(root) if root is not None else table.csv_path.parent,
        label_names=table.label_names,
        sequence=table.sequence,
        embeddings=evaluation.embeddings,
        row_ids=table.rows,
    )
    position = {r: i for i, r in enumerate(table.rows)}
    notes = [
        f"Embeddings evaluated against {table.csv_path} ({sum(table.is_query)} queries, "
        f"{sum(table.is_gallery)} gallery items). Row numbers are CSV data rows (0-based; line = row + 2)."
    ]
    notes += [f"Warning: {w}" for w in evaluation.warnings]
    return write_html_report(
        directory, evaluation.result, data, worst_by=worst_by, queries=[position[r] for r in rows],
        n_queries=n_queries, n_instances=n_instances, notes=notes,
    )  # fmt: skip
