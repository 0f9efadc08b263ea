"""read_image_cv2: RGB uint8 (H, W, 3) arrays, and errors that name the file."""

from pathlib import Path

import numpy as np
import pytest
from omlcore_albumentations import ImageDecodeError, read_image_cv2
from PIL import Image


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(9, 13, 3), dtype=np.uint8)


def test_reads_rgb_in_rgb_order(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)  # written by PIL, so a channel swap would show
    out = read_image_cv2(path)
    assert out.dtype == np.uint8
    assert np.array_equal(out, rgb)
    assert np.array_equal(read_image_cv2(str(path)), rgb)
    assert np.array_equal(read_image_cv2(path.read_bytes()), rgb)


def test_grey_and_alpha_images_become_three_channels(tmp_path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb[:, :, 0], mode="L").save(tmp_path / "grey.png")
    grey = read_image_cv2(tmp_path / "grey.png")
    assert grey.shape == (9, 13, 3)
    assert np.array_equal(grey[:, :, 1], rgb[:, :, 0])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    assert np.array_equal(read_image_cv2(tmp_path / "alpha.png"), rgb)


def test_non_ascii_path(tmp_path: Path, rgb: np.ndarray) -> None:
    path = tmp_path / "фото é.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(read_image_cv2(path), rgb)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*nope\.jpg"):
        read_image_cv2(missing)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "the file is empty"), (b"this is not an image at all", "cannot decode"), (None, "cannot decode")],
)
def test_undecodable_file_is_named(tmp_path: Path, rgb: np.ndarray, content: bytes | None, reason: str) -> None:
    path = tmp_path / "broken.png"
    if content is None:  # a truncated PNG: the header is right, the data is cut short
        Image.fromarray(rgb).save(path)
        content = path.read_bytes()[:40]
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=rf"cannot read image .*broken\.png: .*{reason}") as info:
        read_image_cv2(path)
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        read_image_cv2(tmp_path)


def test_undecodable_bytes() -> None:
    with pytest.raises(ImageDecodeError, match=r"<3 bytes>"):
        read_image_cv2(b"abc")
