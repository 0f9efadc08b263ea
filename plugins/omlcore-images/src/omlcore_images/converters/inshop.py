"""DeepFashion In-shop Clothes Retrieval: ``list_eval_partition.txt`` (a count line, a header line, then
``image_name item_id evaluation_status`` with status train/query/gallery) and ``list_bbox_inshop.txt``
(count, header, ``image_name clothes_type pose_type x_1 y_1 x_2 y_2``); images under ``src/<image_name>``.
The label is the item number (``id_00000002`` -> 2); the category is ``<gender>/<type>`` from the path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omlcore_images.converters._common import ConversionResult, as_int, finish, read_table, relative_to, require
from omlcore_images.errors import ConversionError

__all__ = ["convert_inshop"]

_SPLIT = {"train": ("train", None, None), "query": ("validation", True, False), "gallery": ("validation", False, True)}


def convert_inshop(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], bboxes: bool = True, csv_name: str = "df.csv"
) -> ConversionResult:
    """Write ``dst/csv_name`` for DeepFashion In-shop unpacked in ``src``."""
    source, out = Path(src), Path(dst)
    partition, bbox_txt = require(source, "list_eval_partition.txt", "list_bbox_inshop.txt")
    boxes: dict[str, tuple[int, int, int, int]] = {}
    if bboxes:
        for name, _type, _pose, bx1, by1, bx2, by2 in read_table(bbox_txt, 7, skip=2):
            boxes[name] = (
                as_int(bx1, bbox_txt, "x_1"),
                as_int(by1, bbox_txt, "y_1"),
                as_int(bx2, bbox_txt, "x_2"),
                as_int(by2, bbox_txt, "y_2"),
            )
    rows: list[dict[str, Any]] = []
    dropped = 0
    for name, item_id, status in read_table(partition, 3, skip=2):
        if status not in _SPLIT:
            raise ConversionError(
                f"{partition}: unknown evaluation_status {status!r} for {name} (train, query, gallery)"
            )
        split, query, gallery = _SPLIT[status]
        parts = Path(name).parts
        row: dict[str, Any] = {
            "label": as_int(item_id.rsplit("_", 1)[-1], partition, "item_id"),
            "path": relative_to(out, source / name),
            "split": split,
            "is_query": query,
            "is_gallery": gallery,
            "category": "/".join(parts[1:3]) if len(parts) >= 4 else "unknown",
        }
        if bboxes:
            box = boxes.get(name)
            if box is not None and not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
                box, dropped = None, dropped + 1
            if box is None:
                row |= {"x_1": None, "x_2": None, "y_1": None, "y_2": None}
            else:
                row |= {"x_1": box[0], "x_2": box[2], "y_1": box[1], "y_2": box[3]}
        rows.append(row)
    notes = (f"{dropped} degenerate box(es) replaced by the whole image",) if dropped else ()
    return finish("inshop", rows, out, csv_name, notes)
