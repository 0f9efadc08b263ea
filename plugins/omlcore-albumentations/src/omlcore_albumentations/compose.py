"""``TensorCompose``: the ``albumentations.Compose`` every factory of this package returns.

This module imports albumentations, numpy and torch at the top; the factories in
:mod:`omlcore_albumentations.transforms` import it only when they are called.

What it adds to ``albumentations.Compose`` (everything else is albumentations' own):

- **Two ways to call it.** ``t(image=array)`` is albumentations' call and returns its dict (the
  tensor is ``["image"]``); ``t(array)`` is omlcore's :class:`~omlcore.protocols.Transform` call and
  returns the tensor itself. A PIL image is accepted positionally too (converted to an RGB array).
- **One random stream.** albumentations 2.x gives every nested transform its own generator seeded
  with the same ``seed``, so with a seed their draws are correlated (a flip and the choice of a
  spatial augmentation would always happen together). Here every nested transform shares the
  compose's generators, seeded once from ``seed``.
- **A separate stream per DataLoader worker.** Each worker receives a copy of the transform with
  the same random state, so without care every worker would repeat the same augmentations. On its
  first call inside a worker the transform reseeds itself from ``seed`` and the worker's torch seed
  (``torch.initial_seed()``, which PyTorch makes distinct per worker and derives from the main
  process's torch RNG, so a seeded run stays reproducible).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A  # type: ignore[import-untyped]
import numpy as np
import torch

__all__ = ["TensorCompose"]


class TensorCompose(A.Compose):  # type: ignore[misc]  # albumentations ships no type information
    """An ``albumentations.Compose`` whose result under ``"image"`` is a float ``(C, H, W)`` tensor,
    callable positionally as well (see the module docstring).

    ``transforms`` and every keyword are ``albumentations.Compose``'s; ``seed`` makes the sequence of
    augmentations reproducible (``None``: fresh entropy in the main process).
    """

    def __init__(self, transforms: Sequence[Any], *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(list(transforms), seed=seed, **kwargs)
        self.base_seed = seed
        self._stream_key: int | None = None
        self._share_stream([] if seed is None else [seed])

    def _share_stream(self, entropy: list[int]) -> None:
        """Give this compose and every nested transform one shared pair of generators."""
        sequence = np.random.SeedSequence(entropy or None)
        py_seed = int(sequence.generate_state(2, dtype=np.uint64)[1])
        self.set_random_state(np.random.default_rng(sequence), random.Random(py_seed))

    def _follow_worker(self) -> None:
        """Inside a DataLoader worker, reseed once per worker seed (see the module docstring)."""
        if torch.utils.data.get_worker_info() is None:
            return
        worker_seed = torch.initial_seed()
        if self._stream_key != worker_seed:
            self._stream_key = worker_seed
            self._share_stream([worker_seed] if self.base_seed is None else [self.base_seed, worker_seed])

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> Any:
        """``t(image=array)`` → albumentations' dict; ``t(array_or_pil)`` → the ``"image"`` tensor."""
        self._follow_worker()
        if not args:
            return super().__call__(force_apply=force_apply, **data)
        if len(args) != 1 or data:
            raise TypeError(
                "call the transform with one image, t(image), or albumentations-style with keywords, "
                f"t(image=image); got {len(args)} positional and keywords {sorted(data)}"
            )
        out = super().__call__(force_apply=force_apply, image=_as_array(args[0]))["image"]
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the pipeline produced {type(out).__name__}, not a tensor: does it end with ToTensorV2?")
        return out


def _as_array(image: Any) -> np.ndarray[Any, Any]:
    """``image`` as albumentations wants it: a numpy array (PIL images become RGB arrays)."""
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        return np.asarray(image.convert("RGB"))
    raise TypeError(
        f"expected an image as a numpy array (H, W, C) or a PIL image, got {type(image).__name__}; "
        "omlcore_albumentations.read_image_cv2(path) reads a file as an RGB uint8 array"
    )
