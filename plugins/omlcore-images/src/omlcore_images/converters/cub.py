"""CUB-200-2011: ``images.txt`` (``image_id path``), ``image_class_labels.txt`` (``image_id class_id``),
``bounding_boxes.txt`` (``image_id x y width height``, floats), ``classes.txt``; images under
``src/images/<path>``. The metric-learning protocol: the first half of the classes (1-100) trains, the
second (101-200) validates with every image both query and gallery. (``train_test_split.txt`` is the
classification split and is not used.) Boxes are rounded outwards to whole pixels."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omlcore_images.converters._common import ConversionResult, as_int, finish, read_table, relative_to, require
from omlcore_images.errors import ConversionError

__all__ = ["convert_cub"]


def _float(value: str, path: Path) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConversionError(f"{path}: box value {value!r} is not a number") from None


def convert_cub(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], bboxes: bool = True, csv_name: str = "df.csv"
) -> ConversionResult:
    """Write ``dst/csv_name`` for CUB-200-2011 unpacked in ``src`` (the folder holding images.txt)."""
    source, out = Path(src), Path(dst)
    images_txt, labels_txt, boxes_txt, _classes = require(
        source, "images.txt", "image_class_labels.txt", "bounding_boxes.txt", "classes.txt"
    )
    paths = {i: p for i, p in read_table(images_txt, 2)}
    labels = {i: as_int(c, labels_txt, "class_id") for i, c in read_table(labels_txt, 2)}
    boxes = {r[0]: tuple(_float(v, boxes_txt) for v in r[1:]) for r in read_table(boxes_txt, 5)} if bboxes else {}
    missing = sorted(set(paths) - set(labels), key=lambda s: int(s) if s.isdigit() else 0)
    if missing:
        raise ConversionError(f"{labels_txt}: no class for image id(s) {', '.join(missing[:10])}")
    classes = sorted(set(labels.values()))
    train_classes = set(classes[: len(classes) // 2])
    rows: list[dict[str, Any]] = []
    for image_id, rel in paths.items():
        label = labels[image_id]
        train = label in train_classes
        row: dict[str, Any] = {
            "label": label,
            "path": relative_to(out, source / "images" / rel),
            "split": "train" if train else "validation",
            "is_query": None if train else True,
            "is_gallery": None if train else True,
        }
        if bboxes:
            x, y, w, h = boxes.get(image_id, (0.0, 0.0, 0.0, 0.0))
            if w > 0 and h > 0:
                row |= {
                    "x_1": max(0, math.floor(x)),
                    "x_2": math.ceil(x + w),
                    "y_1": max(0, math.floor(y)),
                    "y_2": math.ceil(y + h),
                }
            else:
                row |= {"x_1": None, "x_2": None, "y_1": None, "y_2": None}
        rows.append(row)
    return finish("cub", rows, out, csv_name)
