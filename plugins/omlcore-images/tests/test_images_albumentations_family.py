"""Transforms of the albumentations family get the OpenCV reader, subclasses included."""

from __future__ import annotations

import pytest
from omlcore_images.readers import imread_cv2, imread_pillow, is_albumentations, reader_for_transform


def test_subclass_of_an_albumentations_class_counts() -> None:
    albumentations = pytest.importorskip("albumentations")

    class MyCompose(albumentations.Compose):  # defined outside albumentations, like omlcore-albumentations'
        pass

    transform = MyCompose([])
    assert type(transform).__module__ != "albumentations"
    assert is_albumentations(transform)
    assert reader_for_transform(transform) is imread_cv2


def test_other_callables_use_pillow() -> None:
    assert not is_albumentations(lambda image: image)
    assert reader_for_transform(lambda image: image) is imread_pillow
