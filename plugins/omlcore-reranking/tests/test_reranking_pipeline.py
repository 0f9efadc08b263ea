"""``train_postprocessor`` end to end on the mock dataset (a tiny in-process extractor), its config checks,
the embeddings cache across runs (reused, refused when stale, refreshed) and the CLI command."""

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
from omlcore_reranking import ConcatSiamese, StaleEmbeddingsCacheError
from omlcore_reranking.pipeline import load_train_postprocessor_config, train_postprocessor
from reranking_helpers import TinyConvExtractor
from reranking_helpers import pipeline_config as _config

from omlcore.errors import ConfigValidationError


@pytest.fixture
def tiny(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)


def test_a_run_trains_validates_by_reranking_and_reuses_its_cache(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    result = train_postprocessor(_config(mock_root, tmp_path), verbose=False)
    assert result.cache_hits == {"train": False, "validation": False}
    records = json.loads((result.run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [None, 0, 1]
    assert [r["reranked"] for r in records] == [False, True, True]
    assert set(result.metrics) == {"OVERALL/cmc/1", "OVERALL/cmc/3", "OVERALL/map/3"}
    assert result.baseline.keys() == result.metrics.keys()
    # re-ranking the top 3 cannot change cmc@3
    assert result.metrics["OVERALL/cmc/3"] == result.baseline["OVERALL/cmc/3"]
    assert (result.run_dir / "config.yaml").is_file()
    assert result.best_checkpoint is not None
    assert result.best_checkpoint.name == "best.ckpt"
    assert result.last_checkpoint is not None
    model = ConcatSiamese(TinyConvExtractor(), [8], weights=str(result.best_checkpoint))
    assert isinstance(model, ConcatSiamese)
    assert (tmp_path / "cache" / "train.pt").is_file()

    again = train_postprocessor(
        _config(mock_root, tmp_path, run={"logs_root": str(tmp_path / "logs"), "logs_folder": "run2"}), verbose=False
    )
    assert again.cache_hits == {"train": True, "validation": True}
    assert again.baseline == result.baseline


def _on_embeddings(root: Path, tmp: Path, **over: Any) -> dict[str, Any]:
    """The tiny config with ``linear_siamese`` re-ranking by ``pairwise_embeddings`` (no train/val transforms)."""
    cfg = _config(root, tmp, **over)
    del cfg["transforms_train"], cfg["transforms_val"]
    cfg["pairwise_model"] = {"name": "linear_siamese", "args": {"feat_dim": 8}}
    cfg["postprocessor"] = {"name": "pairwise_embeddings", "args": {"top_n": 3}}
    return cfg


def test_a_model_over_embeddings_trains_on_the_cache_without_reading_images(
    mock_root: Path, tmp_path: Path, tiny: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omlcore_images.datasets import ImageBaseDataset
    from omlcore_reranking import LinearSiamese

    reads: list[int] = []
    read_image = ImageBaseDataset.read_image

    def counted(self: Any, idx: int) -> Any:
        reads.append(idx)
        return read_image(self, idx)

    monkeypatch.setattr(ImageBaseDataset, "read_image", counted)
    cfg = _on_embeddings(mock_root, tmp_path, trainer={"max_epochs": 3, "accelerator": "cpu", "devices": 1})
    result = train_postprocessor(cfg, verbose=False)
    rows = len(torch.load(tmp_path / "cache" / "train.pt", weights_only=False)["embeddings"]) + len(
        torch.load(tmp_path / "cache" / "validation.pt", weights_only=False)["embeddings"]
    )
    assert len(reads) == rows  # each image once, for the cache; training and validation read none
    assert [r["epoch"] for r in result.history] == [None, 0, 1, 2]
    assert result.metrics["OVERALL/cmc/3"] == result.baseline["OVERALL/cmc/3"]  # top 3 re-ordered only
    assert result.best_checkpoint is not None
    trained = LinearSiamese(8, weights=str(result.best_checkpoint))
    assert not torch.equal(trained.proj.weight, torch.eye(8))  # it learned (identity at the start)

    reads.clear()
    again = train_postprocessor(
        _on_embeddings(mock_root, tmp_path, run={"logs_root": str(tmp_path / "logs"), "logs_folder": "again"}),
        verbose=False,
    )
    assert again.cache_hits == {"train": True, "validation": True}
    assert reads == []


def test_transforms_a_model_over_embeddings_would_not_use_are_refused(
    mock_root: Path, tmp_path: Path, tiny: None
) -> None:
    from omlcore.config import load_config

    cfg = _on_embeddings(mock_root, tmp_path)
    cfg["transforms_val"] = {"name": "norm_resize_torch", "args": {"im_size": 32}}
    with pytest.raises(ConfigValidationError) as info:
        load_config(cfg)  # what `omlcore check` runs: this plugin's hook reports it
    issues = {i.path: i.message for i in info.value.issues}
    assert list(issues) == ["transforms_val"]
    assert "'pairwise_embeddings' reads embeddings" in issues["transforms_val"]
    del cfg["transforms_val"]
    load_config(cfg)


def test_a_stale_cache_stops_the_run_before_anything_is_written(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    train_postprocessor(
        _config(mock_root, tmp_path, trainer={"max_epochs": 1, "accelerator": "cpu", "devices": 1}), verbose=False
    )
    changed = _config(
        mock_root,
        tmp_path,
        run={"logs_root": str(tmp_path / "logs"), "logs_folder": "stale"},
        extractor={"name": "tiny_conv", "args": {"feat_dim": 8, "seed": 1}},
    )
    with pytest.raises(StaleEmbeddingsCacheError, match=r"extractor\.args\.seed: <absent> -> 1"):
        train_postprocessor(changed, verbose=False)
    assert not (tmp_path / "logs" / "stale" / "config.yaml").exists()
    refreshed = train_postprocessor(changed, ["embeddings_cache.refresh=true", "trainer.max_epochs=1"], verbose=False)
    assert refreshed.cache_hits == {"train": False, "validation": False}


def _issues(cfg: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigValidationError) as info:
        load_train_postprocessor_config(cfg)
    return {i.path: i.message for i in info.value.issues}


def test_config_problems_are_reported_together_before_any_work(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    base = _config(mock_root, tmp_path)
    issues = _issues({**base, "pipline": 1, "trainer": {"max_epochs": 0}})
    assert set(issues) >= {"pipline", "trainer.max_epochs"}
    bad_pp = {**base, "postprocessor": {"name": "pairwise_images", "args": {"top_n": 1}}}
    assert "top_n must be an int >= 2" in _issues(bad_pp)["postprocessor.args"]
    with_model = {
        **base,
        "postprocessor": {
            "name": "pairwise_images",
            "args": {"top_n": 3, "pairwise_model": {"name": "linear_siamese"}},
        },
    }
    assert "model being trained" in _issues(with_model)["postprocessor.args.pairwise_model"]
    threshold = {**base, "postprocessor": {"name": "constant_thresholding", "args": {"th": 0.5}}}
    assert "takes no pairwise_model" in _issues(threshold)["postprocessor.name"]
    slots = {
        **base,
        "pairwise_model": {"name": "concat_siamse", "args": {}},
        "optimizer": {"name": "adam", "args": {"lr": "fast"}},
        "trainer": {"max_epochs": 1, "devices": 2},
    }
    got = _issues(slots)
    assert "concat_siamese" in got["pairwise_model.name"]  # did-you-mean
    assert "optimizer.args.lr" in got
    assert "trainer.devices" not in got  # several devices run DDP
    assert "pipeline" in _issues({**base, "pipeline": "train"})
    from omlcore.config import load_config

    with pytest.raises(ConfigValidationError, match="model being trained"):  # `omlcore check` sees it too
        load_config(with_model)


def test_an_unknown_monitor_is_refused_before_the_run_folder_exists(
    mock_root: Path, tmp_path: Path, tiny: None
) -> None:
    cfg = _config(mock_root, tmp_path, checkpoint={"monitor": "OVERALL/cmc/5"})
    with pytest.raises(
        ConfigValidationError,
        match=r"checkpoint.monitor: 'OVERALL/cmc/5' is never logged. Did you mean .*'OVERALL/cmc/1'",
    ):
        train_postprocessor(cfg, verbose=False)
    assert not (tmp_path / "logs" / "run").exists()


def test_the_cli_command(mock_root: Path, tmp_path: Path) -> None:
    omlcore = Path(sys.executable).parent / "omlcore"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([str(omlcore), "--help"], capture_output=True, text=True, env=env, check=False)
    assert "train-postprocessor" in out.stdout
    import yaml

    cfg = _config(mock_root, tmp_path)
    cfg["extractor"] = {"name": "no_such_extractor"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [str(omlcore), "train-postprocessor", str(path), "trainer.max_epochs=0"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "trainer.max_epochs" in out.stderr


def test_the_trained_model_loads_into_a_postprocessor(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    result = train_postprocessor(
        _config(mock_root, tmp_path, trainer={"max_epochs": 1, "accelerator": "cpu", "devices": 1}), verbose=False
    )
    state = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]  # type: ignore[arg-type]
    assert all(k.startswith("model.") for k in state)


def test_the_docs_config_is_valid() -> None:
    import re

    import yaml

    docs = Path(__file__).resolve().parents[3] / "docs" / "reranking.md"
    if not docs.is_file():
        pytest.skip("docs/reranking.md is not next to this checkout")
    blocks = re.findall(r"^```yaml\n(.*?)^```", docs.read_text(encoding="utf-8"), re.S | re.M)
    configs = [yaml.safe_load(b) for b in blocks if "pipeline: train_postprocessor" in b]
    assert len(configs) == 1
    cfg = load_train_postprocessor_config(configs[0])
    assert cfg.postprocessor.args["top_n"] == 5
