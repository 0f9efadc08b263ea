"""A tiny dataset of drawn figures, generated locally and byte-identical on every run.

24 images, 8 labels (one figure each) x 3 drawings that differ in colour, stroke and position. Labels
0-3 (circle, square, triangle, cross) are the train split; labels 4-7 (hash, slot, caret, asterisk) the
validation split, where drawing 1 of each is the query and drawings 2 and 3 are its gallery. The same
rows come in four CSVs, as in OML's mock dataset:

- ``df.csv``: the required columns;
- ``df_with_category.csv``: + ``category``, ``closed`` or ``open`` figures;
- ``df_with_bboxes.csv``: + ``x_1, x_2, y_1, y_2``: the figure's box on drawings 1 and 2, empty (the whole
  image) on drawing 3;
- ``df_with_sequence.csv``: + ``sequence``: in validation, each query shares its sequence with its
  drawing 2, which metrics then ignore for that query.

Images are drawn without anti-aliasing and saved as PNG with fixed encoder settings and no metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from PIL import ImageDraw

__all__ = ["CSV_NAMES", "FIGURES", "IMAGE_SIZE", "make_mock_dataset", "mock_dataframes"]

IMAGE_SIZE = 96
FIGURES: tuple[tuple[str, str], ...] = (
    ("circle", "closed"),
    ("square", "closed"),
    ("triangle", "closed"),
    ("cross", "open"),
    ("hash", "closed"),
    ("slot", "closed"),
    ("caret", "open"),
    ("asterisk", "open"),
)
"""(figure, category) for labels 0..7; labels 0-3 are train, 4-7 validation."""
N_TRAIN_LABELS = 4
N_PER_LABEL = 3
CSV_NAMES = ("df.csv", "df_with_category.csv", "df_with_bboxes.csv", "df_with_sequence.csv")
_COLOURS = ((200, 30, 30), (30, 120, 200), (40, 150, 60), (150, 60, 170), (230, 140, 20), (20, 20, 20))
_HALF = 24  # half the side of a figure's box, in pixels


def _box(label: int, n: int) -> tuple[int, int, int, int]:
    """The figure's box (x1, y1, x2, y2) for drawing ``n`` (0-based) of ``label``: shifted per drawing."""
    dx = ((label * 7 + n * 11) % 17) - 8
    dy = ((label * 5 + n * 13) % 17) - 8
    cx, cy = IMAGE_SIZE // 2 + dx, IMAGE_SIZE // 2 + dy
    return cx - _HALF, cy - _HALF, cx + _HALF, cy + _HALF


def _draw(
    draw: ImageDraw.ImageDraw, figure: str, box: tuple[int, int, int, int], colour: tuple[int, int, int], width: int
) -> None:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    if figure == "circle":
        draw.ellipse(box, outline=colour, width=width)
    elif figure == "square":
        draw.rectangle(box, outline=colour, width=width)
    elif figure == "triangle":
        draw.polygon([(cx, y1), (x2, y2), (x1, y2)], outline=colour, width=width)
    elif figure == "cross":
        draw.line([(cx, y1), (cx, y2)], fill=colour, width=width)
        draw.line([(x1, cy), (x2, cy)], fill=colour, width=width)
    elif figure == "hash":
        for t in (1, 2):
            x = x1 + (x2 - x1) * t // 3
            y = y1 + (y2 - y1) * t // 3
            draw.line([(x, y1), (x, y2)], fill=colour, width=width)
            draw.line([(x1, y), (x2, y)], fill=colour, width=width)
    elif figure == "slot":
        draw.rectangle(box, fill=colour)
        draw.rectangle((cx - 3, y1 + 6, cx + 3, y2 - 6), fill=(255, 255, 255))
    elif figure == "caret":
        draw.line([(x1, y2), (cx, y1), (x2, y2)], fill=colour, width=width)
    elif figure == "asterisk":
        draw.line([(cx, y1), (cx, y2)], fill=colour, width=width)
        draw.line([(x1 + 3, y1 + 10), (x2 - 3, y2 - 10)], fill=colour, width=width)
        draw.line([(x1 + 3, y2 - 10), (x2 - 3, y1 + 10)], fill=colour, width=width)
    else:  # pragma: no cover - FIGURES is fixed
        raise ValueError(figure)


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for label, (figure, category) in enumerate(FIGURES):
        train = label < N_TRAIN_LABELS
        for n in range(N_PER_LABEL):
            x1, y1, x2, y2 = _box(label, n)
            rows.append(
                {
                    "label": label,
                    "path": f"images/{figure}_{n + 1}.png",
                    "split": "train" if train else "validation",
                    "is_query": "" if train else n == 0,
                    "is_gallery": "" if train else n > 0,
                    "category": category,
                    # the box as drawn, with the stroke: 2 pixels of margin
                    "x_1": x1 - 2 if n < 2 else "",
                    "x_2": x2 + 3 if n < 2 else "",
                    "y_1": y1 - 2 if n < 2 else "",
                    "y_2": y2 + 3 if n < 2 else "",
                    "sequence": f"{figure}_{1 if (not train and n == 1) else n + 1}",
                }
            )
    return rows


def mock_dataframes() -> dict[str, pd.DataFrame]:
    """The four CSVs of the mock dataset, by file name, as string-valued DataFrames."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    full = pd.DataFrame(_rows()).astype(str)
    base = ["label", "path", "split", "is_query", "is_gallery"]
    return {
        "df.csv": full[base],
        "df_with_category.csv": full[[*base, "category"]],
        "df_with_bboxes.csv": full[[*base, "x_1", "x_2", "y_1", "y_2"]],
        "df_with_sequence.csv": full[[*base, "sequence"]],
    }


def make_mock_dataset(root: str | os.PathLike[str], df_name: str = "df.csv") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the mock dataset into ``root`` (images/ and the four CSVs) and return ``(df_train, df_val)``
    read from ``df_name`` with :func:`~omlcore_images.dataframe.read_dataframe`.

    Existing files are overwritten; running it twice gives byte-identical files.
    """
    from PIL import Image, ImageDraw

    from omlcore_images.dataframe import read_dataframe, write_csv_atomic

    if df_name not in CSV_NAMES:
        raise ValueError(f"df_name must be one of {', '.join(CSV_NAMES)}, got {df_name!r}")
    out = Path(root)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for label, (figure, _) in enumerate(FIGURES):
        for n in range(N_PER_LABEL):
            img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
            colour = _COLOURS[(label + 2 * n) % len(_COLOURS)]
            _draw(ImageDraw.Draw(img), figure, _box(label, n), colour, width=3 + n)
            target = out / "images" / f"{figure}_{n + 1}.png"
            tmp = target.with_name(f".{target.name}.tmp")
            img.save(tmp, format="PNG", optimize=False, compress_level=9)
            os.replace(tmp, target)
    for name, frame in mock_dataframes().items():
        write_csv_atomic(frame, out / name)
    df = read_dataframe(out / df_name, out)
    return df[df["split"] == "train"], df[df["split"] == "validation"]
