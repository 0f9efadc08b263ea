"""The torchvision family of image transforms, registered in ``omlcore.transforms``.

Each function is a factory: called with a config's ``args`` it returns a transform that maps a PIL image
(or an ``(H, W, 3)`` uint8 array) to a float tensor ``(3, H, W)`` normalised with ``mean``/``std``.
Names, arguments and defaults follow OML's; the datasets read images with PIL for these transforms.

>>> import omlcore
>>> t = omlcore.build("transform", {"name": "norm_resize_torch", "args": {"im_size": 64}})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchvision.transforms.v2 import Transform  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "augs_hypvit_torch",
    "augs_torch",
    "norm_resize_hypvit_torch",
    "norm_resize_torch",
    "norm_torch",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _to_normalised_tensor(mean: tuple[float, float, float], std: tuple[float, float, float]) -> list[Any]:
    """The common tail: uint8 image to float in [0, 1], per-channel normalisation, a plain tensor out."""
    import torch
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.ToPureTensor(),
    ]


def _check_size(**sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise ValueError(f"{name} must be a positive number of pixels, got {value}")


def norm_torch(
    mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD
) -> Transform:
    """Normalisation only: image to float tensor, then ``(x - mean) / std`` per channel (no resizing)."""
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    return v2.Compose([v2.ToImage(), *_to_normalised_tensor(mean, std)])


def norm_resize_torch(
    im_size: int, mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD
) -> Transform:
    """Resize to a square ``im_size x im_size`` (aspect ratio not kept), then normalise."""
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    _check_size(im_size=im_size)
    return v2.Compose([v2.ToImage(), v2.Resize((im_size, im_size), antialias=True), *_to_normalised_tensor(mean, std)])


def augs_torch(
    im_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    hflip: float = 0.5,
    min_scale: float = 1.0,
    rotation: float = 0.0,
    jitter: float = 0.25,
) -> Transform:
    """Training augmentations: square resize, horizontal flip and colour jitter, then normalise.

    The defaults are OML's. For data whose mirror image is another class (arrows, letters, logos) set
    ``hflip: 0``. ``min_scale < 1`` replaces the plain resize by a random resized crop covering
    ``min_scale..1`` of the image (aspect ratio 3/4..4/3); ``rotation`` adds a random rotation of up to
    that many degrees either way (the corners filled with white); ``jitter`` is the brightness, contrast
    and saturation strength (hue gets a fifth of it; 0 turns colour jitter off).
    """
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    _check_size(im_size=im_size)
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"min_scale is the smallest fraction of the image a crop keeps, in (0, 1], got {min_scale}")
    if rotation < 0 or jitter < 0:
        raise ValueError(f"rotation and jitter must be >= 0, got rotation={rotation}, jitter={jitter}")
    steps: list[Any] = [v2.ToImage()]  # first, so that PIL images and numpy arrays go through the same steps
    if min_scale < 1.0:
        steps.append(v2.RandomResizedCrop((im_size, im_size), scale=(min_scale, 1.0), antialias=True))
    else:
        steps.append(v2.Resize((im_size, im_size), antialias=True))
    if rotation > 0:
        steps.append(v2.RandomRotation(rotation, fill=255))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if jitter > 0:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 5, 0.5)))
    return v2.Compose([*steps, *_to_normalised_tensor(mean, std)])


def augs_hypvit_torch(
    im_size: int = 224,
    min_scale: float = 0.2,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Transform:
    """Training augmentations of the Hyp-ViT recipe: a random resized crop (bicubic) covering
    ``min_scale..1`` of the image, resized to ``im_size``, and a horizontal flip; then normalise."""
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    _check_size(im_size=im_size)
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    return v2.Compose(
        [
            v2.ToImage(),  # first, so that PIL images and numpy arrays go through the same steps
            v2.RandomResizedCrop(
                im_size, scale=(min_scale, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True
            ),
            v2.RandomHorizontalFlip(p=0.5),
            *_to_normalised_tensor(mean, std),
        ]
    )


def norm_resize_hypvit_torch(
    im_size: int = 224,
    crop_size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Transform:
    """Evaluation transform of the Hyp-ViT recipe: resize the shorter side to ``im_size`` (bicubic), take the
    central ``crop_size x crop_size`` crop, then normalise."""
    from torchvision.transforms import v2  # type: ignore[import-untyped,unused-ignore]

    _check_size(im_size=im_size, crop_size=crop_size)
    return v2.Compose(
        [
            v2.ToImage(),  # first, so that PIL images and numpy arrays go through the same steps
            v2.Resize(im_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(crop_size),
            *_to_normalised_tensor(mean, std),
        ]
    )
