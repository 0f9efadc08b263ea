"""The emoji re-ranking recipes (``examples/emoji_rerank.yaml`` and ``examples/emoji_rerank_validate.yaml``):
both pass their pipeline's full config check when pointed at a dataset, they describe the same extractor and
the same pairwise model, and a checkpoint of the model the first trains loads into the model the second builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("omlcore_lightning", reason="omlcore-lightning (the [pipelines] extra) is not installed")
pytest.importorskip("omlcore_images", reason="omlcore-images is not installed")

import torch
from omlcore_reranking.pipeline import load_train_postprocessor_config

import omlcore
from omlcore.config import load_config
from omlcore.errors import ConfigValidationError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TRAIN = EXAMPLES / "emoji_rerank.yaml"
VALIDATE = EXAMPLES / "emoji_rerank_validate.yaml"

pytestmark = pytest.mark.skipif(not TRAIN.is_file(), reason="the repository's examples/ folder is not here")


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _train_overrides(root: Path, tmp: Path) -> list[str]:
    return [
        f"data.dataset_root={root}",
        f"run.logs_root={tmp / 'logs'}",
        f"embeddings_cache.folder={tmp / 'cache'}",
        "extractor.args.weights=null",
        "pairwise_model.args.extractor.args.weights=null",
        "trainer.accelerator=cpu",
    ]


def test_the_training_recipe_passes_the_train_postprocessor_check(mock_root: Path, tmp_path: Path) -> None:
    cfg = load_train_postprocessor_config(TRAIN, _train_overrides(mock_root, tmp_path))
    assert cfg.data.dataset_root == mock_root
    assert cfg.postprocessor.name == "pairwise_images"
    assert cfg.postprocessor.args["top_n"] == 5
    assert cfg.checkpoint.monitor == "OVERALL/cmc/1"
    # The check is real: a value the re-ranker refuses fails it.
    with pytest.raises(ConfigValidationError, match="top_n"):
        load_train_postprocessor_config(TRAIN, [*_train_overrides(mock_root, tmp_path), "postprocessor.args.top_n=1"])


def test_the_validation_recipe_passes_the_validate_check(mock_root: Path, tmp_path: Path) -> None:
    overrides = [
        f"data.dataset_root={mock_root}",
        f"run.logs_root={tmp_path / 'logs'}",
        "extractor.args.weights=null",
        "postprocessor.args.pairwise_model.args.weights=null",
    ]
    cfg: Any = load_config(VALIDATE, overrides)
    assert cfg.pipeline == "validate"
    assert cfg.postprocessor.name == "pairwise_images"
    with pytest.raises(ConfigValidationError, match="pairwise_model"):
        load_config(VALIDATE, [*overrides, "postprocessor.args.pairwise_model.name=no_such_model"])


def test_the_two_recipes_describe_the_same_extractor_and_pairwise_model() -> None:
    train, validate = _read(TRAIN), _read(VALIDATE)
    # The baseline of both is the extractor of examples/emoji.yaml at its validation size.
    assert validate["extractor"] == train["extractor"]
    assert validate["transforms_val"] == train["transforms_extraction"]
    assert validate["data"]["dataset_root"] == train["data"]["dataset_root"]
    # The re-ranker: the same images, the same top_n, the model trained by the first recipe.
    assert validate["transforms_postprocessor"] == train["transforms_val"]
    pp = validate["postprocessor"]["args"]
    assert pp["top_n"] == train["postprocessor"]["args"]["top_n"]
    model = pp["pairwise_model"]
    assert model["name"] == train["pairwise_model"]["name"]
    trained_args = {k: v for k, v in train["pairwise_model"]["args"].items() if k != "extractor"}
    assert {k: v for k, v in model["args"].items() if k not in ("extractor", "weights")} == trained_args
    assert model["args"]["extractor"]["name"] == train["pairwise_model"]["args"]["extractor"]["name"]
    run = train["run"]
    assert model["args"]["weights"] == f"{run['logs_root']}/{run['logs_folder']}/checkpoints/best.ckpt"
    # examples/emoji.yaml's run, named by `run.logs_folder=emoji-lite0`, is where both read the extractor.
    emoji = _read(EXAMPLES / "emoji.yaml")
    assert train["extractor"]["args"]["weights"] == f"{emoji['run']['logs_root']}/emoji-lite0/checkpoints/best.ckpt"
    assert train["pairwise_model"]["args"]["extractor"]["args"]["weights"] == train["extractor"]["args"]["weights"]
    assert train["transforms_extraction"] == emoji["transforms_val"]


def test_a_checkpoint_of_the_trained_model_loads_into_the_validation_recipe(tmp_path: Path) -> None:
    pytest.importorskip("timm", reason="efficientnet_lite0 needs timm (the [lite0] extra)")
    train, validate = _read(TRAIN), _read(VALIDATE)
    spec = train["pairwise_model"]
    spec = {**spec, "args": {**spec["args"], "extractor": {**spec["args"]["extractor"], "args": {"weights": None}}}}
    torch.manual_seed(0)
    trained = omlcore.build("pairwise_model", spec).eval()
    ckpt = tmp_path / "best.ckpt"  # the layout train_postprocessor's checkpoints have: model.* keys
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, ckpt)

    loaded_spec = validate["postprocessor"]["args"]["pairwise_model"]
    loaded_spec = {**loaded_spec, "args": {**loaded_spec["args"], "weights": str(ckpt)}}
    torch.manual_seed(1)  # another random start: only the checkpoint can make the two agree
    loaded = omlcore.build("pairwise_model", loaded_spec).eval()
    size = train["transforms_val"]["args"]["im_size"]
    x1, x2 = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(loaded.predict(x1, x2), trained.predict(x1, x2))
