"""Config files: reading, dotted overrides, and the two validation phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import MarginLoss, Optim, PairMiner, ToyExtractor, ToyPipelineConfig

from omlcore import hookimpl
from omlcore.config import apply_overrides, load_config, parse_config, plugin_issues, read_yaml
from omlcore.errors import ConfigError, ConfigIssue, ConfigValidationError, OverrideError
from omlcore.schemas import TrainConfig, iter_slots
from omlcore.testing import PluginSandbox

TRAIN: dict[str, Any] = {
    "pipeline": "train",
    "trainer": {"max_epochs": 2},
    "data": {"dataset_root": "data/mock", "batch_size_train": 8},
    "extractor": {"name": "toy_extractor"},
    "loss": {"name": "margin", "args": {"margin": 0.2}},
    "optimizer": {"name": "toy_sgd", "args": {"lr": 0.01}},
}


@pytest.fixture
def plugins(omlcore_sandbox: PluginSandbox) -> PluginSandbox:
    omlcore_sandbox.add("loss", "margin", MarginLoss)
    omlcore_sandbox.add("miner", "pairs", PairMiner)
    omlcore_sandbox.add("optimizer", "toy_sgd", Optim)
    omlcore_sandbox.add("extractor", "toy_extractor", ToyExtractor)
    return omlcore_sandbox


def write(tmp_path: Path, data: Any, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# ---- reading ---------------------------------------------------------------------------------------
def test_read_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'.*nope.yaml' does not exist"):
        read_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml(tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML at line 2, column"):
        read_yaml(write(tmp_path, "a: 1\nb: c: d\n"))
    with pytest.raises(ConfigError, match="must hold a mapping .* holds a list"):
        read_yaml(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="is empty"):
        read_yaml(write(tmp_path, "# nothing\n"))


# ---- overrides ---------------------------------------------------------------------------------------
def test_overrides_set_create_index_and_remove() -> None:
    data = {"trainer": {"max_epochs": 1}, "metrics": {"cmc_top_k": [1, 5]}, "logger": {"name": "x"}}
    out = apply_overrides(
        data,
        [
            "trainer.max_epochs=3",
            "loss.args.margin=0.2",
            "metrics.cmc_top_k.1=10",
            "run.tags=[a, b]",
            "run.postfix='007'",
            "~logger",
            "seed=null",
        ],
    )
    assert out["trainer"]["max_epochs"] == 3
    assert out["loss"] == {"args": {"margin": 0.2}}
    assert out["metrics"]["cmc_top_k"] == [1, 10]
    assert out["run"] == {"tags": ["a", "b"], "postfix": "007"}
    assert "logger" not in out
    assert out["seed"] is None
    assert data["trainer"]["max_epochs"] == 1, "the input must not be modified"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs", "has no '='"),
        ("trainer..x=1", "empty part"),
        ("~nothing", "no key 'nothing' to remove"),
        ("~a.b=1", "takes no value"),
        ("trainer.max_epochs.x=1", "cannot set 'x', 'trainer.max_epochs' holds the value 1, not a mapping"),
        ("trainer.max_epochs.x.y=1", "cannot enter 'trainer.max_epochs.x', 'trainer.max_epochs' holds the value 1"),
        ("l.5=1", "'l' holds a list of 2 item"),
        ("x=[1, 2", "not valid YAML"),
    ],
)
def test_override_errors(override: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message):
        apply_overrides({"trainer": {"max_epochs": 1}, "l": [1, 2]}, [override])


# ---- phase 1 ---------------------------------------------------------------------------------------
def test_structure_valid_and_defaults() -> None:
    config = parse_config(TRAIN)
    assert isinstance(config, TrainConfig)
    assert config.trainer.precision == "32"
    assert config.metrics.cmc_top_k == [1, 5]
    assert config.checkpoint.monitor == "OVERALL/cmc/1"
    assert [(p, k) for p, k, _ in iter_slots(config)] == [
        ("extractor", "extractor"),
        ("loss", "loss"),
        ("optimizer", "optimizer"),
    ]


def test_structure_collects_every_error_with_paths() -> None:
    bad = apply_overrides(
        TRAIN, ["trainer.max_epochs=zero", "trainer.epochs=1", "loss.argz={}", "data.num_workers=-1", "~optimizer"]
    )
    with pytest.raises(ConfigValidationError) as info:
        parse_config(bad)
    got = {i.path: i.message for i in info.value.issues}
    assert set(got) == {"trainer.max_epochs", "trainer.epochs", "loss.argz", "data.num_workers", "optimizer"}
    assert got["trainer.epochs"] == "extra inputs are not permitted"
    assert got["optimizer"] == "field required"
    assert "'zero'" in got["trainer.max_epochs"]


def test_pipeline_key_is_required() -> None:
    with pytest.raises(
        ConfigValidationError, match="pipeline: is missing; it must be one of: train, validate, predict"
    ):
        parse_config({"trainer": {}})
    with pytest.raises(ConfigValidationError, match="pipeline: is 'fit'"):
        parse_config({"pipeline": "fit"})


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigValidationError) as info:
        parse_config(apply_overrides(TRAIN, ["~data.batch_size_train"]))
    assert [i.path for i in info.value.issues] == ["data.batch_size_train"]
    with pytest.raises(ConfigValidationError, match="is not used with a sampler"):
        parse_config(apply_overrides(TRAIN, ["sampler.name=balance"]))
    with pytest.raises(ConfigValidationError, match="scheduling.interval: a monitored scheduler"):
        parse_config(apply_overrides(TRAIN, ["scheduling.scheduler.name=plateau", "scheduling.monitor=loss"]))


def test_precision_accepts_numbers() -> None:
    assert parse_config(apply_overrides(TRAIN, ["trainer.precision=16"])).trainer.precision == "16"  # type: ignore[attr-defined]
    with pytest.raises(ConfigValidationError, match="trainer.precision"):
        parse_config(apply_overrides(TRAIN, ["trainer.precision=8"]))


def test_validate_and_predict_pipelines() -> None:
    parse_config({"pipeline": "validate", "data": {"dataset_root": "d"}, "extractor": {"name": "e"}})
    cfg = parse_config(
        {"pipeline": "predict", "data": {"data_dir": "imgs"}, "save_dir": "out", "extractor": {"name": "e"}}
    )
    assert cfg.data.extensions == ["jpg", "jpeg", "png"]  # type: ignore[attr-defined]


# ---- phase 2 ---------------------------------------------------------------------------------------
def test_load_config_with_plugins(plugins: PluginSandbox, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TRAIN), ["loss.args.miner={name: pairs, args: {k: 2}}"])
    assert config.loss.args["miner"] == {"name": "pairs", "args": {"k": 2}}  # type: ignore[attr-defined]


def test_plugin_phase_reports_paths(plugins: PluginSandbox, tmp_path: Path) -> None:
    path = write(tmp_path, TRAIN)
    with pytest.raises(ConfigValidationError) as info:
        load_config(path, ["loss.args.margn=0.1", "extractor.name=toy_extractr", "optimizer.args.lr=fast"])
    lines = [str(i) for i in info.value.issues]
    assert "loss.args.margn: extra inputs are not permitted; did you mean 'margin'?" in lines
    assert any(line.startswith("extractor.name: No extractor named 'toy_extractr'") for line in lines)
    assert any(line.startswith("optimizer.args.lr: input should be a valid number") for line in lines)
    assert str(path) in str(info.value)


def test_plugin_phase_imports_only_named_plugins(plugins: PluginSandbox) -> None:
    plugins.add("loss", "unused_and_broken", error=ImportError("must never be imported"))
    assert plugin_issues(parse_config(TRAIN)) == []


def test_check_plugins_false_skips_phase_two(omlcore_sandbox: PluginSandbox) -> None:
    assert load_config(TRAIN, check_plugins=False).pipeline == "train"  # type: ignore[attr-defined]
    with pytest.raises(ConfigValidationError):
        load_config(TRAIN)


def test_validate_config_hook_contributes_issues(plugins: PluginSandbox) -> None:
    class Plugin:
        @hookimpl
        def omlcore_validate_config(self, config: Any) -> list[ConfigIssue]:
            if config.trainer.max_epochs > 100:
                return [ConfigIssue("trainer.max_epochs", "more than 100 epochs on a CPU is not allowed here")]
            return []

    plugins.add_hook_plugin("limits", Plugin())
    assert plugin_issues(parse_config(TRAIN)) == []
    issues = plugin_issues(parse_config(apply_overrides(TRAIN, ["trainer.max_epochs=500"])))
    assert [i.path for i in issues] == ["trainer.max_epochs"]


def test_logger_slot_takes_a_list_and_reports_item_paths(plugins: PluginSandbox) -> None:
    class FileLogger:
        def __init__(self, folder: str = "runs") -> None:
            self.folder = folder

        def log_params(self, params: Any) -> None: ...
        def log_metrics(self, metrics: Any, step: int | None = None) -> None: ...
        def log_figure(self, figure: Any, title: str, step: int) -> None: ...
        def log_artifact(self, path: Any, name: str | None = None) -> None: ...
        def lightning_logger(self) -> Any: ...
        def finish(self, status: str = "success") -> None: ...

    plugins.add("logger", "files", FileLogger)
    one = {**TRAIN, "logger": {"name": "files"}}
    several = {**TRAIN, "logger": [{"name": "files"}, {"name": "files", "args": {"foldr": "x"}}, {"name": "nope"}]}
    assert [p for p, kind, _ in iter_slots(parse_config(one)) if kind == "logger"] == ["logger"]
    config = parse_config(several)
    assert [p for p, kind, _ in iter_slots(config) if kind == "logger"] == ["logger.0", "logger.1", "logger.2"]
    issues = [str(i) for i in plugin_issues(config)]
    assert "logger.1.args.foldr: extra inputs are not permitted; did you mean 'folder'?" in issues
    assert any(i.startswith("logger.2.name: No logger named 'nope'") for i in issues)
    assert not any(i.startswith("logger.0") for i in issues)


def test_component_spec_from_text(plugins: PluginSandbox, tmp_path: Path) -> None:
    from omlcore.config import component_spec_from_text

    assert component_spec_from_text("margin", "loss").name == "margin"
    spec = component_spec_from_text("{name: margin, args: {margin: 0.3}}", "loss", option="--loss")
    assert spec.args == {"margin": 0.3}
    path = write(tmp_path, {"name": "margin", "args": {"margin": 0.5}}, "loss.yaml")
    assert component_spec_from_text(str(path), "loss").args == {"margin": 0.5}
    with pytest.raises(ConfigValidationError) as info:
        component_spec_from_text("{name: margin, args: {margn: 0.3}}", "loss", option="--loss")
    assert "--loss.args.margn: extra inputs are not permitted; did you mean 'margin'?" in str(info.value)
    with pytest.raises(ConfigValidationError, match="No loss named 'margni'"):
        component_spec_from_text("margni", "loss")
    with pytest.raises(ConfigError, match=r"--loss: expected a name or a mapping"):
        component_spec_from_text("[1, 2]", "loss", option="--loss")
    with pytest.raises(ConfigError, match="does not exist"):
        component_spec_from_text(str(tmp_path / "missing.yaml"), "loss")


# ---- pipelines added by plugins ---------------------------------------------------------------------
@pytest.fixture
def toy_pipeline(plugins: PluginSandbox) -> PluginSandbox:
    plugins.add_pipeline("toy_distill", ToyPipelineConfig, distribution="omlcore-distill")
    plugins.add_pipeline("toy_broken", error=ImportError("no module named distill_v2"))
    plugins.add_pipeline("train", ToyPipelineConfig)  # cannot shadow the core's
    return plugins


@pytest.mark.usefixtures("toy_pipeline")
def test_plugin_pipeline_is_parsed_and_checked_in_both_phases() -> None:
    from omlcore.config import pipeline_model, pipeline_names

    assert pipeline_names() == ["train", "validate", "predict", "toy_broken", "toy_distill"]
    assert pipeline_model("train")[0] is TrainConfig
    data = {"pipeline": "toy_distill", "teacher": {"name": "toy_extractor"}, "student": {"name": "toy_extractr"}}
    config = parse_config(data)
    assert [p for p, _, _ in iter_slots(config)] == ["teacher", "student"]
    issues = [str(i) for i in plugin_issues(config)]
    assert len(issues) == 1
    assert issues[0].startswith("student.name: No extractor named 'toy_extractr'")
    with pytest.raises(ConfigValidationError, match="student: must differ from the teacher"):
        parse_config({**data, "student": {"name": "toy_extractor"}})
    with pytest.raises(ConfigValidationError, match="temperatur: extra inputs are not permitted"):
        parse_config({**data, "temperatur": 2})


@pytest.mark.usefixtures("toy_pipeline")
def test_unknown_or_broken_plugin_pipeline() -> None:
    from omlcore.errors import PluginLoadError

    with pytest.raises(
        ConfigValidationError, match=r"is 'toy_distil'; it must be one of: .*did you mean 'toy_distill'"
    ):
        parse_config({"pipeline": "toy_distil"})
    with pytest.raises(PluginLoadError, match="pipeline 'toy_broken'"):
        parse_config({"pipeline": "toy_broken"})


def test_schema_export_includes_plugin_pipelines(plugins: PluginSandbox) -> None:
    from omlcore.schema_export import build_schemas

    plugins.add_pipeline("toy_distill", ToyPipelineConfig, distribution="omlcore-distill")
    schemas = build_schemas()
    assert sorted(schemas) == [
        "predict.schema.json",
        "toy_distill.schema.json",
        "train.schema.json",
        "validate.schema.json",
    ]
    assert schemas["toy_distill.schema.json"]["properties"]["teacher"]["$ref"] == "#/$defs/extractor"
    assert "toy_distill.schema.json" in build_schemas(distributions=["omlcore-distill"])
    assert "toy_distill.schema.json" not in build_schemas(distributions=["omlcore-images"])


def test_conflicting_plugin_pipelines(plugins: PluginSandbox) -> None:
    from omlcore.errors import PluginConflictError

    plugins.add_pipeline("toy_distill", ToyPipelineConfig, distribution="omlcore-distill")
    plugins.add_pipeline("toy_distill", ToyPipelineConfig, distribution="other-distill")
    with pytest.raises(PluginConflictError, match="omlcore-distill 0.0.0.*other-distill 0.0.0"):
        parse_config({"pipeline": "toy_distill"})
