"""The tensorboard logger, read back from its event files with tensorboard's EventAccumulator."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest
from omlcore_loggers_base import LoggerFailureWarning, MissingSDKError
from omlcore_loggers_base.testing import (
    fit_tiny_model,
    make_figure,
    require_pipeline,
    sdk_imports_of_plugin,
    train_on_mock,
)
from omlcore_tensorboard.logger import TensorBoardLogger

import omlcore
from omlcore.registry import get_registry
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory


def accumulator(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = accumulator(folder)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def hparams(folder: Path) -> dict[str, Any]:
    """The hparams of the last session-start record in the event files."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = accumulator(folder).PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    out: dict[str, Any] = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind)
    return out


def text(folder: Path, tag: str) -> str:
    events = accumulator(folder).Tensors(f"{tag}/text_summary")
    return events[-1].tensor_proto.string_val[0].decode()


class TestTensorBoardConformance(ExperimentLoggerConformance):
    kind_name = "tensorboard"

    @pytest.fixture
    def component_args(self, tmp_path: Path) -> dict[str, Any]:
        self.folder = tmp_path / "tb"
        return {"save_dir": str(self.folder)}

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        return scalars(self.folder)

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return hparams(self.folder)

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return [p.name for p in (self.folder / "artifacts").iterdir()]


def test_direct_api_reads_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = run_dir / "config.yaml"
    config.parent.mkdir()
    config.write_text("trainer:\n  max_epochs: 2\n")
    logger = omlcore.build("logger", {"name": "tensorboard", "args": {}}, run_dir=run_dir, tags=["baseline", "cpu"])
    assert logger.save_dir == run_dir / "tensorboard"
    logger.log_params({"trainer": {"max_epochs": 2, "precision": "32"}, "loss": {"args": {"margin": 0.2}}, "x": None})
    for epoch, value in enumerate([0.5, 0.625]):
        logger.log_metrics({"OVERALL/cmc/1": value}, step=epoch)
    logger.log_figure(make_figure(), "worst_queries/OVERALL/cmc/1", 1)
    logger.log_artifact(config)
    logger.log_artifact(config, name="copies/renamed.yaml")
    logger.finish("success")

    folder = run_dir / "tensorboard"
    assert scalars(folder)["OVERALL/cmc/1"] == [(0, 0.5), (1, 0.625)]
    params = hparams(folder)
    assert params["trainer/max_epochs"] == 2
    assert params["trainer/precision"] == "32"
    assert params["loss/args/margin"] == pytest.approx(0.2)
    assert params["x"] == "None"
    assert "| trainer/max_epochs | 2 |" in text(folder, "params")
    assert text(folder, "tags") == "baseline, cpu"
    assert text(folder, "status") == "success"
    images = accumulator(folder).Images("worst_queries/OVERALL/cmc/1")
    assert [(i.step, i.width, i.height) for i in images] == [(1, 100, 75)]  # 2 x 1.5 inches at 50 dpi
    assert (folder / "artifacts" / "config.yaml").read_text() == config.read_text()
    assert (folder / "artifacts" / "copies" / "renamed.yaml").read_text() == config.read_text()
    assert logger.failures == []


def test_lightning_fit_writes_into_the_same_run(tmp_path: Path) -> None:
    logger = TensorBoardLogger(save_dir=tmp_path / "tb", log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    assert lightning_logger is logger.lightning_logger()
    assert lightning_logger.experiment is logger.experiment
    fit = fit_tiny_model(lightning_logger, tmp_path)
    logger.log_figure(make_figure(), "after_fit", 2)
    logger.finish("success")

    stored = scalars(tmp_path / "tb")
    assert [v for _, v in stored["val/score"]] == fit.val_scores
    assert [v for _, v in stored["OVERALL/cmc/1"]] == [0.5, 0.625]
    steps = [s for s, _ in stored["val/score"]]
    assert steps == sorted(steps)
    assert len(set(steps)) == 2
    assert len(stored["train/loss"]) == fit.train_steps
    assert accumulator(tmp_path / "tb").Images("after_fit")
    assert "hidden: 2" in (tmp_path / "tb" / "hparams.yaml").read_text()  # the LightningModule's hyperparameters
    assert (tmp_path / "tb" / "artifacts" / "best.ckpt").read_bytes() == fit.best_checkpoint.read_bytes()
    assert logger.failures == []


def test_failures_are_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    logger = TensorBoardLogger(save_dir=tmp_path / "tb")
    logger.log_metrics({"loss": 1.0}, step=0)
    with pytest.warns(LoggerFailureWarning, match="log_artifact failed"):
        logger.log_artifact(tmp_path / "missing.yaml")
    with pytest.warns(LoggerFailureWarning, match="log_figure failed"):
        logger.log_figure("not a figure", "bad", 0)
    logger.log_metrics({"loss": 0.5}, step=1)
    with pytest.warns(LoggerFailureWarning, match="2 failed call"):
        logger.finish("failed")
    assert [f.call for f in logger.failures] == ["log_artifact", "log_figure"]
    assert scalars(tmp_path / "tb")["loss"] == [(0, 1.0), (1, 0.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.finish("success")  # a second finish does nothing


def test_missing_sdk_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[tensorboard\]"'):
        omlcore.build("logger", {"name": "tensorboard", "args": {"save_dir": str(tmp_path)}})


def test_bad_args_fail_validation() -> None:
    issues = get_registry().validate("logger", {"name": "tensorboard", "args": {"flush_secs": 0}})
    assert [i.path for i in issues] == ["logger.args.flush_secs"]


def test_importing_the_plugin_imports_no_sdk() -> None:
    assert sdk_imports_of_plugin("omlcore_tensorboard") == set()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "train.yaml"


@pytest.mark.integration
def test_omlcore_train_logs_to_tensorboard(tmp_path: Path) -> None:
    require_pipeline(EXAMPLE)
    run = train_on_mock(tmp_path, EXAMPLE, ["logger={name: tensorboard, args: {log_checkpoint: true}}"])
    folder = run.run_dir / "tensorboard"
    stored = scalars(folder)
    assert [v for _, v in stored["OVERALL/cmc/1"]] == pytest.approx(run.metric("OVERALL/cmc/1"), rel=1e-6)
    assert "train/loss" in stored
    params = hparams(folder)
    assert params["trainer.max_epochs"] == 2
    assert params["loss.args.miner.name"] == "hard_triplets"
    assert text(folder, "tags") == "baseline, cpu"
    assert [i.step for i in accumulator(folder).Images("worst_queries/OVERALL/cmc/1")] == [0, 1]
    assert (folder / "artifacts" / "config.yaml").read_text() == (run.run_dir / "config.yaml").read_text()
    assert (folder / "artifacts" / "df.csv").read_text() == (tmp_path / "mock" / "df.csv").read_text()
    assert text(folder, "status") == "success"
    best = (folder / "artifacts" / "best.ckpt").read_bytes()
    assert best == (run.run_dir / "checkpoints" / "best.ckpt").read_bytes()


@pytest.mark.integration
def test_omlcore_train_with_two_loggers(tmp_path: Path) -> None:
    require_pipeline(EXAMPLE)
    pytest.importorskip("omlcore_mlflow", reason="the second logger of this test is mlflow")
    from mlflow.tracking import MlflowClient

    run = train_on_mock(
        tmp_path,
        EXAMPLE,
        ["logger=[{name: tensorboard}, {name: mlflow, args: {experiment_name: both}}]"],
        env={"MLFLOW_TRACKING_URI": None},
    )
    cmc = run.metric("OVERALL/cmc/1")
    assert [v for _, v in scalars(run.run_dir / "tensorboard")["OVERALL/cmc/1"]] == pytest.approx(cmc, rel=1e-6)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("both").experiment_id])
    history = client.get_metric_history(mlflow_run.info.run_id, "OVERALL/cmc/1")
    assert [m.value for m in history] == pytest.approx(cmc, rel=1e-6)
    assert mlflow_run.data.params["trainer.max_epochs"] == "2"
    assert mlflow_run.info.status == "FINISHED"
