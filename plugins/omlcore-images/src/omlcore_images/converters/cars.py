"""Cars196 (Stanford Cars): ``cars_annos.mat`` from the dataset page, with the images in ``car_ims/``.

Each annotation has ``relative_im_path``, ``bbox_x1/y1/x2/y2`` (1-based inclusive pixels) and ``class``
(1-196). The metric-learning protocol: classes 1-98 train, 99-196 validate with every image both query
and gallery. Reading .mat files needs SciPy: ``pip install "omlcore-images[cars]"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omlcore_images.converters._common import ConversionResult, finish, relative_to, require
from omlcore_images.errors import ConversionError

__all__ = ["convert_cars"]


def convert_cars(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], bboxes: bool = True, csv_name: str = "df.csv"
) -> ConversionResult:
    """Write ``dst/csv_name`` for Cars196 unpacked in ``src`` (the folder holding cars_annos.mat)."""
    source, out = Path(src), Path(dst)
    (mat,) = require(source, "cars_annos.mat")
    try:
        from scipy.io import loadmat  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ConversionError('reading cars_annos.mat needs SciPy: pip install "omlcore-images[cars]"') from exc
    try:
        annos = loadmat(str(mat), squeeze_me=True)["annotations"]
    except Exception as exc:
        raise ConversionError(f"{mat} is not a MATLAB file with an 'annotations' array: {exc}") from exc
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
    names = annos.dtype.names or ()
    absent = [f for f in fields if f not in names]
    if absent:
        raise ConversionError(f"{mat}: annotations lack the field(s) {', '.join(absent)}")
    classes = sorted({int(a["class"]) for a in annos.flat})
    train_classes = set(classes[: len(classes) // 2])
    rows: list[dict[str, Any]] = []
    for a in annos.flat:
        label = int(a["class"])
        train = label in train_classes
        row: dict[str, Any] = {
            "label": label,
            "path": relative_to(out, source / str(a["relative_im_path"])),
            "split": "train" if train else "validation",
            "is_query": None if train else True,
            "is_gallery": None if train else True,
        }
        if bboxes:  # 1-based inclusive -> 0-based with exclusive right/bottom
            x1, y1 = int(a["bbox_x1"]) - 1, int(a["bbox_y1"]) - 1
            x2, y2 = int(a["bbox_x2"]), int(a["bbox_y2"])
            ok = 0 <= x1 < x2 and 0 <= y1 < y2
            row |= {
                "x_1": x1 if ok else None,
                "x_2": x2 if ok else None,
                "y_1": y1 if ok else None,
                "y_2": y2 if ok else None,
            }
        rows.append(row)
    return finish("cars", rows, out, csv_name)
