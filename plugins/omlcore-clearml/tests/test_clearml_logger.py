"""The clearml logger in offline mode, read back from the task's offline session folder
(``task.json``, ``metrics.jsonl``, ``log.jsonl`` and the files next to them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from omlcore_clearml import ClearMLLogger
from omlcore_loggers_base import MissingCredentialsError, MissingSDKError, ServerUnreachableError
from omlcore_loggers_base.lightning import ForwardingLightningLogger
from omlcore_loggers_base.testing import (
    fit_tiny_model,
    make_figure,
    require_pipeline,
    sdk_imports_of_plugin,
    train_on_mock,
)

import omlcore
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory


@dataclass
class StoredTask:
    """What an offline session holds."""

    name: str = ""
    tags: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # "plot/series"
    images: dict[str, list[tuple[int, Path]]] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def read_session(folder: Path) -> StoredTask:
    task = json.loads((folder / "task.json").read_text())
    stored = StoredTask(name=task["name"], tags=task.get("tags", []))
    for name, entry in task.get("hyperparams", {}).get("config", {}).items():
        stored.params[name] = entry["value"]
    for artifact in task["execution"].get("artifacts", []):
        stored.artifacts[artifact["key"]] = Path(artifact["uri"])

    def lines(name: str) -> list[str]:
        path = folder / name  # written only when there is something to write
        return path.read_text().splitlines() if path.is_file() else []

    for line in lines("metrics.jsonl"):
        for event in json.loads(line):
            key = f"{event['metric']}/{event['variant']}"
            if event["type"] == "training_stats_scalar":
                stored.scalars.setdefault(key, []).append((event["iter"], event["value"]))
            elif event["type"] == "training_debug_image":
                stored.images.setdefault(key, []).append((event["iter"], Path(event["url"])))
    for line in lines("log.jsonl"):
        stored.log += [event["msg"] for event in json.loads(line)]
    return stored


def metric_key(name: str) -> str:
    """Where a metric lands: ``OVERALL/cmc/1`` → plot ``OVERALL/cmc``, series ``1``; ``lr`` → ``lr/lr``."""
    return name if "/" in name else f"{name}/{name}"


@pytest.fixture(autouse=True)
def clearml_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    for name in (
        "CLEARML_OFFLINE_MODE",
        "CLEARML_API_ACCESS_KEY",
        "CLEARML_API_SECRET_KEY",
        "CLEARML_AUTH_TOKEN",
        "CLEARML_API_HOST",
        "CLEARML_PROC_MASTER_ID",  # set by ClearML in this process; a child inheriting it gets no task
        "TRAINS_PROC_MASTER_ID",
    ):
        monkeypatch.delenv(name, raising=False)


class TestClearMLConformance(ExperimentLoggerConformance):
    kind_name = "clearml"
    args = {"offline": True, "project_name": "conformance"}

    @pytest.fixture
    def component(self, make_component: Any) -> Iterator[Any]:
        logger = make_component()
        yield logger
        logger.finish()  # ClearML keeps one task per process: close what a test left open

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        stored = read_session(logger.offline_folder).scalars
        names = {name for _, metrics in self.logged_metrics for name in metrics}
        return {name: stored[metric_key(name)] for name in names if metric_key(name) in stored}

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return read_session(logger.offline_folder).params

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return list(read_session(logger.offline_folder).artifacts)


def test_direct_api_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    run_dir = tmp_path / "2026-01-01_run"
    run_dir.mkdir()
    config = run_dir / "config.yaml"
    config.write_text("trainer:\n  max_epochs: 2\n")
    logger = omlcore.build("logger", {"name": "clearml", "args": {}}, run_dir=run_dir, tags=["baseline", "cpu"])
    assert logger.offline
    logger.log_params({"trainer": {"max_epochs": 2}, "loss": {"args": {"margin": 0.2}}, "scheduling": None})
    for epoch, value in enumerate([0.5, 0.625]):
        logger.log_metrics({"OVERALL/cmc/1": value, "lr": 0.1}, step=epoch)
    logger.log_figure(make_figure(), "worst_queries/top 5 worst", 1)
    logger.log_artifact(config)
    logger.log_artifact(config, name="copies/renamed.yaml")
    folder = logger.offline_folder
    logger.finish("success")

    stored = read_session(folder)
    assert stored.name == "2026-01-01_run"
    assert sorted(stored.tags) == ["baseline", "cpu"]
    assert stored.params == {"trainer/max_epochs": "2", "loss/args/margin": "0.2", "scheduling": "None"}
    assert stored.scalars["OVERALL/cmc/1"] == [(0, 0.5), (1, 0.625)]
    assert stored.scalars["lr/lr"] == [(0, 0.1), (1, 0.1)]
    ((step, image),) = stored.images["worst_queries/top 5 worst"]
    assert step == 1
    assert image.is_file()
    assert sorted(stored.artifacts) == ["config.yaml", "copies/renamed.yaml"]
    assert stored.artifacts["copies/renamed.yaml"].read_text() == config.read_text()
    assert any("finished with status 'success'" in line for line in stored.log)
    assert logger.failures == []


def test_failed_run_is_recorded(tmp_path: Path) -> None:
    logger = ClearMLLogger(offline=True)
    logger.log_metrics({"loss": 1.0}, step=3)
    folder = logger.offline_folder
    logger.finish("failed")
    stored = read_session(folder)
    assert stored.scalars["loss/loss"] == [(3, 1.0)]
    assert any("finished with status 'failed'" in line for line in stored.log)
    assert logger.failures == []


def test_lightning_fit_writes_into_the_same_task(tmp_path: Path) -> None:
    logger = ClearMLLogger(offline=True, log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    assert isinstance(lightning_logger, ForwardingLightningLogger)
    assert lightning_logger.experiment is logger.experiment
    fit = fit_tiny_model(lightning_logger, tmp_path)
    logger.log_figure(make_figure(), "after_fit", 2)
    folder = logger.offline_folder
    logger.finish("success")

    stored = read_session(folder)
    assert [v for _, v in stored.scalars["val/score"]] == fit.val_scores
    assert [v for _, v in stored.scalars["OVERALL/cmc/1"]] == [0.5, 0.625]
    assert len(stored.scalars["train/loss"]) == fit.train_steps
    assert stored.params["hparams/hidden"] == "2"
    assert stored.artifacts["best.ckpt"].read_bytes() == fit.best_checkpoint.read_bytes()
    assert [s for s, _ in stored.images["after_fit/after_fit"]] == [2]
    assert logger.failures == []


def test_a_running_task_is_reused_and_left_open(tmp_path: Path) -> None:
    from clearml import Task

    Task.set_offline(offline_mode=True)
    task = Task.init(project_name="mine", task_name="user task", reuse_last_task_id=False, auto_connect_streams=False)
    try:
        logger = ClearMLLogger(tags=["extra"])
        assert logger.experiment is task
        logger.log_metrics({"loss": 1.0}, step=0)
        logger.finish()
        assert Task.current_task() is task
        assert "extra" in task.get_tags()
    finally:
        task.close()


def test_a_child_of_a_clearml_process_fails_instead_of_logging_nowhere(tmp_path: Path) -> None:
    code = "from omlcore_clearml import ClearMLLogger; ClearMLLogger(offline=True)"
    env = {**os.environ, "CLEARML_PROC_MASTER_ID": "1:", "TRAINS_PROC_MASTER_ID": "1:"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "LoggerSetupError: The clearml logger got no task" in out.stderr
    assert "Unset CLEARML_PROC_MASTER_ID" in out.stderr


def test_online_without_credentials_fails_before_training() -> None:
    with pytest.raises(MissingCredentialsError, match="CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY.*offline"):
        omlcore.build("logger", {"name": "clearml", "args": {}})


def test_online_server_must_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "key")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "secret")
    monkeypatch.setenv("CLEARML_API_HOST", f"http://127.0.0.1:{port}")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ServerUnreachableError, match=f"server at http://127.0.0.1:{port}"):
        ClearMLLogger(offline=False)


def test_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "clearml", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[clearml\]"'):
        ClearMLLogger(offline=True)


def test_importing_the_plugin_imports_no_sdk() -> None:
    assert sdk_imports_of_plugin("omlcore_clearml") == set()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "train.yaml"


@pytest.mark.integration
def test_omlcore_train_logs_to_clearml(tmp_path: Path) -> None:
    require_pipeline(EXAMPLE)
    run = train_on_mock(tmp_path, EXAMPLE, ["logger.name=clearml"], env={"CLEARML_OFFLINE_MODE": "1"})
    (folder,) = (tmp_path / "clearml-cache" / "offline").glob("offline-*/")
    stored = read_session(folder)
    cmc = [value for _, value in stored.scalars["OVERALL/cmc/1"]]
    assert cmc == pytest.approx(run.metric("OVERALL/cmc/1"), rel=1e-9)
    assert stored.name == "run"
    assert sorted(stored.tags) == ["baseline", "cpu"]
    assert stored.params["trainer.max_epochs"] == "2"
    assert stored.params["loss.args.miner.name"] == "hard_triplets"
    assert [step for step, _ in stored.images["worst_queries/OVERALL/cmc/1"]] == [0, 1]
    assert stored.artifacts["config.yaml"].read_text() == (run.run_dir / "config.yaml").read_text()
    assert stored.artifacts["df.csv"].read_text() == (tmp_path / "mock" / "df.csv").read_text()
    assert any("finished with status 'success'" in line for line in stored.log)
