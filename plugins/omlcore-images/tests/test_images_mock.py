"""The mock dataset: OML's schema, and byte-identical files on every run."""

import hashlib
from pathlib import Path

from omlcore_images.dataframe import check_dataframe
from omlcore_images.mock import CSV_NAMES, make_mock_dataset


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerating_gives_identical_bytes(tmp_path: Path) -> None:
    make_mock_dataset(tmp_path / "a")
    make_mock_dataset(tmp_path / "b")
    make_mock_dataset(tmp_path / "a")  # over an existing copy
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert len(a) == 24 + 4
    assert a == b


def test_schema(mock_root: Path) -> None:
    train, val = make_mock_dataset(mock_root)
    assert len(train) == 12
    assert len(val) == 12
    assert sorted(train["label"].unique().tolist()) == [0, 1, 2, 3]
    assert sorted(val["label"].unique().tolist()) == [4, 5, 6, 7]
    per_label = val.groupby("label")[["is_query", "is_gallery"]].sum()
    assert per_label["is_query"].tolist() == [1] * 4
    assert per_label["is_gallery"].tolist() == [2] * 4
    headers = {name: (mock_root / name).read_text().splitlines()[0] for name in CSV_NAMES}
    base = "label,path,split,is_query,is_gallery"
    assert headers == {
        "df.csv": base,
        "df_with_category.csv": base + ",category",
        "df_with_bboxes.csv": base + ",x_1,x_2,y_1,y_2",
        "df_with_sequence.csv": base + ",sequence",
    }
    for name in CSV_NAMES:
        report = check_dataframe(mock_root / name, check_images=True)
        assert report.problems == [], report.format()


def test_images_differ_between_labels_and_drawings(mock_root: Path) -> None:
    hashes = digest(mock_root / "images")
    assert len(set(hashes.values())) == 24
