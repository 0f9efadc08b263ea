"""The torchvision transform factories through the registry, the conformance suite, pretrained lookup."""

from importlib import metadata
from typing import Any

import numpy as np
import pytest
import torch
from omlcore_images import get_transforms_for_pretrained, register_pretrained_transform
from omlcore_images.errors import PretrainedTransformNotFoundError
from omlcore_images.readers import imread_cv2, imread_pillow, reader_for_transform
from PIL import Image

import omlcore
from omlcore.errors import ConfigValidationError
from omlcore.testing.conformance import TransformFactoryConformance

NAMES = ["augs_hypvit_torch", "augs_torch", "norm_resize_hypvit_torch", "norm_resize_torch", "norm_torch"]


def sample() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))


def test_entry_points_are_declared() -> None:
    eps = {ep.name for ep in metadata.distribution("omlcore-images").entry_points if ep.group == "omlcore.transforms"}
    assert sorted(eps) == NAMES
    assert set(NAMES) <= set(omlcore.available("transform"))


@pytest.mark.parametrize(
    ("name", "args", "shape"),
    [
        ("norm_torch", {}, (3, 50, 70)),
        ("norm_resize_torch", {"im_size": 32}, (3, 32, 32)),
        ("augs_torch", {"im_size": 24}, (3, 24, 24)),
        ("augs_torch", {"im_size": 24, "hflip": 0, "min_scale": 0.7, "rotation": 10, "jitter": 0.2}, (3, 24, 24)),
        ("augs_hypvit_torch", {}, (3, 224, 224)),
        ("augs_hypvit_torch", {"im_size": 40, "min_scale": 0.5}, (3, 40, 40)),
        ("norm_resize_hypvit_torch", {"im_size": 64, "crop_size": 48}, (3, 48, 48)),
    ],
)
def test_build_from_config(name: str, args: dict[str, Any], shape: tuple[int, ...]) -> None:
    t = omlcore.build("transform", {"name": name, "args": args})
    out = t(sample())
    assert tuple(out.shape) == shape
    assert out.dtype == torch.float32
    assert reader_for_transform(t) is imread_pillow


def test_normalisation_values() -> None:
    img = Image.new("RGB", (2, 2), (255, 0, 128))
    out = omlcore.build("transform", {"name": "norm_torch", "args": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}})(
        img
    )
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)


def test_augs_torch_without_flip_keeps_the_left_right_order() -> None:
    # left half black, right half white: a flip would swap them; no jitter, so the values are exact
    img = Image.new("RGB", (8, 8), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 4, 8))
    mean_std = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    flip = omlcore.build(
        "transform", {"name": "augs_torch", "args": {"im_size": 8, "hflip": 1.0, "jitter": 0, **mean_std}}
    )
    keep = omlcore.build(
        "transform", {"name": "augs_torch", "args": {"im_size": 8, "hflip": 0, "jitter": 0, **mean_std}}
    )
    assert keep(img)[:, :, 0].max() == 0.0
    assert keep(img)[:, :, -1].min() == 1.0
    assert flip(img)[:, :, 0].min() == 1.0
    assert flip(img)[:, :, -1].max() == 0.0


def test_augs_torch_rotation_fills_corners_with_white() -> None:
    img = Image.new("RGB", (32, 32), (0, 0, 0))
    t = omlcore.build(
        "transform",
        {
            "name": "augs_torch",
            "args": {"im_size": 32, "hflip": 0, "jitter": 0, "rotation": 45, "mean": [0, 0, 0], "std": [1, 1, 1]},
        },
    )
    torch.manual_seed(0)
    outs = [t(img) for _ in range(8)]
    # a black square turned by up to 45 degrees: white (1.0) shows in a corner whenever the angle is not ~0
    assert any(float(o[:, 0, 0].min()) == 1.0 for o in outs)
    assert all(float(o[:, 16, 16].max()) == 0.0 for o in outs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"hflip": 1.5}, "hflip is a probability"),
        ({"min_scale": 0.0}, "min_scale"),
        ({"rotation": -1}, "rotation and jitter"),
        ({"jitter": -0.1}, "rotation and jitter"),
    ],
)
def test_augs_torch_rejects_bad_knobs(args: dict[str, Any], match: str) -> None:
    from omlcore_images.transforms import augs_torch

    with pytest.raises(ValueError, match=match):
        augs_torch(im_size=16, **args)


def test_numpy_input_is_accepted() -> None:
    arr = np.asarray(sample()).copy()
    assert omlcore.build("transform", {"name": "norm_resize_torch", "args": {"im_size": 16}})(arr).shape == (3, 16, 16)


def test_bad_args_are_rejected_with_their_path() -> None:
    with pytest.raises(ConfigValidationError, match="im_sise"):
        omlcore.build("transform", {"name": "norm_resize_torch", "args": {"im_sise": 3}})
    with pytest.raises(omlcore.errors.ComponentBuildError, match="positive"):
        omlcore.build("transform", {"name": "norm_resize_torch", "args": {"im_size": 0}})


class FakeAlbu:
    """Stands in for an albumentations transform: only its module name matters to the reader choice."""


FakeAlbu.__module__ = "albumentations.core.composition"


def test_reader_follows_the_transform_family() -> None:
    assert reader_for_transform(FakeAlbu()) is imread_cv2
    assert reader_for_transform(lambda x: x) is imread_pillow


def test_pretrained_transforms() -> None:
    t, reader = get_transforms_for_pretrained("resnet50_imagenet1k_v2")
    assert reader is imread_pillow
    assert tuple(t(sample()).shape) == (3, 224, 224)
    with pytest.raises(PretrainedTransformNotFoundError, match=r"resnet50_imagenet1k_v3.*Did you mean.*Known keys"):
        get_transforms_for_pretrained("resnet50_imagenet1k_v3")


def test_pretrained_in_process_registration() -> None:
    register_pretrained_transform("my_key_for_test", lambda: FakeAlbu())
    t, reader = get_transforms_for_pretrained("my_key_for_test")
    assert isinstance(t, FakeAlbu)
    assert reader is imread_cv2


class SamplePIL:
    @pytest.fixture
    def sample_input(self) -> Image.Image:
        return sample()


class TestNormResizeConformance(SamplePIL, TransformFactoryConformance):
    kind_name = "norm_resize_torch"
    args = {"im_size": 32}
    expected_shape = (3, 32, 32)


class TestNormConformance(SamplePIL, TransformFactoryConformance):
    kind_name = "norm_torch"
    expected_shape = (3, 50, 70)


class TestHypvitEvalConformance(SamplePIL, TransformFactoryConformance):
    kind_name = "norm_resize_hypvit_torch"
    args = {"im_size": 40, "crop_size": 32}
    expected_shape = (3, 32, 32)


class TestAugsConformance(SamplePIL, TransformFactoryConformance):
    kind_name = "augs_torch"
    args = {"im_size": 32}
    expected_shape = (3, 32, 32)
    deterministic = False


class TestHypvitAugsConformance(SamplePIL, TransformFactoryConformance):
    kind_name = "augs_hypvit_torch"
    args = {"im_size": 32}
    expected_shape = (3, 32, 32)
    deterministic = False
