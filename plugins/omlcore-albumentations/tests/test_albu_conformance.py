"""omlcore's TransformFactory conformance suite, run on every factory of this package."""

from typing import Any

import numpy as np
import pytest

from omlcore.testing.conformance import TransformFactoryConformance


class _AlbuConformance(TransformFactoryConformance):
    @pytest.fixture
    def sample_input(self, random_image: np.ndarray) -> Any:
        """A random RGB uint8 (40, 30, 3) array, as read_image_cv2 returns."""
        return random_image


class TestAugsAlbuConformance(_AlbuConformance):
    kind_name = "augs_albu"
    args = {"im_size": 32}
    expected_shape = (3, 32, 32)
    deterministic = False


class TestAugsAlbuSeededConformance(_AlbuConformance):
    kind_name = "augs_albu"
    args = {"im_size": 32, "seed": 3}
    expected_shape = (3, 32, 32)
    deterministic = False


class TestNormAlbuConformance(_AlbuConformance):
    kind_name = "norm_albu"
    expected_shape = (3, 40, 30)


class TestNormResizeAlbuConformance(_AlbuConformance):
    kind_name = "norm_resize_albu"
    args = {"im_size": 32}
    expected_shape = (3, 32, 32)


class TestNormResizeAlbuClipConformance(_AlbuConformance):
    kind_name = "norm_resize_albu_clip"
    args = {"im_size": 24}
    expected_shape = (3, 24, 24)
