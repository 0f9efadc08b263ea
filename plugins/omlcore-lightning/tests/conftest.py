"""Fixtures: the installed plugins plus the test fakes, the mock dataset and a small training config."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightning_fakes import RecordingLogger, register_fakes

from omlcore.registry import Registry, use_registry


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts several processes (DDP); part of the normal suite")


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """The installed entry points (none disabled) plus the fakes of lightning_fakes, active for the test."""
    registry = Registry(disabled=())
    with use_registry(registry):
        register_fakes()
        RecordingLogger.instances.clear()
        yield registry


@pytest.fixture(scope="session")
def mock_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock dataset (24 images; 12 train, 12 validation with 4 queries), plus ``df_odd.csv`` whose
    validation part has 11 rows (an odd count, so a 2-process distributed sampler pads)."""
    from omlcore_images.mock import make_mock_dataset

    root = tmp_path_factory.mktemp("mock")
    make_mock_dataset(root)
    lines = (root / "df.csv").read_text().splitlines()
    (root / "df_odd.csv").write_text("\n".join(lines[:-1]) + "\n")
    return root


BASE: dict[str, Any] = {
    "pipeline": "train",
    "seed": 3,
    "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1},
    "data": {"batch_size_val": 5},
    "transforms_train": {"name": "augs_torch", "args": {"im_size": 32}},
    "transforms_val": {"name": "norm_resize_torch", "args": {"im_size": 32}},
    "sampler": {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}},
    "extractor": {"name": "tiny", "args": {"dropout": 0.2}},
    "loss": {"name": "triplet_with_miner", "args": {"margin": 0.5, "miner": {"name": "hard_triplets"}}},
    "optimizer": {"name": "adam", "args": {"lr": 0.05}},
    "metrics": {"cmc_top_k": [1, 3], "map_top_k": [3], "precision_top_k": [3]},
}


@pytest.fixture
def train_config(tmp_path: Path, mock_root: Path) -> dict[str, Any]:
    """A 2-epoch training on the mock dataset with the tiny extractor (a few seconds)."""
    config = copy.deepcopy(BASE)
    config["run"] = {"logs_root": str(tmp_path / "logs")}
    config["data"]["dataset_root"] = str(mock_root)
    return config
