"""Stanford Online Products: ``Ebay_train.txt`` and ``Ebay_test.txt`` (``image_id class_id super_class_id
path``, one header line), images under ``src/<path>``. Train classes train; in the test classes every
image is both a query and a gallery item (the "1 vs rest" protocol). The category is the product
family, from the image folder (``bicycle_final`` -> ``bicycle``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omlcore_images.converters._common import ConversionResult, as_int, finish, read_table, relative_to, require

__all__ = ["convert_sop"]


def convert_sop(src: str | os.PathLike[str], dst: str | os.PathLike[str], csv_name: str = "df.csv") -> ConversionResult:
    """Write ``dst/csv_name`` for Stanford Online Products unpacked in ``src``."""
    source, out = Path(src), Path(dst)
    train_txt, test_txt = require(source, "Ebay_train.txt", "Ebay_test.txt")
    rows: list[dict[str, Any]] = []
    for txt, split in ((train_txt, "train"), (test_txt, "validation")):
        for _, class_id, _super, path in read_table(txt, 4, skip=1):
            flag = None if split == "train" else True
            category = Path(path).parts[0].removesuffix("_final") if len(Path(path).parts) > 1 else _super
            rows.append(
                {
                    "label": as_int(class_id, txt, "class_id"),
                    "path": relative_to(out, source / path),
                    "split": split,
                    "is_query": flag,
                    "is_gallery": flag,
                    "category": category,
                }
            )
    return finish("sop", rows, out, csv_name)
