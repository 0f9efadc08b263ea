"""The transform factories that the ``omlcore.transforms`` entry points name.

Each factory takes OML's argument names and returns a :class:`~omlcore_albumentations.compose.TensorCompose`
(an ``albumentations.Compose``) that maps an RGB ``uint8`` ``(H, W, 3)`` array to a normalised
``float32`` ``(3, H', W')`` tensor. Importing this module is cheap: albumentations, OpenCV and torch
are imported inside the factories, when a config names one of them.

The argument annotations are what omlcore validates a config's ``args`` against, so ``im_size: big``
or ``std: [0, 1, 1]`` is reported with its config path before any work starts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import PositiveFloat, PositiveInt

if TYPE_CHECKING:
    from omlcore_albumentations.compose import TensorCompose

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAD_COLOR",
    "Mean",
    "Std",
    "augs_albu",
    "norm_albu",
    "norm_resize_albu",
    "norm_resize_albu_clip",
]

Mean = tuple[float, float, float]
"""Per-channel (R, G, B) means, in units of the maximum pixel value (255 for ``uint8``)."""
Std = tuple[PositiveFloat, PositiveFloat, PositiveFloat]
"""Per-channel (R, G, B) standard deviations, same units; each must be > 0."""

IMAGENET_MEAN: Mean = (0.485, 0.456, 0.406)
IMAGENET_STD: Std = (0.229, 0.224, 0.225)
CLIP_MEAN: Mean = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Std = (0.26862954, 0.26130258, 0.27577711)
PAD_COLOR: tuple[int, int, int] = (255, 255, 255)
"""Images are padded to a square with white, and spatial augmentations fill uncovered pixels with it."""


def augs_albu(
    im_size: PositiveInt = 224,
    mean: Mean = IMAGENET_MEAN,
    std: Std = IMAGENET_STD,
    seed: int | None = None,
) -> TensorCompose:
    """OML's training augmentations: fit into an ``im_size`` square, flip, then random groups.

    Steps: scale the longest side to ``im_size``; pad to ``im_size`` x ``im_size`` with white
    (centred); horizontal flip (p 0.5); then each group picks at most one member with its own
    probability, members weighted inside the group: spatial (p 0.5: perspective, small affine,
    grid distortion), blur (p 0.5: motion, median, box, gaussian), colour (p 0.8: colour jitter,
    hue-saturation-value, CLAHE, sharpen, emboss, brightness-contrast), channels (p 0.2: channel
    dropout, grey, channel shuffle), noise (p 0.25: three 20-pixel white holes, gaussian noise);
    finally normalise with ``mean``/``std`` and convert to a ``(3, im_size, im_size)`` tensor.

    ``seed`` (not in OML) makes the sequence of augmentations reproducible; ``None`` draws fresh
    entropy (DataLoader workers then follow the torch seed, see :mod:`omlcore_albumentations.compose`).
    """
    import albumentations as A  # type: ignore[import-untyped]
    import cv2

    from omlcore_albumentations.compose import TensorCompose

    constant = cv2.BORDER_CONSTANT
    spatial = [
        A.Perspective(scale=(0.06, 0.07), border_mode=constant, fill=PAD_COLOR),
        A.Affine(
            scale=1.0,
            rotate=(-0.1, 0.1),
            translate_percent=(-0.05, 0.05),
            shear=(-7, 7),
            border_mode=constant,
            fill=PAD_COLOR,
        ),
        A.GridDistortion(distort_limit=0.1, border_mode=constant, fill=PAD_COLOR),
    ]
    blur = [
        A.MotionBlur(),
        A.MedianBlur(),
        A.Blur(),
        # albumentations 1.x sampled the kernel size from 3..7 by default; 2.x derives it from sigma
        A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.7, 2.0)),
    ]
    colour = [
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.5),
        A.HueSaturationValue(p=0.1),
        A.CLAHE(p=0.1),
        A.Sharpen(p=0.1),
        A.Emboss(p=0.1),
        A.RandomBrightnessContrast(p=0.1),
    ]
    channels = [
        A.ChannelDropout(p=0.1),
        A.ToGray(p=0.8),
        A.ChannelShuffle(p=0.1),
    ]
    noise = [
        # 1.x: max_holes=3, max_height=20, max_width=20 (min_* defaulted to max_*): exactly three 20x20 holes
        A.CoarseDropout(
            num_holes_range=(3, 3), hole_height_range=(20, 20), hole_width_range=(20, 20), fill=PAD_COLOR, p=0.3
        ),
        # 1.x: variance drawn from 10..50 on the 0..255 scale; 2.x takes the std as a fraction of 255
        A.GaussNoise(std_range=(math.sqrt(10) / 255, math.sqrt(50) / 255), p=0.7),
    ]
    return TensorCompose(
        [
            *_fit_to_square(A, cv2, im_size),
            A.HorizontalFlip(p=0.5),
            A.OneOf(spatial, p=0.5),
            A.OneOf(blur, p=0.5),
            A.OneOf(colour, p=0.8),
            A.OneOf(channels, p=0.2),
            A.OneOf(noise, p=0.25),
            *_normalise_to_tensor(A, mean, std),
        ],
        seed=seed,
    )


def norm_albu(mean: Mean = IMAGENET_MEAN, std: Std = IMAGENET_STD) -> TensorCompose:
    """Normalise with ``mean``/``std`` and convert to a ``(3, H, W)`` tensor; the size is kept."""
    import albumentations as A

    from omlcore_albumentations.compose import TensorCompose

    return TensorCompose(_normalise_to_tensor(A, mean, std))


def norm_resize_albu(im_size: PositiveInt = 224, mean: Mean = IMAGENET_MEAN, std: Std = IMAGENET_STD) -> TensorCompose:
    """Scale the longest side to ``im_size``, pad to a white square, normalise, convert to a
    ``(3, im_size, im_size)`` tensor. OML's evaluation transform for its albumentations models."""
    import albumentations as A
    import cv2

    from omlcore_albumentations.compose import TensorCompose

    return TensorCompose([*_fit_to_square(A, cv2, im_size), *_normalise_to_tensor(A, mean, std)])


def norm_resize_albu_clip(im_size: PositiveInt = 224) -> TensorCompose:
    """:func:`norm_resize_albu` with CLIP's mean and std (:data:`CLIP_MEAN`, :data:`CLIP_STD`)."""
    return norm_resize_albu(im_size=im_size, mean=CLIP_MEAN, std=CLIP_STD)


def _fit_to_square(A: Any, cv2: Any, im_size: int) -> list[Any]:
    """Longest side to ``im_size`` (aspect ratio kept), then centred white padding to a square."""
    return [
        A.LongestMaxSize(max_size=im_size),
        A.PadIfNeeded(min_height=im_size, min_width=im_size, border_mode=cv2.BORDER_CONSTANT, fill=PAD_COLOR),
    ]


def _normalise_to_tensor(A: Any, mean: Mean, std: Std) -> list[Any]:
    """``(pixel / 255 - mean) / std`` per channel, then HWC array → CHW float tensor."""
    from albumentations.pytorch import ToTensorV2  # type: ignore[import-untyped]

    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
