"""The validate and predict pipelines."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning_fakes import TinyExtractor
from omlcore_lightning import predict, train, validate
from PIL import Image

from omlcore.errors import ConfigError, ConfigValidationError


def _validate_config(train_config: dict[str, Any], weights: Path | None) -> dict[str, Any]:
    return {
        "pipeline": "validate",
        "run": train_config["run"],
        "trainer": {"accelerator": "cpu", "devices": 1},
        "data": train_config["data"],
        "transforms_val": train_config["transforms_val"],
        "extractor": {"name": "tiny", "args": {"weights": str(weights) if weights else None, "dropout": 0.2}},
        "metrics": train_config["metrics"],
    }


def test_validating_the_trained_weights_gives_the_last_training_metrics(train_config: dict[str, Any]) -> None:
    trained = train(train_config, verbose=False)
    assert trained.last_checkpoint is not None
    config = _validate_config(train_config, trained.last_checkpoint)
    config["metrics"] = {**config["metrics"], "log_images": True}
    result = validate(config, verbose=False)
    assert result.metrics == trained.metrics
    assert result.run_dir.parent == trained.run_dir.parent
    assert result.run_dir != trained.run_dir
    records = json.loads((result.run_dir / "metrics.json").read_text())
    assert [r["metrics"] for r in records] == [result.metrics]
    assert (result.run_dir / "config.yaml").is_file()
    assert (result.run_dir / "figures" / "epoch_000" / "worst_queries_OVERALL_cmc_1.png").is_file()
    assert not (result.run_dir / "checkpoints").exists()


def test_validate_on_a_dataset_without_validation_rows(
    train_config: dict[str, Any], mock_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "train-only"
    shutil.copytree(mock_root, root)
    lines = (root / "df.csv").read_text().splitlines()
    (root / "df.csv").write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ",train," in ln)]) + "\n")
    config = _validate_config(train_config, None)
    config["data"] = {**config["data"], "dataset_root": str(root)}
    with pytest.raises(ConfigError, match="no rows with split 'validation'"):
        validate(config, verbose=False)


class _ItemsLabelOracle:
    """A postprocessor reading items: re-orders each row's first ``top_n`` results, true positives first, by
    the ``labels`` of the dataset items; records the items' image sizes it saw."""

    reads = "items"

    def __init__(self, top_n: int = 3) -> None:
        self.top_n = top_n
        self.sizes: set[tuple[int, ...]] = set()

    def process(self, distances: Any, retrieved: Any, query_ids: Any, dataset: Any) -> tuple[Any, Any]:
        def label(row: int) -> int:
            item = dataset[row]
            self.sizes.add(tuple(item["input_tensors"].shape))
            return int(item["labels"])

        new_r = retrieved.clone()
        n = min(self.top_n, retrieved.shape[1])
        for q in range(retrieved.shape[0]):
            top = [int(r) for r in retrieved[q, :n] if int(r) >= 0]
            wanted = label(int(query_ids[q]))
            ordered = [r for r in top if label(r) == wanted] + [r for r in top if label(r) != wanted]
            new_r[q, : len(ordered)] = torch.tensor(ordered, dtype=torch.long)
        return distances.clone(), new_r


def test_validate_with_an_items_postprocessor_reranks_by_dataset_index(
    train_config: dict[str, Any], installed_registry: Any
) -> None:
    built: list[_ItemsLabelOracle] = []

    def oracle(top_n: int = 3) -> _ItemsLabelOracle:
        built.append(_ItemsLabelOracle(top_n))
        return built[-1]

    installed_registry.register("postprocessor", "items_oracle", oracle)
    config = _validate_config(train_config, None)
    config["metrics"] = {"cmc_top_k": [1, 3], "map_top_k": [], "precision_top_k": [], "pcf_variance": []}
    plain = validate(config, verbose=False)
    config["postprocessor"] = {"name": "items_oracle", "args": {"top_n": 3}}
    config["transforms_postprocessor"] = {"name": "norm_resize_torch", "args": {"im_size": 24}}
    config["run"] = {**config["run"], "logs_folder": "with_oracle"}
    after = validate(config, verbose=False)
    assert after.metrics.keys() == plain.metrics.keys()
    # cmc@3 is what the top 3 hold; the oracle moves a positive of the top 3 to the front
    assert after.metrics["OVERALL/cmc/3"] == plain.metrics["OVERALL/cmc/3"]
    assert after.metrics["OVERALL/cmc/1"] == plain.metrics["OVERALL/cmc/3"]
    assert plain.metrics["OVERALL/cmc/1"] < plain.metrics["OVERALL/cmc/3"], "the data must leave something to lift"
    assert built[-1].sizes == {(3, 24, 24)}  # the items came through transforms_postprocessor
    records = json.loads((after.run_dir / "metrics.json").read_text())
    assert [r["metrics"] for r in records] == [after.metrics]


def test_transforms_postprocessor_without_a_postprocessor_is_refused_up_front(
    train_config: dict[str, Any], tmp_path: Path
) -> None:
    config = _validate_config(train_config, None)
    config["transforms_postprocessor"] = {"name": "norm_resize_torch", "args": {"im_size": 32}}
    config["data"] = {**config["data"], "dataset_root": str(tmp_path / "no-such-data")}  # checked after the issue
    with pytest.raises(ConfigValidationError, match=r"transforms_postprocessor.*there is no postprocessor"):
        validate(config, verbose=False)
    assert not (tmp_path / "logs").exists()


def test_an_unknown_postprocessor_is_refused_before_the_data_is_read(train_config: dict[str, Any]) -> None:
    config = _validate_config(train_config, None)
    config["postprocessor"] = {"name": "whatever"}
    with pytest.raises((ConfigValidationError, ConfigError), match="whatever"):
        validate(config, verbose=False)


def _predict_config(folder: Path, out: Path, weights: Path | None = None) -> dict[str, Any]:
    return {
        "pipeline": "predict",
        "trainer": {"accelerator": "cpu", "devices": 1},
        "data": {"data_dir": str(folder), "batch_size": 5},
        "save_dir": str(out),
        "transforms_predict": {"name": "norm_resize_torch", "args": {"im_size": 32}},
        "extractor": {"name": "tiny", "args": {"weights": str(weights) if weights else None}},
    }


def test_predict_writes_embeddings_and_their_paths(
    train_config: dict[str, Any], mock_root: Path, tmp_path: Path
) -> None:
    trained = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    assert trained.last_checkpoint is not None
    folder = tmp_path / "photos"
    shutil.copytree(mock_root / "images", folder / "a")
    shutil.copy(mock_root / "images" / "circle_1.png", folder / "UPPER.PNG")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = predict(_predict_config(folder, out, trained.last_checkpoint), verbose=False)
    emb = np.load(out / "embeddings.npy")
    with (out / "paths.csv").open() as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    assert emb.shape == (25, 8) == (result.count, result.dim)
    assert emb.dtype == np.float32
    assert paths == sorted(paths)
    assert paths[0] == "UPPER.PNG"
    assert len(paths) == 25
    assert "notes.txt" not in paths
    # the same as running the extractor by hand
    from omlcore_images.transforms import norm_resize_torch

    model = TinyExtractor(weights=str(trained.last_checkpoint)).eval()
    transform = norm_resize_torch(im_size=32)
    for i in (0, 7, 24):
        image = Image.open(folder / paths[i]).convert("RGB")
        with torch.no_grad():
            expected = model.extract(transform(image)[None])[0].numpy()
        np.testing.assert_allclose(emb[i], expected, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in out.iterdir()) == ["embeddings.npy", "paths.csv"]


def test_predict_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no file with extension"):
        predict(_predict_config(tmp_path / "empty", tmp_path / "out"), verbose=False)
    with pytest.raises(ConfigValidationError):
        predict(_predict_config(tmp_path / "missing", tmp_path / "out"), verbose=False)
    assert not (tmp_path / "out").exists()


def test_validate_with_a_logger_that_cannot_start_leaves_no_run_behind(train_config: dict[str, Any]) -> None:
    config = _validate_config(train_config, None)
    config["logger"] = {"name": "recording", "args": {"fail": True}}
    with pytest.raises(Exception, match="no credentials"):
        validate(config, verbose=False)
    logs = Path(train_config["run"]["logs_root"])
    assert not logs.exists() or list(logs.iterdir()) == []
