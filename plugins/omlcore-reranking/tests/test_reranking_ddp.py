"""``omlcore train-postprocessor`` on 2 CPU processes (DDP, gloo) against 1 process: the same extractor
metrics from one embeddings cache, half the steps per process, and re-ranked metrics that are exactly those
of the trained weights re-ranking in a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omlcore_lightning", reason="omlcore-lightning (the [pipelines] extra) is not installed")
pytest.importorskip("omlcore_images", reason="omlcore-images is not installed")

import torch
import yaml
from omlcore_reranking.pipeline import train_postprocessor
from reranking_helpers import TinyConvExtractor, pipeline_config

ENTRY = Path(__file__).resolve().parent / "reranking_entry.py"


@pytest.fixture
def tiny(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)


def test_two_processes_give_the_metrics_of_one(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPU cores for 2 processes")
    sampler = {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}}
    cfg = pipeline_config(mock_root, tmp_path, sampler=sampler, trainer={"max_epochs": 1, "accelerator": "cpu"})
    cfg["run"]["logs_folder"] = "two"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    for name in ("OMLCORE_RUN_DIR", "RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(ENTRY), "train-postprocessor", str(path), "trainer.devices=2", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "logs" / "two"
    assert done.stdout.count("run folder:") == 1  # only the first process reports
    two = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in two] == [None, 0]

    cfg["run"]["logs_folder"] = "one"
    one = train_postprocessor(cfg, ["trainer.devices=1"], verbose=False)
    assert one.cache_hits == {"train": True, "validation": True}  # the 2-process run's cache, complete
    assert not list((tmp_path / "cache").glob("*.tmp"))
    assert two[0] == one.history[0]  # the extractor's metrics
    assert 2 * two[1]["step"] == one.history[1]["step"]  # each process took half of the batches

    # the 2-process validation equals re-ranking with its trained weights in this (single) process
    from omlcore_images.datasets import get_retrieval_images_datasets
    from omlcore_reranking.lightning_parts import RerankValidation
    from omlcore_reranking.pipeline import load_train_postprocessor_config

    from omlcore.registry import build

    loaded = load_train_postprocessor_config(yaml.safe_load((run / "config.yaml").read_text()))
    _, val = get_retrieval_images_datasets(mock_root, None, build("transform", loaded.transforms_val))
    assert val is not None
    emb = torch.load(tmp_path / "cache" / "validation.pt", weights_only=False)["embeddings"]
    model = build("pairwise_model", loaded.pairwise_model)
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    validation = RerankValidation(loaded.postprocessor, emb, val, loaded.metrics)
    expected = validation.rerank_metrics(model, torch.device("cpu"))
    assert {k: two[1][k] for k in expected} == expected


def test_more_devices_than_the_machine_has_are_refused_up_front(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    from omlcore.errors import ConfigValidationError

    too_many = (os.cpu_count() or 1) + 1
    cfg = pipeline_config(mock_root, tmp_path)
    with pytest.raises(ConfigValidationError, match=rf"trainer.devices: asks for {too_many} cpu device"):
        train_postprocessor(cfg, ["trainer.accelerator=cpu", f"trainer.devices={too_many}"], verbose=False)
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "cache").exists()
