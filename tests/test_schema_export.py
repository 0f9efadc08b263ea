"""JSON Schemas: plugin-aware unions, editor lines in example configs, atomic writes, drift checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fakes import EnsembleLoss, MarginLoss, Optim, PairMiner
from test_config import TRAIN

from omlcore.config import parse_config
from omlcore.schema_export import build_schemas, check_schemas, write_schemas
from omlcore.testing import PluginSandbox

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "configs").glob("*.yaml"))


@pytest.fixture
def plugins(omlcore_sandbox: PluginSandbox) -> PluginSandbox:
    omlcore_sandbox.add("loss", "margin", MarginLoss, distribution="omlcore-losses")
    omlcore_sandbox.add("loss", "ensemble", EnsembleLoss, distribution="omlcore-losses")
    omlcore_sandbox.add("miner", "pairs", PairMiner, distribution="omlcore-miners")
    omlcore_sandbox.add("optimizer", "toy_sgd", Optim, distribution="omlcore-optim")
    return omlcore_sandbox


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_slots_become_unions_of_installed_plugins(plugins: PluginSandbox) -> None:
    schema = build_schemas()["train.schema.json"]
    loss = schema["$defs"]["loss"]
    names = [option["properties"]["name"]["const"] for option in loss["oneOf"]]
    assert names == ["ensemble", "margin"]
    margin_args = loss["oneOf"][1]["properties"]["args"]
    assert margin_args["additionalProperties"] is False
    assert margin_args["properties"]["margin"] == {"default": 0.1, "title": "Margin", "type": "number"}
    # a kind without plugins accepts any {name, args}
    assert "oneOf" not in schema["$defs"]["extractor"]
    assert schema["properties"]["loss"]["$ref"] == "#/$defs/loss"
    assert "x-omlcore-kind" not in json.dumps(schema)


def test_schema_accepts_valid_and_rejects_bad_configs(plugins: PluginSandbox) -> None:
    check = validator(build_schemas()["train.schema.json"])
    assert list(check.iter_errors(TRAIN | {"loss": {"name": "margin", "args": {"margin": 0.3}}})) == []
    nested = {"name": "margin", "args": {"miner": {"name": "pairs", "args": {"k": 2}}}}
    assert list(check.iter_errors(TRAIN | {"loss": nested})) == []
    assert list(check.iter_errors(TRAIN | {"loss": {"name": "margin", "args": {"margn": 0.3}}}))
    assert list(check.iter_errors(TRAIN | {"loss": {"name": "nope"}}))
    assert list(check.iter_errors(TRAIN | {"optimizer": {"name": "toy_sgd", "args": {"lr": "fast"}}}))
    assert list(check.iter_errors(TRAIN | {"trainer": {"max_epochs": 0}}))


def test_only_selected_distributions(plugins: PluginSandbox) -> None:
    schema = build_schemas(distributions=["omlcore-optim"])["train.schema.json"]
    assert "oneOf" not in schema["$defs"]["loss"]
    assert [o["properties"]["name"]["const"] for o in schema["$defs"]["optimizer"]["oneOf"]] == ["toy_sgd"]


def test_write_is_atomic_and_check_detects_drift(plugins: PluginSandbox, tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    assert check_schemas(tmp_path) == []
    (tmp_path / "validate.schema.json").write_text("{}")
    (tmp_path / "predict.schema.json").unlink()
    assert check_schemas(tmp_path) == ["validate.schema.json", "predict.schema.json"]


def test_write_failure_leaves_no_partial_file(
    plugins: PluginSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_schemas(tmp_path)
    before = (tmp_path / "train.schema.json").read_text()

    def broken_render(schema: dict[str, Any]) -> str:
        raise OSError("disk full")

    monkeypatch.setattr("omlcore.schema_export._render", broken_render)
    with pytest.raises(OSError, match="disk full"):
        write_schemas(tmp_path)
    assert (tmp_path / "train.schema.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "predict.schema.json",
        "train.schema.json",
        "validate.schema.json",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_have_schema_line_and_are_valid(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    pipeline = path.stem
    assert first == f"# yaml-language-server: $schema=../../schemas/{pipeline}.schema.json"
    assert (path.parent / first.split("=", 1)[1]).resolve().exists()
    data = yaml.safe_load(path.read_text())
    assert parse_config(data).pipeline == pipeline  # type: ignore[attr-defined]
    committed = json.loads((REPO / "schemas" / f"{pipeline}.schema.json").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(committed).iter_errors(data)]
    assert errors == []


def test_examples_exist() -> None:
    assert [p.stem for p in EXAMPLES] == ["predict", "train", "validate"]


def test_written_files_get_the_usual_permissions(plugins: PluginSandbox, tmp_path: Path) -> None:
    import os
    import stat

    mask = os.umask(0o022)
    try:
        for path in write_schemas(tmp_path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    finally:
        os.umask(mask)
