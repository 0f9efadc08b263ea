"""What the converters share: reading whitespace-separated annotation files, finishing the CSV."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omlcore_images.errors import ConversionError

__all__ = ["ConversionResult", "finish", "read_table", "require"]


@dataclass(frozen=True)
class ConversionResult:
    """What a converter wrote."""

    dataset: str
    csv_path: Path
    n_images: int
    n_train_labels: int
    n_train_images: int
    n_val_labels: int
    n_queries: int
    n_gallery: int
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One paragraph for the CLI."""
        text = (
            f"Wrote {self.csv_path}: {self.n_images} images; train {self.n_train_labels} labels / "
            f"{self.n_train_images} images; validation {self.n_val_labels} labels, {self.n_queries} queries, "
            f"{self.n_gallery} gallery items."
        )
        return "\n".join([text, *self.notes])


def require(src: Path, *names: str) -> list[Path]:
    """The files ``src/name``; raise :class:`ConversionError` naming every missing one."""
    if not src.is_dir():
        raise ConversionError(f"the source folder {src} does not exist")
    paths = [src / n for n in names]
    missing = [str(p.relative_to(src)) for p in paths if not p.is_file()]
    if missing:
        raise ConversionError(f"{src} does not look like the expected layout: missing {', '.join(missing)}")
    return paths


def read_table(path: Path, n_fields: int, skip: int = 0) -> list[list[str]]:
    """Rows of a whitespace-separated text file (after ``skip`` header lines), each with ``n_fields`` fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path} is not UTF-8 text: {exc}") from exc
    rows: list[list[str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number <= skip or not line.strip():
            continue
        fields = line.split()
        if len(fields) != n_fields:
            raise ConversionError(f"{path}, line {number}: expected {n_fields} fields, found {len(fields)}: {line!r}")
        rows.append(fields)
    return rows


def as_int(value: str, path: Path, what: str) -> int:
    """``int(value)``, or a :class:`ConversionError` naming the file."""
    try:
        return int(value)
    except ValueError:
        raise ConversionError(f"{path}: {what} {value!r} is not an integer") from None


def finish(
    dataset: str, rows: list[dict[str, Any]], dst: Path, csv_name: str, notes: tuple[str, ...] = ()
) -> ConversionResult:
    """Check the rows (paths relative to ``dst``) and write ``dst/csv_name`` atomically."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    from omlcore_images.dataframe import check_dataframe, write_csv_atomic
    from omlcore_images.errors import DataFrameError

    if not rows:
        raise ConversionError(f"{dataset}: no images found, nothing to write")
    df = pd.DataFrame(rows)
    for col in ("is_query", "is_gallery"):
        df[col] = df[col].map(lambda v: "" if v is None or pd.isna(v) else str(bool(v)))
    for col in ("x_1", "x_2", "y_1", "y_2"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: "" if v is None or pd.isna(v) else str(int(v)))
    # check with absolute paths: dst may not exist yet, and "dst/../x" cannot be walked through then
    absolute = df.astype(str)
    base = dst.resolve()
    absolute["path"] = [os.path.normpath(base / p) for p in absolute["path"]]
    report = check_dataframe(absolute)
    if report.errors:
        raise DataFrameError(report)
    target = write_csv_atomic(df, dst / csv_name)
    train = df[df["split"] == "train"]
    val = df[df["split"] == "validation"]
    return ConversionResult(
        dataset,
        target,
        len(df),
        int(train["label"].nunique()),
        len(train),
        int(val["label"].nunique()),
        int((val["is_query"] == "True").sum()),
        int((val["is_gallery"] == "True").sum()),
        notes,
    )


def relative_to(dst: Path, path: Path) -> str:
    """``path`` relative to ``dst`` (with ``..`` if needed), in POSIX form."""
    return Path(os.path.relpath(path.resolve(), dst.resolve())).as_posix()
