"""Datasets: batch keys and dtypes, bbox crops, label remapping, errors naming file and line, the cache."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omlcore_images.dataframe import read_dataframe
from omlcore_images.datasets import (
    ImageLabeledDataset,
    ImagePathsDataset,
    ImageQueryGalleryLabeledDataset,
    get_retrieval_images_datasets,
)
from omlcore_images.errors import ImageReadError
from omlcore_images.readers import imread_pillow
from omlcore_images.transforms import norm_resize_torch
from PIL import Image
from torch.utils.data import DataLoader


def identity_tensor(img: Image.Image) -> torch.Tensor:
    """Raw pixels as a (3, H, W) uint8 tensor: lets tests compare crops exactly."""
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def test_train_and_validation_batches(mock_root: Path) -> None:
    train, val = get_retrieval_images_datasets(
        mock_root, norm_resize_torch(32), norm_resize_torch(32), dataframe_name="df_with_category.csv"
    )
    assert train is not None
    assert val is not None
    assert len(train) == 12
    assert len(val) == 12
    batch = next(iter(DataLoader(val, batch_size=6)))
    expected = {"input_tensors", "labels", "paths", "idx", "is_query", "is_gallery", "categories"}
    assert set(batch) == expected | {"x1", "y1", "x2", "y2"}
    assert batch["input_tensors"].shape == (6, 3, 32, 32)
    assert batch["input_tensors"].dtype == torch.float32
    assert type(batch["input_tensors"]) is torch.Tensor
    assert batch["labels"].dtype == torch.int64
    assert batch["idx"].tolist() == list(range(6))
    assert batch["is_query"].dtype == torch.bool
    assert batch["is_query"].tolist() == [True, False, False] * 2
    assert batch["is_gallery"].tolist() == [False, True, True] * 2
    assert batch["categories"] == ["closed"] * 6
    assert batch["paths"][0] == str(mock_root / "images" / "hash_1.png")
    assert batch["x2"].tolist() == [96] * 6  # no bbox: the whole 96 px image
    assert val.get_query_ids().tolist() == [0, 3, 6, 9]
    assert val.get_gallery_ids().dtype == torch.int64


def test_train_labels_are_remapped_validation_labels_kept(tmp_path: Path, mock_root: Path) -> None:
    text = (mock_root / "df.csv").read_text().replace("\n0,", "\n10,").replace("\n3,", "\n30,")
    (tmp_path / "images").symlink_to(mock_root / "images")
    (tmp_path / "df.csv").write_text(text)
    train, val = get_retrieval_images_datasets(tmp_path)
    assert train is not None
    assert val is not None
    assert train.get_labels().tolist() == [2, 2, 2, 0, 0, 0, 1, 1, 1, 3, 3, 3]
    assert train.label_remap == {1: 0, 2: 1, 10: 2, 30: 3}
    assert sorted(set(val.get_labels().tolist())) == [4, 5, 6, 7]
    assert train.get_labels().dtype == np.int64


def test_label2category(mock_root: Path) -> None:
    ds = ImageLabeledDataset(read_dataframe(mock_root / "df_with_category.csv"))
    assert ds.get_label2category() == {
        0: "closed",
        1: "closed",
        2: "closed",
        3: "open",
        4: "closed",
        5: "closed",
        6: "open",
        7: "open",
    }
    assert ImageLabeledDataset(read_dataframe(mock_root / "df.csv")).get_label2category() is None


def test_bbox_crop_is_exact(mock_root: Path) -> None:
    df = read_dataframe(mock_root / "df_with_bboxes.csv")
    ds = ImageLabeledDataset(df, transform=identity_tensor)
    item = ds[0]
    x1, y1, x2, y2 = (int(df.iloc[0][c]) for c in ("x_1", "y_1", "x_2", "y_2"))
    assert (item["x1"], item["y1"], item["x2"], item["y2"]) == (x1, y1, x2, y2)
    full = np.asarray(imread_pillow((mock_root / df.iloc[0]["path"]).read_bytes()))
    assert torch.equal(item["input_tensors"], torch.from_numpy(full[y1:y2, x1:x2].copy()).permute(2, 0, 1))
    whole = ds[2]  # empty bbox: the whole image
    assert whole["input_tensors"].shape == (3, 96, 96)
    assert (whole["x1"], whole["x2"]) == (0, 96)


def test_sequence_ids(mock_root: Path) -> None:
    ds = ImageQueryGalleryLabeledDataset(read_dataframe(mock_root / "df_with_sequence.csv").iloc[12:])
    seq = [ds[i]["sequence"] for i in range(3)]
    assert seq[0] == seq[1] != seq[2]


def test_missing_image_names_file_and_line(tmp_path: Path, mock_root: Path) -> None:
    lines = (mock_root / "df.csv").read_text().splitlines()
    (tmp_path / "images").symlink_to(mock_root / "images")
    (tmp_path / "df.csv").write_text("\n".join(lines) + "\n")
    df = read_dataframe(tmp_path / "df.csv")
    df.loc[5, "path"] = "images/gone.png"  # the row on line 5
    ds = ImageLabeledDataset(df)
    with pytest.raises(ImageReadError, match=r"gone\.png.*line 5 of .*df\.csv.*does not exist"):
        ds[3]


def test_corrupt_image_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"garbage")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "df.csv").write_text("label,path,split,is_query,is_gallery\n0,ok.png,train,,\n0,bad.png,train,,\n")
    ds = ImageLabeledDataset(tmp_path / "df.csv")
    ds[0]
    with pytest.raises(ImageReadError, match=r"bad\.png.*line 3 of .*UnidentifiedImageError"):
        ds[1]


def test_paths_dataset_absolute_and_relative(mock_root: Path) -> None:
    paths = [str(mock_root / "images" / "circle_1.png"), "images/square_1.png"]
    ds = ImagePathsDataset(paths, dataset_root=mock_root, bboxes=[None, (0, 0, 10, 20)], transform=identity_tensor)
    assert ds[0]["input_tensors"].shape == (3, 96, 96)
    assert ds[1]["input_tensors"].shape == (3, 20, 10)
    assert set(ds[1]) == {"input_tensors", "paths", "idx", "x1", "y1", "x2", "y2"}
    with pytest.raises(ImageReadError, match="item 0"):
        ImagePathsDataset(["nope.png"], dataset_root=mock_root)[0]


def test_cache_keeps_bytes(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    ds = ImagePathsDataset(["a.png"], dataset_root=tmp_path, transform=identity_tensor, cache_size=4)
    first = ds[0]["input_tensors"]
    (tmp_path / "a.png").unlink()  # served from the cache now
    assert torch.equal(ds[0]["input_tensors"], first)
    uncached = ImagePathsDataset(["a.png"], dataset_root=tmp_path, transform=identity_tensor)
    with pytest.raises(ImageReadError):
        uncached[0]


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.png")
    img = imread_pillow((tmp_path / "t.png").read_bytes())
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_extra_data_and_key_clash(mock_root: Path) -> None:
    ds = ImagePathsDataset(["images/circle_1.png"], mock_root, transform=identity_tensor, extra_data={"w": [7]})
    assert ds[0]["w"] == 7
    with pytest.raises(KeyError, match="clashes"):
        ImagePathsDataset(["images/circle_1.png"], mock_root, transform=identity_tensor, extra_data={"idx": [7]})[0]
