"""omlcore-images: the retrieval CSV format, image datasets, torchvision transforms, the mock dataset and
converters of public datasets, as an omlcore plugin.

Importing this package is cheap: the public names below are loaded on first use (the CLI hook imports
this package to print ``omlcore --help`` without torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "check_dataframe": "omlcore_images.dataframe",
    "read_dataframe": "omlcore_images.dataframe",
    "Report": "omlcore_images.dataframe",
    "Problem": "omlcore_images.dataframe",
    "DataFrameError": "omlcore_images.errors",
    "ImageReadError": "omlcore_images.errors",
    "ConversionError": "omlcore_images.errors",
    "PretrainedTransformNotFoundError": "omlcore_images.errors",
    "ImageBaseDataset": "omlcore_images.datasets",
    "ImagePathsDataset": "omlcore_images.datasets",
    "ImageLabeledDataset": "omlcore_images.datasets",
    "ImageQueryGalleryLabeledDataset": "omlcore_images.datasets",
    "get_retrieval_images_datasets": "omlcore_images.datasets",
    "make_mock_dataset": "omlcore_images.mock",
    "get_transforms_for_pretrained": "omlcore_images.pretrained",
    "available_pretrained_transforms": "omlcore_images.pretrained",
    "register_pretrained_transform": "omlcore_images.pretrained",
    "imread_pillow": "omlcore_images.readers",
    "imread_cv2": "omlcore_images.readers",
    "reader_for_transform": "omlcore_images.readers",
    "convert": "omlcore_images.converters",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from omlcore_images.converters import convert as convert
    from omlcore_images.dataframe import Problem as Problem
    from omlcore_images.dataframe import Report as Report
    from omlcore_images.dataframe import check_dataframe as check_dataframe
    from omlcore_images.dataframe import read_dataframe as read_dataframe
    from omlcore_images.datasets import ImageBaseDataset as ImageBaseDataset
    from omlcore_images.datasets import ImageLabeledDataset as ImageLabeledDataset
    from omlcore_images.datasets import ImagePathsDataset as ImagePathsDataset
    from omlcore_images.datasets import ImageQueryGalleryLabeledDataset as ImageQueryGalleryLabeledDataset
    from omlcore_images.datasets import get_retrieval_images_datasets as get_retrieval_images_datasets
    from omlcore_images.errors import ConversionError as ConversionError
    from omlcore_images.errors import DataFrameError as DataFrameError
    from omlcore_images.errors import ImageReadError as ImageReadError
    from omlcore_images.errors import PretrainedTransformNotFoundError as PretrainedTransformNotFoundError
    from omlcore_images.mock import make_mock_dataset as make_mock_dataset
    from omlcore_images.pretrained import available_pretrained_transforms as available_pretrained_transforms
    from omlcore_images.pretrained import get_transforms_for_pretrained as get_transforms_for_pretrained
    from omlcore_images.pretrained import register_pretrained_transform as register_pretrained_transform
    from omlcore_images.readers import imread_cv2 as imread_cv2
    from omlcore_images.readers import imread_pillow as imread_pillow
    from omlcore_images.readers import reader_for_transform as reader_for_transform


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omlcore_images' has no attribute {name!r}")
