"""Bad input is refused before any training, with the config path or file concerned, and nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from omlcore_images.errors import DataFrameError
from omlcore_lightning import expected_metric_names, train, validate

from omlcore.errors import ConfigError, ConfigValidationError
from omlcore.schemas import MetricsSection


def _issues(exc: pytest.ExceptionInfo[ConfigValidationError]) -> dict[str, str]:
    return {issue.path: issue.message for issue in exc.value.issues}


def _nothing_written(config: dict[str, Any]) -> bool:
    return not Path(config["run"]["logs_root"]).exists()


def test_a_checkpoint_monitor_that_is_never_logged(train_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, ["checkpoint.monitor=OVERALL/cmc/5"], verbose=False)
    message = _issues(exc)["checkpoint.monitor"]
    assert "'OVERALL/cmc/5' is never logged" in message
    assert "Did you mean 'OVERALL/cmc/1'" in message or "'OVERALL/cmc/3'" in message
    assert _nothing_written(train_config)


def test_scheduler_monitor_is_checked_too(train_config: dict[str, Any]) -> None:
    train_config["scheduling"] = {
        "scheduler": {"name": "reduce_on_plateau", "args": {}},
        "interval": "epoch",
        "monitor": "OVERALL/mAP/3",
    }
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, verbose=False)
    assert "'OVERALL/map/3'" in _issues(exc)["scheduling.monitor"]
    del train_config["scheduling"]["monitor"]
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, verbose=False)
    assert "needs a metric to watch" in _issues(exc)["scheduling.monitor"]
    assert _nothing_written(train_config)


def test_category_metrics_can_be_monitored(train_config: dict[str, Any]) -> None:
    train_config["data"]["dataframe_name"] = "df_with_category.csv"
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, ["checkpoint.monitor=round/cmc/1"], verbose=False)
    assert "'round/cmc/1' is never logged" in _issues(exc)["checkpoint.monitor"]
    result = train(train_config, ["checkpoint.monitor=open/map/3", "trainer.max_epochs=1"], verbose=False)
    assert "open/map/3" in result.metrics
    assert "closed/cmc/1" in result.metrics


def test_expected_metric_names() -> None:
    section = MetricsSection(cmc_top_k=[1, 10], map_top_k=[], precision_top_k=[], fmr_vals=[0.1], pcf_variance=[])
    assert expected_metric_names(section) == ["OVERALL/cmc/1", "OVERALL/cmc/10", "OVERALL/fnmr@fmr/0.1"]
    per_category = ["a/cmc/1", "a/cmc/10", "a/fnmr@fmr/0.1", "b/cmc/1", "b/cmc/10", "b/fnmr@fmr/0.1"]
    assert expected_metric_names(section, ["b", "a", "b"])[3:] == per_category
    only_overall = section.model_copy(update={"return_only_overall_category": True})
    assert len(expected_metric_names(only_overall, ["a"])) == 3


def test_more_devices_than_the_machine_has(train_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, ["trainer.devices=4096"], verbose=False)
    assert "asks for 4096 cpu device(s), but this machine has" in _issues(exc)["trainer.devices"]
    assert _nothing_written(train_config)


def test_settings_lightning_refuses(train_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, ["trainer.extra_args={max_time: soon}"], verbose=False)
    assert "Lightning refuses these settings" in _issues(exc)["trainer"]
    assert "max_time" in _issues(exc)["trainer"]
    assert _nothing_written(train_config)


def test_trainer_extra_args_are_checked(train_config: dict[str, Any]) -> None:
    train_config["trainer"]["extra_args"] = {"max_epochs": 3, "limit_train_batchs": 1, "callbacks": []}
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, verbose=False)
    issues = _issues(exc)
    assert "trainer.max_epochs" in issues["trainer.extra_args.max_epochs"]
    assert "did you mean 'limit_train_batches'" in issues["trainer.extra_args.limit_train_batchs"]
    assert "is set by plugins" in issues["trainer.extra_args.callbacks"]


def test_resume_without_a_checkpoint(train_config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        train(train_config, resume=tmp_path / "no-such-run", verbose=False)
    run = tmp_path / "half-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("pipeline: train\n")
    with pytest.raises(ConfigError, match=r"no checkpoint to resume from: .*last\.ckpt"):
        train(train_config, resume=run, verbose=False)
    assert _nothing_written(train_config)


def test_resume_with_a_config_for_another_model(train_config: dict[str, Any]) -> None:
    first = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    with pytest.raises(ConfigError, match=r"saved for another model.*of another shape \(model\.fc\.weight"):
        train(train_config, ["extractor.args.feat_dim=16"], resume=first.run_dir, verbose=False)
    assert len(first.history) == 1


def test_a_named_run_folder_is_not_overwritten(train_config: dict[str, Any]) -> None:
    train_config["run"]["logs_folder"] = "exp1"
    first = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    assert first.run_dir.name == "exp1"
    with pytest.raises(ConfigError, match=r"already holds a run.*--resume"):
        train(train_config, verbose=False)


def test_a_bad_csv_stops_before_training_with_the_data_check_report(
    train_config: dict[str, Any], mock_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "bad"
    shutil.copytree(mock_root, root)
    lines = (root / "df.csv").read_text().splitlines()
    lines[3] = lines[3].replace("train", "test", 1)
    lines[5] = lines[5].replace("images/", "missing/", 1)
    (root / "df.csv").write_text("\n".join(lines) + "\n")
    train_config["data"]["dataset_root"] = str(root)
    with pytest.raises(DataFrameError) as exc:
        train(train_config, verbose=False)
    text = str(exc.value)
    assert "column 'split'" in text
    assert "line 4" in text
    assert "line 6" in text
    assert _nothing_written(train_config)


def test_missing_csv(train_config: dict[str, Any], tmp_path: Path) -> None:
    train_config["data"]["dataset_root"] = str(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="omlcore data mock"):
        train(train_config, verbose=False)


def test_no_validation_rows_needs_a_training_monitor(
    train_config: dict[str, Any], mock_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "train-only"
    shutil.copytree(mock_root, root)
    lines = (root / "df.csv").read_text().splitlines()
    (root / "df.csv").write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ",train," in ln)]) + "\n")
    train_config["data"]["dataset_root"] = str(root)
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, verbose=False)
    assert "no validation rows" in _issues(exc)["checkpoint.monitor"]
    result = train(train_config, ["checkpoint.monitor=train/loss", "checkpoint.mode=min"], verbose=False)
    assert result.history == []
    assert result.best_checkpoint is not None
    assert result.best_checkpoint.is_file()


def test_a_config_for_another_pipeline(train_config: dict[str, Any]) -> None:
    config = {
        "pipeline": "validate",
        "data": train_config["data"],
        "extractor": {"name": "tiny"},
        "run": train_config["run"],
    }
    with pytest.raises(ConfigValidationError) as exc:
        train(config, verbose=False)
    assert "this command runs the 'train' pipeline" in _issues(exc)["pipeline"]
    with pytest.raises(ConfigValidationError) as exc:
        validate(train_config, verbose=False)
    assert "pipeline" in _issues(exc)


def test_plugin_arguments_are_validated_first(train_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        train(train_config, ["extractor.args.feat_dimm=3", "loss.args.margin=abc"], verbose=False)
    issues = _issues(exc)
    assert "extractor.args.feat_dimm" in issues
    assert "loss.args.margin" in issues
    assert _nothing_written(train_config)
