"""``omlcore validate`` with this plugin's postprocessors, end to end on the mock dataset (a tiny in-process
extractor): a neutral re-ranker changes no metric, an image re-ranker runs and is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omlcore_lightning", reason="omlcore-lightning (the [pipelines] extra) is not installed")
pytest.importorskip("omlcore_images", reason="omlcore-images is not installed")

import yaml
from omlcore_lightning import validate
from reranking_helpers import TinyConvExtractor

from omlcore.errors import ComponentBuildError, ConfigValidationError


@pytest.fixture(autouse=True)
def tiny(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)


def _config(root: Path, tmp: Path, folder: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "pipeline": "validate",
        "run": {"logs_root": str(tmp / "logs"), "logs_folder": folder},
        "trainer": {"accelerator": "cpu", "devices": 1},
        "data": {"dataset_root": str(root), "batch_size_val": 5},
        "transforms_val": {"name": "norm_resize_torch", "args": {"im_size": 32}},
        "extractor": {"name": "tiny_conv", "args": {"feat_dim": 8}},
        "metrics": {"cmc_top_k": [1, 3], "precision_top_k": [3], "map_top_k": [3], "fmr_vals": [0.5]},
    }
    cfg.update(over)
    return cfg


def test_validate_with_a_trivial_reranker_equals_validate_without(mock_root: Path, tmp_path: Path) -> None:
    plain = validate(_config(mock_root, tmp_path, "plain"), verbose=False)
    neutral = {
        "name": "pairwise_embeddings",
        "args": {"top_n": 3, "pairwise_model": {"name": "trivial_distance_siamese"}},
    }
    after = validate(_config(mock_root, tmp_path, "reranked", postprocessor=neutral), verbose=False)
    assert after.metrics == plain.metrics
    assert {"OVERALL/cmc/1", "OVERALL/fnmr@fmr/0.5"} <= set(after.metrics)
    records = json.loads((after.run_dir / "metrics.json").read_text())
    assert [r["metrics"] for r in records] == [after.metrics]
    written = yaml.safe_load((after.run_dir / "config.yaml").read_text())
    assert written["postprocessor"]["name"] == "pairwise_embeddings"


def test_validate_with_an_image_reranker_runs_and_records_its_metrics(mock_root: Path, tmp_path: Path) -> None:
    plain = validate(_config(mock_root, tmp_path, "plain"), verbose=False)
    stir = {
        "name": "pairwise_images",
        "args": {
            "top_n": 3,
            "batch_size": 4,
            "pairwise_model": {
                "name": "concat_siamese",
                "args": {"extractor": {"name": "tiny_conv", "args": {"feat_dim": 4}}, "mlp_hidden_dims": [6]},
            },
        },
    }
    smaller = {"name": "norm_resize_torch", "args": {"im_size": 16}}
    config = _config(mock_root, tmp_path, "stir", postprocessor=stir, transforms_postprocessor=smaller)
    config["metrics"] = {**config["metrics"], "log_images": True}
    after = validate(config, verbose=False)
    assert after.metrics.keys() == plain.metrics.keys()
    # re-ranking the top 3 keeps the items of the top 3, and fnmr@fmr is not a top-k metric
    for name in ("OVERALL/cmc/3", "OVERALL/fnmr@fmr/0.5"):
        assert after.metrics[name] == plain.metrics[name], name
    records = json.loads((after.run_dir / "metrics.json").read_text())
    assert [r["metrics"] for r in records] == [after.metrics]
    assert (after.run_dir / "figures" / "epoch_000" / "worst_queries_OVERALL_cmc_1.png").is_file()
    again = validate(
        _config(mock_root, tmp_path, "stir-again", postprocessor=stir, transforms_postprocessor=smaller), verbose=False
    )
    assert again.metrics == after.metrics  # same config and seed, same re-ranking


def test_transforms_postprocessor_for_a_postprocessor_reading_embeddings_is_refused(
    mock_root: Path, tmp_path: Path
) -> None:
    neutral = {
        "name": "pairwise_embeddings",
        "args": {"top_n": 3, "pairwise_model": {"name": "trivial_distance_siamese"}},
    }
    config = _config(
        mock_root,
        tmp_path,
        "refused",
        postprocessor=neutral,
        transforms_postprocessor={"name": "norm_resize_torch", "args": {"im_size": 16}},
    )
    with pytest.raises(ConfigValidationError, match="reads embeddings, not items"):
        validate(config, verbose=False)
    assert not (tmp_path / "logs").exists()


def test_a_bad_top_n_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    bad = {"name": "pairwise_embeddings", "args": {"top_n": 1, "pairwise_model": {"name": "trivial_distance_siamese"}}}
    config = _config(tmp_path / "no-such-data", tmp_path, "bad", postprocessor=bad)
    with pytest.raises(ComponentBuildError, match="top_n must be an int >= 2"):
        validate(config, verbose=False)
