"""Converters on small trees generated in each dataset's official layout."""

import json
from pathlib import Path

import pytest
from omlcore_images.converters import convert
from omlcore_images.dataframe import read_dataframe
from omlcore_images.errors import ConversionError, DataFrameError
from PIL import Image


def image(path: Path, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def emoji_tree(src: Path) -> None:
    codes = ["1F600", "1F601", "1F602", "1F603", "1F604", "1F605", "2764-FE0F"]
    entries = [{"unified": c, "image": f"{c.lower()}.png", "category": "Smileys & Emotion"} for c in codes]
    for vendor in ("google", "twitter", "apple"):
        pkg = src / f"emoji-datasource-{vendor}" / "package"
        pkg.mkdir(parents=True)
        (pkg / "emoji.json").write_text(json.dumps(entries))
        for c in codes:
            if vendor == "apple" and c != "1F600":
                continue
            if vendor == "twitter" and c == "2764-FE0F":  # no query image: not a class
                continue
            image(pkg / "img" / vendor / "64" / f"{c.lower()}.png", (64, 64), "RGBA")


def test_emoji(tmp_path: Path) -> None:
    emoji_tree(tmp_path / "src")
    result = convert("emoji", tmp_path / "src", tmp_path / "out", seed=0)
    assert (result.n_train_labels, result.n_val_labels) == (3, 3)
    df = read_dataframe(tmp_path / "out" / "df.csv")
    assert set(df["unified"]) == {"1F600", "1F601", "1F602", "1F603", "1F604", "1F605"}
    val = df[df["split"] == "validation"]
    assert (val[val["is_query"]]["vendor"] == "twitter").all()
    assert set(val[val["is_gallery"]]["vendor"]) <= {"google", "apple"}
    assert val.groupby("label")["is_query"].sum().tolist() == [1, 1, 1]
    assert df["path"].iloc[0].startswith("../src/")
    again = convert("emoji", tmp_path / "src", tmp_path / "out2", seed=0)
    assert (tmp_path / "out" / "df.csv").read_bytes() == again.csv_path.read_bytes()
    other = convert("emoji", tmp_path / "src", tmp_path / "out3", seed=5)
    split = df.groupby("unified")["split"].first()
    assert not split.equals(read_dataframe(other.csv_path).groupby("unified")["split"].first())


def test_emoji_errors(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="npm pack"):
        convert("emoji", tmp_path, tmp_path / "out")
    emoji_tree(tmp_path / "src")
    with pytest.raises(ConversionError, match="query vendor 'facebook'.*google, twitter|query vendor 'facebook'"):
        convert("emoji", tmp_path / "src", tmp_path / "out", query_vendor="facebook")


def test_sop(tmp_path: Path) -> None:
    src = tmp_path / "Stanford_Online_Products"
    head = "image_id class_id super_class_id path\n"
    train = [
        (1, 1, 1, "bicycle_final/111_0.JPG"),
        (2, 1, 1, "bicycle_final/111_1.JPG"),
        (3, 2, 2, "chair_final/222_0.JPG"),
    ]
    train.append((4, 2, 2, "chair_final/222_1.JPG"))
    test = [(5, 3, 1, "bicycle_final/333_0.JPG"), (6, 3, 1, "bicycle_final/333_1.JPG")]
    for name, rows in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(head + "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in rows))
        for *_, path in rows:
            image(src / path)
    result = convert("sop", src, src)
    df = read_dataframe(src / "df.csv")
    assert result.n_images == 6
    assert df["path"].iloc[0] == "bicycle_final/111_0.JPG"
    assert df["category"].tolist() == ["bicycle", "bicycle", "chair", "chair", "bicycle", "bicycle"]
    val = df[df["split"] == "validation"]
    assert val["is_query"].all()
    assert val["is_gallery"].all()


def test_inshop(tmp_path: Path) -> None:
    src = tmp_path / "inshop"
    rows = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
        ("img/MEN/Denim/id_00000007/01_1_front.jpg", "id_00000007", "query"),
        ("img/MEN/Denim/id_00000007/01_2_side.jpg", "id_00000007", "gallery"),
    ]
    src.mkdir()
    (src / "list_eval_partition.txt").write_text(
        "4\nimage_name item_id evaluation_status\n" + "".join(f"{a}  {b}  {c}\n" for a, b, c in rows)
    )
    boxes = ["1 1 10 2 18 14", "1 1 0 0 20 16", "1 1 5 5 5 9", "1 1 3 4 19 15"]  # the third is degenerate
    (src / "list_bbox_inshop.txt").write_text(
        "4\nimage_name clothes_type pose_type x_1 y_1 x_2 y_2\n"
        + "".join(f"{r[0]} {b}\n" for r, b in zip(rows, boxes, strict=False))
    )
    for path, *_ in rows:
        image(src / path)
    result = convert("inshop", src, tmp_path / "out")
    df = read_dataframe(result.csv_path)
    assert df["label"].tolist() == [2, 2, 7, 7]
    assert df["category"].iloc[0] == "WOMEN/Dresses"
    assert df["x_1"].iloc[0] == 10
    assert df["y_2"].iloc[0] == 14
    assert df["x_1"].isna().tolist() == [False, False, True, False]
    assert df["is_query"].tolist()[2:] == [True, False]
    assert "1 degenerate box" in result.summary()
    assert (result.n_queries, result.n_gallery) == (1, 1)


def cub_tree(src: Path, n_classes: int = 4) -> None:
    src.mkdir(parents=True)
    images, labels, boxes, classes = [], [], [], []
    i = 0
    for c in range(1, n_classes + 1):
        classes.append(f"{c} {c:03d}.Bird_{c}")
        for k in range(2):
            i += 1
            path = f"{c:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
            image(src / "images" / path, (30, 20))
            images.append(f"{i} {path}")
            labels.append(f"{i} {c}")
            boxes.append(f"{i} 2.5 3.0 20.0 10.4")
    for name, rows in (("images.txt", images), ("image_class_labels.txt", labels), ("bounding_boxes.txt", boxes)):
        (src / name).write_text("\n".join(rows) + "\n")
    (src / "classes.txt").write_text("\n".join(classes) + "\n")


def test_cub(tmp_path: Path) -> None:
    src = tmp_path / "CUB_200_2011"
    cub_tree(src)
    result = convert("cub", src, tmp_path / "out")
    df = read_dataframe(result.csv_path, check_images=True)
    assert df[df["split"] == "train"]["label"].unique().tolist() == [1, 2]
    assert df[df["split"] == "validation"]["label"].unique().tolist() == [3, 4]
    assert (df["x_1"].iloc[0], df["x_2"].iloc[0], df["y_1"].iloc[0], df["y_2"].iloc[0]) == (2, 23, 3, 14)
    no_box = convert("cub", src, tmp_path / "out2", bboxes=False)
    assert "x_1" not in read_dataframe(no_box.csv_path).columns


def test_failed_conversion_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "CUB_200_2011"
    cub_tree(src)
    (src / "images" / "004.Bird_4" / "Bird_4_1.jpg").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "df.csv").write_text("old\n")
    with pytest.raises(DataFrameError, match=r"file does not exist.*line 9"):
        convert("cub", src, out)
    assert (out / "df.csv").read_text() == "old\n"
    assert [p.name for p in out.iterdir()] == ["df.csv"]


def test_bad_annotation_file(tmp_path: Path) -> None:
    src = tmp_path / "cub"
    cub_tree(src)
    (src / "image_class_labels.txt").write_text("1 1\n2\n")
    with pytest.raises(ConversionError, match=r"image_class_labels.txt, line 2: expected 2 fields"):
        convert("cub", src, tmp_path / "out")


def test_cars(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    import numpy as np

    src = tmp_path / "cars"
    dtype = [(f, "O") for f in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")]
    rows = []
    for i, cls in enumerate([1, 1, 2, 2, 3, 3, 4, 4]):
        path = f"car_ims/{i + 1:06d}.jpg"
        image(src / path, (40, 30))
        rows.append((path, 1, 2, 40, 30, cls, i % 2))
    annos = np.array(rows, dtype=dtype)
    scipy_io.savemat(
        src / "cars_annos.mat", {"annotations": annos, "class_names": np.array(["a", "b", "c", "d"], dtype=object)}
    )
    result = convert("cars", src, tmp_path / "out")
    df = read_dataframe(result.csv_path, check_images=True)
    assert df[df["split"] == "train"]["label"].unique().tolist() == [1, 2]
    assert (df["x_1"].iloc[0], df["y_1"].iloc[0], df["x_2"].iloc[0], df["y_2"].iloc[0]) == (0, 1, 40, 30)
    assert result.n_queries == 4
    assert result.n_gallery == 4
