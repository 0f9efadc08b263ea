"""The data plugins together: mock dataset → CSV check → datasets with each transform family → sampler
→ DataLoader batches, all built by name as a pipeline will."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import omlcore

pytestmark = pytest.mark.integration

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="module")
def mock_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omlcore_images.mock import make_mock_dataset

    root = tmp_path_factory.mktemp("mock")
    make_mock_dataset(root)
    return root


@pytest.mark.parametrize(
    ("train_transform", "val_transform"),
    [("augs_torch", "norm_resize_torch"), ("augs_albu", "norm_resize_albu")],
    ids=["torchvision", "albumentations"],
)
def test_batches_from_config_names(mock_root: Path, train_transform: str, val_transform: str) -> None:
    import torch
    from omlcore_images.dataframe import check_dataframe
    from omlcore_images.datasets import get_retrieval_images_datasets
    from torch.utils.data import DataLoader

    assert not check_dataframe(mock_root / "df.csv", root=mock_root, check_images=True).errors
    size = 48
    train, val = get_retrieval_images_datasets(
        mock_root,
        transforms_train=omlcore.build("transform", {"name": train_transform, "args": {"im_size": size}}),
        transforms_val=omlcore.build("transform", {"name": val_transform, "args": {"im_size": size}}),
    )
    assert train is not None
    assert val is not None
    sampler = omlcore.build(
        "sampler",
        {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}},
        labels=train.get_labels().tolist(),
        label2category=train.get_label2category(),  # offered; `balance` does not take it
    )
    batches = list(DataLoader(train, batch_sampler=sampler))
    assert len(batches) == len(sampler) == 2  # 4 train labels // 2 labels per batch
    for batch in batches:
        assert batch["input_tensors"].shape == (4, 3, size, size)
        assert batch["input_tensors"].dtype == torch.float32
        assert torch.unique(batch["labels"], return_counts=True)[1].tolist() == [2, 2]
    val_batch = next(iter(DataLoader(val, batch_size=len(val))))
    assert val_batch["input_tensors"].shape == (12, 3, size, size)
    assert int(val_batch["is_query"].sum()) == 4
    assert int(val_batch["is_gallery"].sum()) == 8
