"""The dataset CSV format: checking it (every problem, with its line and column) and reading it.

One row per image. Required columns: ``label``, ``path``, ``split`` (``train`` or ``validation``),
``is_query``, ``is_gallery`` (empty on train rows; ``True``/``False`` or ``1``/``0`` on validation rows).
Optional: ``category``, the bounding box ``x_1, x_2, y_1, y_2`` (left, right, top, bottom in pixels; all
four empty means the whole image) and ``sequence``.

**Line numbers.** Problems name *lines of the CSV file*: the header is line 1, so the first data row is
line 2 (for an in-memory DataFrame the same numbering is used, as if it were written with its header:
the row at position ``i`` is line ``i + 2``). :func:`read_dataframe` returns the frame indexed by that
line number (index name ``"line"``), so datasets built from it report the line of a broken image.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from omlcore_images.errors import DataFrameError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "ALL_COLUMNS",
    "BBOX_COLUMNS",
    "FIRST_LINE",
    "MAX_LINES_SHOWN",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "Problem",
    "Report",
    "check_dataframe",
    "read_dataframe",
    "resolve_path",
    "write_csv_atomic",
]

REQUIRED_COLUMNS = ("label", "path", "split", "is_query", "is_gallery")
BBOX_COLUMNS = ("x_1", "x_2", "y_1", "y_2")
OPTIONAL_COLUMNS = ("category", *BBOX_COLUMNS, "sequence")
ALL_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
SPLITS = ("train", "validation")
MAX_LINES_SHOWN = 20
FIRST_LINE = 2
"""The line number of the first data row (the header is line 1)."""

_TRUE = frozenset({"true", "1", "1.0"})
_FALSE = frozenset({"false", "0", "0.0"})
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One kind of problem and every line it occurs on.

    ``code`` is a stable identifier (``bad_flag``, ``missing_file``...), ``column`` the CSV column
    concerned (``None`` for file-level problems), ``lines`` the CSV line numbers (header = line 1).
    """

    code: str
    severity: Severity
    message: str
    column: str | None = None
    lines: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f"column {self.column!r}: " if self.column else ""
        text = f"{self.severity}: {where}{self.message}"
        if self.lines:
            shown = ", ".join(str(n) for n in self.lines[:MAX_LINES_SHOWN])
            more = len(self.lines) - MAX_LINES_SHOWN
            label = "line" if len(self.lines) == 1 else "lines"
            text += f" ({label} {shown}" + (f" and {more} more; {len(self.lines)} in all)" if more > 0 else ")")
        return text


@dataclass
class Report:
    """What :func:`check_dataframe` found: problems grouped by kind, errors before warnings."""

    source: str
    n_rows: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the file unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth knowing that do not stop training or validation."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def format(self) -> str:
        """A multi-line human-readable summary (line numbers count the header as line 1)."""
        head = f"{self.source}: {self.n_rows} row(s), {len(self.errors)} error(s), {len(self.warnings)} warning(s)" + (
            " (line numbers count the header as line 1)" if self.problems else ""
        )
        ordered = self.errors + self.warnings
        return "\n".join([head, *(f"  {p}" for p in ordered)])

    def raise_for_errors(self) -> None:
        """Raise :class:`DataFrameError` listing every problem if there is any error."""
        if self.errors:
            raise DataFrameError(self)


class _Collector:
    """Accumulates lines per (code, column, message) so each kind of problem is reported once."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, Severity, str | None, str], list[int]] = {}

    def add(
        self, code: str, message: str, column: str | None = None, lines: Iterable[int] = (), *, warn: bool = False
    ) -> None:
        severity: Severity = "warning" if warn else "error"
        key = (code, severity, column, message)
        self._found.setdefault(key, []).extend(lines)

    def problems(self) -> list[Problem]:
        return [
            Problem(code, sev, message, column, tuple(sorted(set(lines))))
            for (code, sev, column, message), lines in self._found.items()
        ]


def resolve_path(root: str | os.PathLike[str] | None, path: str) -> Path:
    """``path`` itself when absolute, else ``root / path`` (``root`` ``None``: the current directory)."""
    p = Path(path)
    if p.is_absolute() or root is None:
        return p
    return Path(root) / p


def _cell(value: Any) -> str:
    """A DataFrame cell as the text a CSV would hold (missing values become empty)."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    text = str(value)
    if text in ("<NA>", "nan", "NaT", "None"):  # pandas' and numpy's missing markers
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]

            if pd.isna(value):
                return ""
        except (TypeError, ValueError):
            pass
    return text


def _load(source: Any, collector: _Collector) -> tuple[str, list[str], list[dict[str, str]]] | None:
    """Read ``source`` (a path or DataFrame) into the header and rows of strings, or report why not."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    if isinstance(source, pd.DataFrame):
        header = [str(c) for c in source.columns]
        frame_rows: list[dict[str, str]] = [
            {c: _cell(v) for c, v in zip(header, values, strict=True)} for values in source.itertuples(index=False)
        ]
        return "<DataFrame>", header, frame_rows
    name = str(source)
    path = Path(source)
    if not path.is_file():
        collector.add("no_file", f"no such file: {name}")
        return None
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        collector.add(
            "not_utf8",
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded "
            f"(re-save the file as UTF-8)",
            lines=[line],
        )
        return None
    if not text.strip():
        collector.add(
            "empty", "the file is empty: expected a header line with the columns " + ", ".join(REQUIRED_COLUMNS)
        )
        return None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
        records = list(reader)
    except csv.Error as exc:
        collector.add("bad_csv", f"the file is not valid CSV: {exc}")
        return None
    rows: list[dict[str, str]] = []
    bad_width: list[int] = []
    line = 1
    for record in records:
        line += 1
        if not record:  # a blank line
            continue
        if len(record) != len(header):
            bad_width.append(line)
            continue
        rows.append(dict(zip(header, record, strict=True)) | {"\0line": str(line)})
    if bad_width:
        collector.add("bad_width", f"expected {len(header)} fields as in the header", lines=bad_width)
    return name, header, rows


def _lines(rows: Sequence[Mapping[str, str]]) -> list[int]:
    return [int(r["\0line"]) if "\0line" in r else i + FIRST_LINE for i, r in enumerate(rows)]


def _parse_flag(text: str) -> bool | None:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


def _parse_int(text: str) -> int | None:
    """An integral number (``12``, ``12.0``), or None."""
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    if _NUMBER.fullmatch(t):
        value = float(t)
        if value.is_integer():
            return int(value)
    return None


def _shorten(values: Iterable[str], n: int = 5) -> str:
    unique = list(dict.fromkeys(values))
    shown = ", ".join(repr(v) for v in unique[:n])
    return shown + (f" and {len(unique) - n} more" if len(unique) > n else "")


@dataclass
class _Parsed:
    """The typed values of the rows that passed their checks (``None`` where a cell was invalid)."""

    lines: list[int]
    labels: list[int | None]
    label_names: dict[int, str] | None
    paths: list[str]
    splits: list[str | None]
    is_query: list[bool | None]
    is_gallery: list[bool | None]
    categories: list[str] | None
    bboxes: list[tuple[int, int, int, int] | None] | None
    sequences: list[str | None] | None
    extras: dict[str, list[str]] = field(default_factory=dict)
    """Columns outside the format, kept as text."""


def _check_rows(header: list[str], rows: list[dict[str, str]], c: _Collector) -> _Parsed:
    lines = _lines(rows)
    cols = set(header)
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        c.add("duplicate_column", f"columns appear more than once: {', '.join(dupes)}")
    missing = [col for col in REQUIRED_COLUMNS if col not in cols]
    if missing:
        c.add(
            "missing_column", f"required column(s) missing: {', '.join(missing)} (the header has: {', '.join(header)})"
        )
    for col in header:
        if col not in ALL_COLUMNS:
            close = difflib.get_close_matches(col, ALL_COLUMNS, n=1, cutoff=0.7)
            if close and close[0] not in cols:
                c.add("unknown_column", f"unknown column, ignored; did you mean {close[0]!r}?", col, warn=True)

    def get(col: str) -> list[str]:
        return [r.get(col, "").strip() for r in rows] if col in cols else [""] * len(rows)

    # label: integers, or any strings (then mapped to 0..K-1 in sorted order)
    raw_labels = get("label")
    labels: list[int | None] = [None] * len(rows)
    label_names: dict[int, str] | None = None
    if "label" in cols:
        empty = [n for n, v in zip(lines, raw_labels, strict=True) if not v]
        if empty:
            c.add("empty_label", "empty label", "label", empty)
        present = [v for v in raw_labels if v]
        as_int = [_parse_int(v) for v in present]
        if all(v is not None for v in as_int):
            labels = [_parse_int(v) if v else None for v in raw_labels]
        else:
            names = sorted(set(present))
            label_names = dict(enumerate(names))
            code = {name: i for i, name in enumerate(names)}
            labels = [code[v] if v else None for v in raw_labels]

    paths = [r.get("path", "") for r in rows]
    if "path" in cols:
        empty = [n for n, v in zip(lines, paths, strict=True) if not v.strip()]
        if empty:
            c.add("empty_path", "empty path", "path", empty)

    splits: list[str | None] = [None] * len(rows)
    if "split" in cols:
        bad: dict[str, list[int]] = defaultdict(list)
        for i, (n, v) in enumerate(zip(lines, get("split"), strict=True)):
            if v in SPLITS:
                splits[i] = v
            else:
                bad[v].append(n)
        for value, where in bad.items():
            close = difflib.get_close_matches(value.lower(), SPLITS, n=1, cutoff=0.4) if value else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            shown = repr(value) if value else "an empty value"
            c.add("bad_split", f"{shown} is not a split: expected 'train' or 'validation'{hint}", "split", where)

    flags: dict[str, list[bool | None]] = {}
    for col in ("is_query", "is_gallery"):
        parsed: list[bool | None] = [None] * len(rows)
        if col in cols:
            on_train: list[int] = []
            empty_val: list[int] = []
            bad_val: dict[str, list[int]] = defaultdict(list)
            for i, (n, v, s) in enumerate(zip(lines, get(col), splits, strict=True)):
                if s == "train":
                    if v:
                        on_train.append(n)
                elif s == "validation":
                    if not v:
                        empty_val.append(n)
                    else:
                        parsed[i] = _parse_flag(v)
                        if parsed[i] is None:
                            bad_val[v].append(n)
            if on_train:
                c.add(
                    "flag_on_train",
                    "must be empty on train rows (queries and galleries are for validation)",
                    col,
                    on_train,
                )
            if empty_val:
                c.add("empty_flag", "must be True/False (or 1/0) on validation rows, found it empty", col, empty_val)
            for value, where in bad_val.items():
                c.add("bad_flag", f"{value!r} is not a boolean: expected True/False or 1/0", col, where)
        flags[col] = parsed
    if "is_query" in cols and "is_gallery" in cols:
        neither = [
            n
            for n, q, g in zip(lines, flags["is_query"], flags["is_gallery"], strict=True)
            if q is False and g is False
        ]
        if neither:
            c.add(
                "neither_query_nor_gallery",
                "validation row is neither a query nor a gallery item (is_query and is_gallery both False)",
                "is_query",
                neither,
            )

    categories: list[str] | None = None
    if "category" in cols:
        categories = get("category")
        empty = [n for n, v in zip(lines, categories, strict=True) if not v]
        if empty:
            c.add("empty_category", "empty category (the column is present, so every row needs one)", "category", empty)
        per_label: dict[int, set[str]] = defaultdict(set)
        for lab, cat in zip(labels, categories, strict=True):
            if lab is not None and cat:
                per_label[lab].add(cat)
        several = [lab for lab, cats in per_label.items() if len(cats) > 1]
        if several:
            where = [n for n, lab in zip(lines, labels, strict=True) if lab in set(several)]
            c.add(
                "label_in_several_categories",
                f"{len(several)} label(s) belong to more than one category, so label->category is ambiguous "
                f"(category samplers use the first)",
                "category",
                where,
                warn=True,
            )

    bboxes: list[tuple[int, int, int, int] | None] | None = None
    present_bbox = [col for col in BBOX_COLUMNS if col in cols]
    if present_bbox and len(present_bbox) < len(BBOX_COLUMNS):
        absent = [col for col in BBOX_COLUMNS if col not in cols]
        c.add("missing_column", f"a bounding box needs all of x_1, x_2, y_1, y_2; missing: {', '.join(absent)}")
    elif present_bbox:
        bboxes = [None] * len(rows)
        values = {col: get(col) for col in BBOX_COLUMNS}
        partial: list[int] = []
        for i, n in enumerate(lines):
            cells = [values[col][i] for col in BBOX_COLUMNS]
            if not any(cells):
                continue  # the whole image
            if not all(cells):
                partial.append(n)
                continue
            ints: list[int] = []
            for col, cell in zip(BBOX_COLUMNS, cells, strict=True):
                coord = _parse_int(cell)
                if coord is None:
                    kind = "not an integer" if _NUMBER.fullmatch(cell) else "not a number"
                    c.add("bad_bbox_value", f"bounding-box coordinate is {kind} (pixels are integers)", col, [n])
                elif coord < 0:
                    c.add("negative_bbox", "bounding-box coordinate is negative", col, [n])
                else:
                    ints.append(coord)
            if len(ints) < 4:
                continue
            x1, x2, y1, y2 = ints
            ok = True
            if x1 >= x2:
                c.add("bbox_x_order", "x_1 must be smaller than x_2 (left < right)", "x_1", [n])
                ok = False
            if y1 >= y2:
                c.add("bbox_y_order", "y_1 must be smaller than y_2 (top < bottom)", "y_1", [n])
                ok = False
            if ok:
                bboxes[i] = (x1, y1, x2, y2)
        if partial:
            c.add(
                "partial_bbox",
                "bounding box partly empty: give all four of x_1, x_2, y_1, y_2, or none for the whole image",
                "x_1",
                partial,
            )

    sequences: list[str | None] | None = None
    if "sequence" in cols:
        sequences = [v or None for v in get("sequence")]

    extras = {col: [r.get(col, "") for r in rows] for col in header if col not in ALL_COLUMNS}
    return _Parsed(
        lines,
        labels,
        label_names,
        paths,
        splits,
        flags["is_query"],
        flags["is_gallery"],
        categories,
        bboxes,
        sequences,
        extras,
    )


def _check_retrieval(p: _Parsed, c: _Collector) -> None:
    """Dataset-level rules: queries need gallery items of their label, train labels need two images."""
    train_counts = Counter(lab for lab, s in zip(p.labels, p.splits, strict=True) if s == "train" and lab is not None)
    single = {lab for lab, n in train_counts.items() if n == 1}
    if single:
        where = [n for n, lab, s in zip(p.lines, p.labels, p.splits, strict=True) if s == "train" and lab in single]
        c.add(
            "single_image_label",
            f"{len(single)} train label(s) have a single image (batch samplers need at least 2 per label)",
            "label",
            where,
            warn=True,
        )
    seqs = p.sequences or [None] * len(p.lines)
    gallery_per_label: Counter[int] = Counter()
    gallery_per_label_seq: Counter[tuple[int, str]] = Counter()
    for lab, s, g, seq in zip(p.labels, p.splits, p.is_gallery, seqs, strict=True):
        if s == "validation" and g and lab is not None:
            gallery_per_label[lab] += 1
            if seq is not None:
                gallery_per_label_seq[(lab, seq)] += 1
    lonely: list[int] = []
    for n, lab, s, q, g, seq in zip(p.lines, p.labels, p.splits, p.is_query, p.is_gallery, seqs, strict=True):
        if s != "validation" or not q or lab is None:
            continue
        excluded = gallery_per_label_seq[(lab, seq)] if seq is not None else (1 if g else 0)
        if gallery_per_label[lab] - excluded <= 0:
            lonely.append(n)
    if lonely:
        c.add(
            "query_without_gallery",
            "query has no gallery item of its label (other than itself or items of its own sequence): "
            "nothing relevant can be retrieved for it",
            "label",
            lonely,
            warn=True,
        )


def _check_files(
    p: _Parsed,
    root: Path | None,
    c: _Collector,
    check_images: bool,
    workers: int | None,
    progress: bool,
) -> None:
    missing: list[int] = []
    to_open: list[int] = []
    for i, (n, rel) in enumerate(zip(p.lines, p.paths, strict=True)):
        if not rel.strip():
            continue
        full = resolve_path(root, rel)
        if not full.is_file():
            missing.append(n)
        else:
            to_open.append(i)
    if missing:
        where = f" under {root}" if root is not None else ""
        first = p.paths[p.lines.index(missing[0])]
        c.add("missing_file", f"file does not exist{where} (first: {first!r})", "path", missing)
    if not check_images or not to_open:
        return
    from omlcore_images.readers import image_size

    def probe(i: int) -> tuple[int, tuple[int, int] | str]:
        try:
            return i, image_size(resolve_path(root, p.paths[i]))
        except Exception as exc:  # any decoder failure is a broken image
            return i, f"{type(exc).__name__}: {exc}"

    broken: dict[str, list[int]] = defaultdict(list)
    outside: list[int] = []
    bar = _Progress("checking images", len(to_open), enabled=progress)
    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as pool:
        for i, result in pool.map(probe, to_open):
            bar.step()
            if isinstance(result, str):
                broken[result].append(p.lines[i])
                continue
            box = p.bboxes[i] if p.bboxes is not None else None
            if box is not None:
                width, height = result
                _x1, _y1, x2, y2 = box
                if x2 > width or y2 > height:
                    outside.append(p.lines[i])
    bar.close()
    for reason, at in broken.items():
        first = p.paths[p.lines.index(at[0])]
        c.add("broken_image", f"cannot be decoded as an image ({reason}; first: {first!r})", "path", at)
    if outside:
        c.add("bbox_outside_image", "bounding box extends past the image (x_2 > width or y_2 > height)", "x_2", outside)


class _Progress:
    """A one-line progress bar on stderr, redrawn at most every 1 % of the work."""

    def __init__(self, what: str, total: int, enabled: bool = True) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.enabled = enabled and total > 0
        self.tty = sys.stderr.isatty()
        self._every = max(1, total // 100)

    def step(self) -> None:
        self.done += 1
        if self.enabled and self.tty and (self.done % self._every == 0 or self.done == self.total):
            pct = 100 * self.done // self.total
            bar = "#" * (pct // 5) + "." * (20 - pct // 5)
            sys.stderr.write(f"\r{self.what} [{bar}] {self.done}/{self.total} ({pct}%)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n" if self.tty else f"{self.what}: {self.done}/{self.total} done\n")
            sys.stderr.flush()


def _inspect(
    source: Any,
    root: str | os.PathLike[str] | None,
    check_paths: bool,
    check_images: bool,
    workers: int | None,
    progress: bool,
) -> tuple[Report, _Parsed | None, list[str]]:
    c = _Collector()
    loaded = _load(source, c)
    if loaded is None:
        name = "<DataFrame>" if not isinstance(source, (str, os.PathLike)) else str(source)
        return Report(name, 0, c.problems()), None, []
    name, header, rows = loaded
    if not rows:
        c.add("no_rows", "the file has a header but no data rows")
        return Report(name, 0, c.problems()), None, header
    parsed = _check_rows(header, rows, c)
    _check_retrieval(parsed, c)
    if check_paths and "path" in header:
        if root is None and isinstance(source, (str, os.PathLike)):
            root = Path(source).parent
        _check_files(parsed, Path(root) if root is not None else None, c, check_images, workers, progress)
    return Report(name, len(rows), c.problems()), parsed, header


def check_dataframe(
    source: str | os.PathLike[str] | pd.DataFrame,
    root: str | os.PathLike[str] | None = None,
    *,
    check_paths: bool = True,
    check_images: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> Report:
    """Check a dataset CSV (a path) or DataFrame against the format and report *every* problem.

    ``root`` is the folder relative paths start from (default: the CSV's folder; for a DataFrame, the
    current directory). ``check_paths`` checks that every file exists; ``check_images`` also decodes
    every image (in ``workers`` threads, with a progress line on stderr when ``progress``) and checks
    bounding boxes against image sizes. Never raises for bad content: see :meth:`Report.raise_for_errors`.
    """
    report, _, _ = _inspect(source, root, check_paths, check_images, workers, progress)
    return report


def read_dataframe(
    source: str | os.PathLike[str] | pd.DataFrame,
    root: str | os.PathLike[str] | None = None,
    *,
    check_paths: bool = True,
    check_images: bool = False,
) -> pd.DataFrame:
    """Check and read a dataset CSV into a typed DataFrame; raise :class:`DataFrameError` listing every error.

    The result is indexed by CSV line number (index name ``"line"``) and has: ``label`` int64 (string
    labels are mapped to ``0..K-1`` in sorted order, the originals kept in a ``label_name`` column and
    the mapping in ``df.attrs["label_names"]``), ``path`` and ``split`` str, ``is_query`` / ``is_gallery``
    nullable boolean (``<NA>`` on train rows), ``category`` and ``sequence`` str (missing if empty), the
    bounding box as nullable ``Int64`` columns; columns outside the format are kept as text.
    ``df.attrs["root"]`` is the folder relative paths start from. Warnings (e.g. a query without gallery
    items) do not raise: see :func:`check_dataframe`.
    """
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    report, parsed, _header = _inspect(source, root, check_paths, check_images, None, False)
    report.raise_for_errors()
    assert parsed is not None  # no error implies parsed rows
    index = pd.Index(parsed.lines, name="line")
    data: dict[str, Any] = {
        "label": pd.array(parsed.labels, dtype="int64"),
        "path": parsed.paths,
        "split": parsed.splits,
        "is_query": pd.array(parsed.is_query, dtype="boolean"),
        "is_gallery": pd.array(parsed.is_gallery, dtype="boolean"),
    }
    if parsed.label_names is not None:
        data["label_name"] = [parsed.label_names[lab] for lab in parsed.labels if lab is not None]
    if parsed.categories is not None:
        data["category"] = parsed.categories
    if parsed.bboxes is not None:
        for col, k in zip(BBOX_COLUMNS, (0, 2, 1, 3), strict=True):
            data[col] = pd.array([b[k] if b is not None else None for b in parsed.bboxes], dtype="Int64")
    if parsed.sequences is not None:
        data["sequence"] = pd.array(parsed.sequences, dtype=object)
    for col, values in parsed.extras.items():
        data.setdefault(col, values)
    df = pd.DataFrame(data, index=index)
    if root is None and isinstance(source, (str, os.PathLike)):
        root = Path(source).parent
    df.attrs["source"] = report.source
    df.attrs["root"] = str(root) if root is not None else None
    df.attrs["label_names"] = parsed.label_names
    return df


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` (without its index) as UTF-8 CSV with ``\\n`` line ends, through a temporary file renamed
    into place, so a failure never leaves a half-written file."""
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, index=False, lineterminator="\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
