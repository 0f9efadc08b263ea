"""The pipelines: output shapes, exact normalisation, white padding, seeding, DataLoader workers, the call forms."""

import pickle
import random
import warnings
from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2
from omlcore_albumentations import TensorCompose, apply
from PIL import Image

import omlcore

EVAL = [("norm_resize_albu", {"im_size": 64}), ("norm_resize_albu_clip", {"im_size": 64}), ("norm_albu", {})]

# (pixel / 255 - mean) / std per channel, worked out by hand for pixels 0 and 255.
IMAGENET_AT_0 = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]  # -2.117904, -2.035714, -1.804444
IMAGENET_AT_255 = [0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]  # 2.248908, 2.428571, 2.64
CLIP_AT_255 = [0.51854534 / 0.26862954, 0.5421725 / 0.26130258, 0.59178927 / 0.27577711]


def build(name: str, **args: Any) -> Any:
    return omlcore.build("transform", {"name": name, "args": args})


def constant(value: int, height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def per_channel(values: list[float], height: int, width: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None, None].expand(3, height, width)


@pytest.mark.parametrize(("name", "args"), [*EVAL, ("augs_albu", {"im_size": 64, "seed": 0})])
@pytest.mark.parametrize("size", [(40, 30), (30, 40), (5, 7), (300, 200), (64, 64)])
def test_output_is_a_float_chw_tensor(name: str, args: dict[str, Any], size: tuple[int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    transform = build(name, **args)
    assert isinstance(transform, A.Compose)
    assert isinstance(transform, TensorCompose)
    out = transform(image=image)["image"]
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert out.shape == ((3, 64, 64) if "im_size" in args else (3, *size))
    assert torch.isfinite(out).all()


def test_default_im_size_is_224(random_image: np.ndarray) -> None:
    for name in ("augs_albu", "norm_resize_albu", "norm_resize_albu_clip"):
        assert build(name)(random_image).shape == (3, 224, 224), name


@pytest.mark.parametrize(("name", "args"), EVAL)
def test_positional_and_keyword_calls_agree(name: str, args: dict[str, Any], random_image: np.ndarray) -> None:
    transform = build(name, **args)
    by_keyword = transform(image=random_image)
    assert set(by_keyword) == {"image"}
    assert torch.equal(transform(random_image), by_keyword["image"])
    assert torch.equal(apply(transform, random_image), by_keyword["image"])


def test_norm_albu_is_exact_on_constant_images() -> None:
    transform = build("norm_albu")
    torch.testing.assert_close(transform(constant(0, 4, 6)), per_channel(IMAGENET_AT_0, 4, 6), rtol=0, atol=1e-6)
    torch.testing.assert_close(transform(constant(255, 4, 6)), per_channel(IMAGENET_AT_255, 4, 6), rtol=0, atol=1e-6)
    # pixel 51 is 0.2: (0.2 - mean) / std
    expected = [(0.2 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    torch.testing.assert_close(transform(constant(51, 3, 3)), per_channel(expected, 3, 3), rtol=0, atol=1e-6)


def test_mean_and_std_from_the_config() -> None:
    transform = build("norm_albu", mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    torch.testing.assert_close(transform(constant(255, 2, 2)), per_channel([2.0, 1.0, 0.5], 2, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(transform(constant(0, 2, 2)), per_channel([-2.0, -1.0, -0.5], 2, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "white"), [("norm_resize_albu", IMAGENET_AT_255), ("norm_resize_albu_clip", CLIP_AT_255)]
)
def test_pads_to_a_centred_white_square(name: str, white: list[float]) -> None:
    """A black 100x50 image: longest side 100 -> 64, so 64x32 black, then 16 white columns each side."""
    out = build(name, im_size=64)(constant(0, 100, 50))
    assert out.shape == (3, 64, 64)
    black = out[:, :, 16:48]
    assert torch.allclose(black, black[:, :1, :1].expand_as(black), atol=1e-6)
    assert black[:, 0, 0].tolist() == pytest.approx(
        IMAGENET_AT_0 if name == "norm_resize_albu" else [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD, strict=True)],
        abs=1e-5,
    )
    for side in (out[:, :, :16], out[:, :, 48:]):
        torch.testing.assert_close(side, per_channel(white, 64, 16), rtol=0, atol=1e-5)


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def test_eval_transforms_are_deterministic_across_builds(random_image: np.ndarray) -> None:
    for name, args in EVAL:
        outputs = [build(name, **args)(random_image) for _ in range(2)]
        assert torch.equal(outputs[0], outputs[1]), name


def sequence(transform: Any, image: np.ndarray, n: int = 6) -> list[torch.Tensor]:
    return [transform(image) for _ in range(n)]


def scramble_global_rngs(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_seeded_augs_are_reproducible_and_ignore_global_rngs(random_image: np.ndarray) -> None:
    scramble_global_rngs(1)
    first = sequence(build("augs_albu", im_size=48, seed=5), random_image)
    scramble_global_rngs(2)
    second = sequence(build("augs_albu", im_size=48, seed=5), random_image)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(first[0], x) for x in first[1:]), "the calls of one transform should differ"


def test_different_seeds_give_different_augmentations(random_image: np.ndarray) -> None:
    first = sequence(build("augs_albu", im_size=48, seed=5), random_image)
    second = sequence(build("augs_albu", im_size=48, seed=6), random_image)
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_unseeded_augs_differ_between_builds(random_image: np.ndarray) -> None:
    first = sequence(build("augs_albu", im_size=48), random_image)
    second = sequence(build("augs_albu", im_size=48), random_image)
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_nested_transforms_share_one_random_stream() -> None:
    """albumentations 2.x seeds every nested transform alike; here they draw from the compose's generator."""
    transform = build("augs_albu", im_size=32, seed=11)
    assert all(t.random_generator is transform.random_generator for t in transform.transforms)
    assert all(t.py_random is transform.py_random for t in transform.transforms)
    one_of = transform.transforms[3]
    assert isinstance(one_of, A.OneOf)
    assert all(t.random_generator is transform.random_generator for t in one_of.transforms)


class SameImage(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self, transform: Any, image: np.ndarray, n: int) -> None:
        self.transform, self.image, self.n = transform, image, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        out: torch.Tensor = self.transform(self.image)
        return out


def through_workers(transform: Any, image: np.ndarray, torch_seed: int) -> torch.Tensor:
    torch.manual_seed(torch_seed)
    loader = torch.utils.data.DataLoader(SameImage(transform, image, 12), batch_size=1, num_workers=2)
    return torch.cat(list(loader))


@pytest.mark.parametrize("seed", [None, 4])
def test_dataloader_workers_get_distinct_reproducible_streams(seed: int | None, random_image: np.ndarray) -> None:
    transform = build("augs_albu", im_size=24, seed=seed)
    out = through_workers(transform, random_image, torch_seed=0)
    # batch i comes from worker i % 2: each worker's sequence must differ from the other's
    assert not torch.equal(out[0::2], out[1::2]), "both workers produced the same augmentations"
    assert torch.equal(out, through_workers(transform, random_image, torch_seed=0))
    assert not torch.equal(out, through_workers(transform, random_image, torch_seed=1))


def test_input_is_not_modified(random_image: np.ndarray) -> None:
    before = random_image.copy()
    for name, args in [*EVAL, ("augs_albu", {"im_size": 32, "seed": 0})]:
        for _ in range(5):
            build(name, **args)(random_image)
        assert np.array_equal(random_image, before), name


def test_positional_call_takes_a_pil_image(random_image: np.ndarray) -> None:
    transform = build("norm_resize_albu", im_size=32)
    assert torch.equal(transform(Image.fromarray(random_image)), transform(random_image))
    grey = Image.fromarray(random_image[:, :, 0], mode="L")
    assert transform(grey).shape == (3, 32, 32)


def test_positional_call_errors_are_clear(random_image: np.ndarray) -> None:
    transform = build("norm_albu")
    with pytest.raises(TypeError, match=r"numpy array .* or a PIL image, got list"):
        transform([[1, 2, 3]])
    with pytest.raises(TypeError, match="one image"):
        transform(random_image, random_image)
    with pytest.raises(TypeError, match="one image"):
        transform(random_image, mask=random_image)


def test_apply_works_with_any_albumentations_pipeline(random_image: np.ndarray) -> None:
    plain = A.Compose([A.Normalize(mean=0.0, std=1.0), ToTensorV2()])
    out = apply(plain, random_image)
    torch.testing.assert_close(out, torch.from_numpy(random_image).permute(2, 0, 1).float() / 255, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="must end with albumentations.pytorch.ToTensorV2"):
        apply(A.Compose([A.Normalize()]), random_image)


def test_pickled_copy_continues_the_same_stream(random_image: np.ndarray) -> None:
    """DataLoader workers started with 'spawn' receive pickled transforms."""
    transform = build("augs_albu", im_size=32, seed=3)
    copy = pickle.loads(pickle.dumps(transform))
    for _ in range(4):
        assert torch.equal(transform(random_image), copy(random_image))


def test_albumentations_serialisation_round_trip(random_image: np.ndarray) -> None:
    transform = build("norm_resize_albu", im_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # albumentations 2.0.8 warns about its own PadIfNeeded field
        restored = A.from_dict(A.to_dict(transform))
    assert isinstance(restored, TensorCompose)
    assert torch.equal(restored(random_image), transform(random_image))
