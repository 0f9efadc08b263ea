"""DDP on CPU (2 processes, gloo) through the CLI: validation equals one process, no sample is missed or
counted twice, and training shards the batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from omlcore_lightning import train

ENTRY = Path(__file__).resolve().parent / "lightning_entry.py"

pytestmark = pytest.mark.slow


def _run(args: list[str], record: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    record.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LIGHTNING_TEST_RECORD": str(record), "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("OMLCORE_RUN_DIR", None)
    done = subprocess.run(
        [sys.executable, str(ENTRY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_two_processes_validate_like_one(train_config: dict[str, Any], tmp_path: Path) -> None:
    train_config["data"]["dataframe_name"] = "df_odd.csv"  # 11 validation rows: the sampler pads rank 1
    trained = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    config = {
        "pipeline": "validate",
        "run": train_config["run"],
        "data": train_config["data"],
        "transforms_val": train_config["transforms_val"],
        "extractor": {"name": "tiny", "args": {"weights": str(trained.last_checkpoint)}},
        "metrics": {**train_config["metrics"], "fmr_vals": [0.1]},
    }
    path = tmp_path / "validate.yaml"
    path.write_text(yaml.safe_dump(config))
    one, two = tmp_path / "one", tmp_path / "two"
    _run(["validate", str(path), "trainer.accelerator=cpu", "trainer.devices=1"], one, tmp_path)
    _run(["validate", str(path), "trainer.accelerator=cpu", "trainer.devices=2"], two, tmp_path)

    single = _load(one / "rank0_val0.json")
    ranks = [_load(two / f"rank{r}_val0.json") for r in (0, 1)]
    assert single["world"] == 1
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert sorted(single["seen"]) == list(range(11))
    # each process saw its padded half; together every sample, one of them twice
    assert [len(r["seen"]) for r in ranks] == [6, 6]
    together = ranks[0]["seen"] + ranks[1]["seen"]
    assert set(together) == set(range(11))
    assert len(together) == 12
    # the metric kept each sample once, on every process, and computed the same metrics as one process
    assert ranks[0]["kept"] == ranks[1]["kept"] == single["kept"] == list(range(11))
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["metrics"] == pytest.approx(single["metrics"], abs=1e-6)
    assert set(single["metrics"]) >= {"OVERALL/cmc/1", "OVERALL/fnmr@fmr/0.1"}


def test_two_processes_train_and_validate(train_config: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(train_config))
    record = tmp_path / "record"
    done = _run(["train", str(path), "trainer.accelerator=cpu", "trainer.devices=2"], record, tmp_path)
    (run,) = (tmp_path / "logs").iterdir()
    assert f"run folder: {run}" in done.stdout
    records = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    for epoch in (0, 1):
        shards = [_load(record / f"rank{r}_train{epoch}.json")["seen"] for r in (0, 1)]
        # 4 labels, 2 per batch: 2 batches per epoch, one for each process, no image in both
        assert [len(s) for s in shards] == [1, 1]
        assert not set(shards[0][0]) & set(shards[1][0])
        vals = [_load(record / f"rank{r}_val{epoch}.json") for r in (0, 1)]
        assert vals[0]["kept"] == list(range(12))
        assert vals[0]["metrics"] == records[epoch]["metrics"]


def test_two_processes_predict_like_one(train_config: dict[str, Any], mock_root: Path, tmp_path: Path) -> None:
    import numpy as np

    trained = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((mock_root / "images").glob("*.png"))[:11]:  # 11 images: the second process is padded
        (images / src.name).write_bytes(src.read_bytes())
    config = {
        "pipeline": "predict",
        "data": {"data_dir": str(images), "batch_size": 4},
        "save_dir": "out",
        "transforms_predict": train_config["transforms_val"],
        "extractor": {"name": "tiny", "args": {"weights": str(trained.last_checkpoint)}},
    }
    path = tmp_path / "predict.yaml"
    path.write_text(yaml.safe_dump(config))
    outputs = []
    for devices in (1, 2):
        _run(["predict", str(path), "trainer.accelerator=cpu", f"trainer.devices={devices}", f"save_dir=out{devices}"],
             tmp_path / f"record{devices}", tmp_path)  # fmt: skip
        outputs.append(np.load(tmp_path / f"out{devices}" / "embeddings.npy"))
        paths = (tmp_path / f"out{devices}" / "paths.csv").read_text().splitlines()
        assert paths[1:] == sorted(p.name for p in images.iterdir())
    assert outputs[0].shape == outputs[1].shape == (11, 8)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
