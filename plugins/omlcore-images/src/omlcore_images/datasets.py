"""Image datasets: paths-only (inference), labelled (training) and query/gallery (validation).

Each item is a dict with the batch keys of :data:`KEYS` (OML's names). The image is read with the
reader its transform expects (PIL for torchvision, OpenCV for albumentations), cropped to its bounding
box if it has one, then transformed. A missing or undecodable image raises
:class:`~omlcore_images.errors.ImageReadError` naming the file and its CSV line.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from omlcore_images.dataframe import BBOX_COLUMNS, read_dataframe, resolve_path
from omlcore_images.errors import ImageReadError
from omlcore_images.readers import ImageReader, is_albumentations, reader_for_transform

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "KEYS",
    "ImageBaseDataset",
    "ImageLabeledDataset",
    "ImagePathsDataset",
    "ImageQueryGalleryLabeledDataset",
    "get_retrieval_images_datasets",
    "remap_labels",
]

KEYS = {
    "input_tensors": "the transformed image, float (C, H, W)",
    "labels": "int label (train labels remapped to 0..N-1 by get_retrieval_images_datasets)",
    "paths": "the image file, root-prefixed",
    "idx": "the item's position in the dataset",
    "is_query": "bool (validation)",
    "is_gallery": "bool (validation)",
    "categories": "str, if the CSV has a category column",
    "sequence": "int sequence id (-1: none), if the CSV has a sequence column",
    "x1": "left of the box used, in pixels of the original image",
    "y1": "top",
    "x2": "right (exclusive)",
    "y2": "bottom (exclusive)",
}
"""The keys items may have, and what they hold."""

BBox = tuple[int, int, int, int]  # x1, y1, x2, y2


class _BytesCache:
    """A least-recently-used cache of file contents (picklable, so it works with DataLoader workers)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def read(self, path: Path) -> bytes:
        key = str(path)
        if self.size > 0 and key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        data = path.read_bytes()
        if self.size > 0:
            self._data[key] = data
            if len(self._data) > self.size:
                self._data.popitem(last=False)
        return data

    def __len__(self) -> int:
        return len(self._data)


class ImageBaseDataset(Dataset[dict[str, Any]]):
    """Images given by path, for inference: items have ``input_tensors``, ``paths``, ``idx``, ``x1..y2``.

    ``paths`` are absolute or relative to ``dataset_root``; ``bboxes[i]`` is ``(x1, y1, x2, y2)`` or
    ``None`` for the whole image. ``transform`` defaults to ``norm_torch()``; ``f_imread`` defaults to the
    reader the transform expects. ``cache_size`` keeps the bytes of that many files in memory.
    ``extra_data[key][i]`` is added to item ``i``. ``lines``/``source`` name the CSV line of each item in
    error messages.
    """

    def __init__(
        self,
        paths: Sequence[str],
        dataset_root: str | os.PathLike[str] | None = None,
        bboxes: Sequence[BBox | None] | None = None,
        transform: Any = None,
        f_imread: ImageReader | None = None,
        cache_size: int = 0,
        extra_data: Mapping[str, Sequence[Any]] | None = None,
        lines: Sequence[int] | None = None,
        source: str | None = None,
    ) -> None:
        if transform is None:
            from omlcore_images.transforms import norm_torch

            transform = norm_torch()
        n = len(paths)
        for what, seq in (("bboxes", bboxes), ("lines", lines), *(extra_data or {}).items()):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{what} has {len(seq)} entries for {n} paths")
        self.paths = [str(resolve_path(dataset_root, p)) for p in paths]
        self.dataset_root = None if dataset_root is None else Path(dataset_root)
        self.bboxes = list(bboxes) if bboxes is not None else None
        self.transform = transform
        self.f_imread = f_imread or reader_for_transform(transform)
        self.extra_data = {k: list(v) for k, v in (extra_data or {}).items()}
        self.lines = list(lines) if lines is not None else None
        self.source = source
        self._albu = is_albumentations(transform)
        self._cache = _BytesCache(cache_size)

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, idx: int) -> str:
        """Where item ``idx`` comes from, for messages: ``"line 7 of df.csv"`` or ``"item 5"``."""
        if self.lines is not None:
            return f"line {self.lines[idx]} of {self.source or 'the CSV'}"
        return f"item {idx}"

    def read_image(self, idx: int) -> tuple[Any, BBox]:
        """The image of item ``idx`` (as its reader returns it), cropped to its box, and the box used."""
        path = Path(self.paths[idx])
        try:
            img = self.f_imread(self._cache.read(path))
        except FileNotFoundError:
            raise ImageReadError(str(path), self.where(idx), "the file does not exist") from None
        except Exception as exc:
            raise ImageReadError(str(path), self.where(idx), exc) from exc
        if isinstance(img, np.ndarray):
            height, width = img.shape[:2]
        else:
            width, height = img.size
        box = self.bboxes[idx] if self.bboxes is not None else None
        if box is None:
            return img, (0, 0, width, height)
        x1, y1, x2, y2 = box
        if x2 > width or y2 > height:
            raise ImageReadError(
                str(path), self.where(idx), f"bounding box {box} extends past the image of size {width}x{height}"
            )
        crop = img[y1:y2, x1:x2] if isinstance(img, np.ndarray) else img.crop((x1, y1, x2, y2))
        return crop, box

    def __getitem__(self, idx: int) -> dict[str, Any]:
        img, (x1, y1, x2, y2) = self.read_image(idx)
        tensor = self.transform(image=img)["image"] if self._albu else self.transform(img)
        item: dict[str, Any] = {"input_tensors": tensor, "paths": self.paths[idx], "idx": idx}
        item.update(x1=x1, y1=y1, x2=x2, y2=y2)
        for key, values in self.extra_data.items():
            if key in item:
                raise KeyError(f"extra_data key {key!r} clashes with a key the dataset sets")
            item[key] = values[idx]
        return item


ImagePathsDataset = ImageBaseDataset
"""The paths-only dataset used for inference (an alias)."""


def _frame_bboxes(df: pd.DataFrame) -> list[BBox | None] | None:
    if not all(col in df.columns for col in BBOX_COLUMNS):
        return None
    out: list[BBox | None] = []
    for x1, x2, y1, y2 in df[list(BBOX_COLUMNS)].itertuples(index=False):
        out.append(None if any(_isna(v) for v in (x1, x2, y1, y2)) else (int(x1), int(y1), int(x2), int(y2)))
    return out


def _isna(value: Any) -> bool:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    return bool(pd.isna(value))


def _as_frame(df: pd.DataFrame | str | os.PathLike[str], dataset_root: str | os.PathLike[str] | None) -> pd.DataFrame:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    if isinstance(df, pd.DataFrame):
        return df
    return read_dataframe(df, dataset_root)


class ImageLabeledDataset(ImageBaseDataset):
    """Labelled images (training): items add ``labels`` and, when the CSV has them, ``categories`` and
    ``sequence``.

    ``df`` is a frame from :func:`~omlcore_images.dataframe.read_dataframe` (or a CSV path, read with it).
    ``dataset_root`` defaults to the frame's ``attrs["root"]``.
    """

    def __init__(
        self,
        df: pd.DataFrame | str | os.PathLike[str],
        dataset_root: str | os.PathLike[str] | None = None,
        transform: Any = None,
        f_imread: ImageReader | None = None,
        cache_size: int = 0,
        extra_data: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        frame = _as_frame(df, dataset_root)
        for col in ("label", "path"):
            if col not in frame.columns:
                raise KeyError(f"the dataframe has no {col!r} column (columns: {', '.join(map(str, frame.columns))})")
        if dataset_root is None:
            dataset_root = frame.attrs.get("root")
        lines = [int(v) for v in frame.index] if frame.index.name == "line" else None
        super().__init__(
            [str(p) for p in frame["path"]],
            dataset_root=dataset_root,
            bboxes=_frame_bboxes(frame),
            transform=transform,
            f_imread=f_imread,
            cache_size=cache_size,
            extra_data=extra_data,
            lines=lines,
            source=frame.attrs.get("source"),
        )
        self.df = frame
        self.label_remap: dict[int, int] | None = None
        """Original label -> dataset label, when the labels were renumbered (training)."""
        self.labels = frame["label"].to_numpy(dtype=np.int64)
        self.categories = [str(c) for c in frame["category"]] if "category" in frame.columns else None
        self.sequence_names: list[str] | None = None
        self.sequence_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None
        if "sequence" in frame.columns:
            ids: dict[str, int] = {}
            seq = [None if _isna(s) else str(s) for s in frame["sequence"]]
            self.sequence_ids = np.array(
                [-1 if s is None else ids.setdefault(s, len(ids)) for s in seq], dtype=np.int64
            )
            self.sequence_names = list(ids)

    def get_labels(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The label of every item, in dataset order."""
        labels: np.ndarray[Any, np.dtype[np.int64]] = self.labels
        return labels

    def get_label2category(self) -> dict[int, str] | None:
        """Each label's category (the first seen, if a label has several), or None without a category column."""
        if self.categories is None:
            return None
        out: dict[int, str] = {}
        for label, category in zip(self.labels.tolist(), self.categories, strict=True):
            out.setdefault(int(label), category)
        return out

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = super().__getitem__(idx)
        item["labels"] = int(self.labels[idx])
        if self.categories is not None:
            item["categories"] = self.categories[idx]
        if self.sequence_ids is not None:
            item["sequence"] = int(self.sequence_ids[idx])
        return item


class ImageQueryGalleryLabeledDataset(ImageLabeledDataset):
    """Validation images: items add ``is_query`` and ``is_gallery`` (bool) to the labelled ones."""

    def __init__(
        self,
        df: pd.DataFrame | str | os.PathLike[str],
        dataset_root: str | os.PathLike[str] | None = None,
        transform: Any = None,
        f_imread: ImageReader | None = None,
        cache_size: int = 0,
        extra_data: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        super().__init__(df, dataset_root, transform, f_imread, cache_size, extra_data)
        for col in ("is_query", "is_gallery"):
            if col not in self.df.columns or bool(self.df[col].isna().any()):
                raise ValueError(f"a query/gallery dataset needs {col!r} set (True/False) on every row")
        self.is_query = self.df["is_query"].to_numpy(dtype=bool)
        self.is_gallery = self.df["is_gallery"].to_numpy(dtype=bool)

    def get_query_ids(self) -> torch.Tensor:
        """Dataset indices of the queries (long)."""
        return torch.from_numpy(np.flatnonzero(self.is_query)).long()

    def get_gallery_ids(self) -> torch.Tensor:
        """Dataset indices of the gallery items (long)."""
        return torch.from_numpy(np.flatnonzero(self.is_gallery)).long()

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = super().__getitem__(idx)
        item["is_query"] = bool(self.is_query[idx])
        item["is_gallery"] = bool(self.is_gallery[idx])
        return item


def remap_labels(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, int]]:
    """A copy of ``df`` with labels renumbered ``0..N-1`` in increasing order, and the map old -> new."""
    mapping = {int(old): new for new, old in enumerate(sorted(set(df["label"].tolist())))}
    out = df.copy()
    out["label"] = out["label"].map(mapping).astype("int64")
    return out, mapping


def get_retrieval_images_datasets(
    dataset_root: str | os.PathLike[str],
    transforms_train: Any = None,
    transforms_val: Any = None,
    f_imread_train: ImageReader | None = None,
    f_imread_val: ImageReader | None = None,
    dataframe_name: str = "df.csv",
    cache_size: int = 0,
    check_images: bool = False,
) -> tuple[ImageLabeledDataset | None, ImageQueryGalleryLabeledDataset | None]:
    """Check and read ``dataset_root/dataframe_name`` and build ``(train, validation)`` datasets.

    Train labels are remapped to ``0..N-1`` (``train.label_remap`` maps original -> new), as classification
    losses such as ArcFace need; validation labels are kept. A file with only one split gives ``None``
    for the other.
    """
    root = Path(dataset_root)
    df = read_dataframe(root / dataframe_name, root, check_images=check_images)
    train_df = df[df["split"] == "train"]
    val_df = df[df["split"] == "validation"]
    train: ImageLabeledDataset | None = None
    val: ImageQueryGalleryLabeledDataset | None = None
    if len(train_df):
        remapped, mapping = remap_labels(train_df)
        remapped.attrs = dict(df.attrs)
        train = ImageLabeledDataset(remapped, root, transforms_train, f_imread_train, cache_size)
        train.label_remap = mapping
    if len(val_df):
        val_df = val_df.copy()
        val_df.attrs = dict(df.attrs)
        val = ImageQueryGalleryLabeledDataset(val_df, root, transforms_val, f_imread_val, cache_size)
    return train, val
