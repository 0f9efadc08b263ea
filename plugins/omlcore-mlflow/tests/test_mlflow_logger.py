"""The mlflow logger, read back from a local sqlite store with MlflowClient."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from omlcore_loggers_base import LoggerFailureWarning, MissingCredentialsError, MissingSDKError, ServerUnreachableError
from omlcore_loggers_base.testing import (
    fit_tiny_model,
    make_figure,
    require_pipeline,
    sdk_imports_of_plugin,
    train_on_mock,
)
from omlcore_mlflow import MLflowLogger

import omlcore
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module's tests (creating its tables takes seconds); each test has its runs."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def client(logger: MLflowLogger) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=logger.tracking_uri)


def metric_history(logger: MLflowLogger, name: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client(logger).get_metric_history(logger.run_id, name)]


def artifact_paths(logger: MLflowLogger, folder: str | None = None) -> list[str]:
    out = []
    for item in client(logger).list_artifacts(logger.run_id, folder):
        out += artifact_paths(logger, item.path) if item.is_dir else [item.path]
    return out


class TestMLflowConformance(ExperimentLoggerConformance):
    kind_name = "mlflow"

    @pytest.fixture
    def component_args(self, store: str) -> dict[str, Any]:
        return {"tracking_uri": store, "experiment_name": "conformance"}

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        run = client(logger).get_run(logger.run_id)
        return {name: metric_history(logger, name) for name in run.data.metrics}

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return dict(client(logger).get_run(logger.run_id).data.params)

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return artifact_paths(logger)


def test_direct_api_reads_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "logs" / "2026-01-01_run"
    run_dir.mkdir(parents=True)
    config = run_dir / "config.yaml"
    config.write_text("trainer:\n  max_epochs: 2\n")
    logger = omlcore.build("logger", {"name": "mlflow", "args": {}}, run_dir=run_dir, tags=["baseline", "cpu"])
    assert logger.tracking_uri == f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}"
    logger.log_params({"trainer": {"max_epochs": 2}, "loss": {"args": {"margin": 0.2}}, "scheduling": None})
    for epoch, value in enumerate([0.5, 0.625]):
        logger.log_metrics({"OVERALL/cmc/1": value}, step=epoch)
    logger.log_figure(make_figure(), "worst_queries/top 5 worst", 1)
    logger.log_artifact(config)
    logger.log_artifact(config, name="copies/renamed.yaml")
    logger.finish("success")

    run = client(logger).get_run(logger.run_id)
    assert run.info.run_name == "2026-01-01_run"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"trainer/max_epochs": "2", "loss/args/margin": "0.2", "scheduling": "None"}
    assert {"baseline": "", "cpu": "", "omlcore.run_dir": str(run_dir)}.items() <= run.data.tags.items()
    assert metric_history(logger, "OVERALL/cmc/1") == [(0, 0.5), (1, 0.625)]
    assert sorted(artifact_paths(logger)) == [
        "config.yaml",
        "copies/renamed.yaml",
        "figures/worst_queries/top_5_worst/step_000001.png",
    ]
    stored = Path(client(logger).download_artifacts(logger.run_id, "copies/renamed.yaml", str(tmp_path / "dl")))
    assert stored.read_text() == config.read_text()
    assert (tmp_path / "logs" / "mlartifacts").is_dir()  # not ./mlruns of the working directory
    assert logger.failures == []


def test_failed_run_and_param_conflicts_are_reported(store: str) -> None:
    logger = MLflowLogger(tracking_uri=store)
    logger.log_params({"lr": 0.1})
    with pytest.warns(LoggerFailureWarning, match="log_params failed"):
        logger.log_params({"lr": 0.2})  # MLflow params cannot change
    logger.log_metrics({"loss": 1.0}, step=3)
    with pytest.warns(LoggerFailureWarning, match="1 failed call"):
        logger.finish("failed")
    assert client(logger).get_run(logger.run_id).info.status == "FAILED"
    assert metric_history(logger, "loss") == [(3, 1.0)]


def test_lightning_fit_writes_into_the_same_run(tmp_path: Path, store: str) -> None:
    logger = MLflowLogger(tracking_uri=store, experiment_name="fit", log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    fit = fit_tiny_model(lightning_logger, tmp_path)
    assert client(logger).get_run(logger.run_id).info.status == "RUNNING"  # finish() closes, not Lightning
    logger.log_figure(make_figure(), "after_fit", 2)
    logger.finish("success")

    assert lightning_logger.run_id == logger.run_id
    assert [v for _, v in metric_history(logger, "val/score")] == fit.val_scores
    assert [v for _, v in metric_history(logger, "OVERALL/cmc/1")] == [0.5, 0.625]
    assert len(metric_history(logger, "train/loss")) == fit.train_steps
    run = client(logger).get_run(logger.run_id)
    assert run.data.params["hidden"] == "2"
    assert run.info.status == "FINISHED"
    assert sorted(artifact_paths(logger)) == ["best.ckpt", "figures/after_fit/step_000002.png"]
    assert logger.failures == []


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_fails_fast_with_its_address(closed_port: int) -> None:
    address = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(ServerUnreachableError, match=f"cannot reach its server at {address}.*tracking_uri"):
        omlcore.build("logger", {"name": "mlflow", "args": {"tracking_uri": address}})


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"You are not authenticated.")

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def auth_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_server_refusing_credentials_says_what_to_set(auth_server: str) -> None:
    with pytest.raises(MissingCredentialsError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
        MLflowLogger(tracking_uri=auth_server)


def test_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[mlflow\]"'):
        MLflowLogger(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def test_importing_the_plugin_imports_no_sdk() -> None:
    assert sdk_imports_of_plugin("omlcore_mlflow") == set()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "train.yaml"


@pytest.mark.integration
def test_omlcore_train_logs_to_mlflow(tmp_path: Path) -> None:
    require_pipeline(EXAMPLE)
    from mlflow.tracking import MlflowClient

    run = train_on_mock(tmp_path, EXAMPLE, ["logger.name=mlflow"], env={"MLFLOW_TRACKING_URI": None})
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (stored,) = client.search_runs([client.get_experiment_by_name("omlcore").experiment_id])
    run_id = stored.info.run_id
    history = client.get_metric_history(run_id, "OVERALL/cmc/1")
    assert [m.value for m in history] == pytest.approx(run.metric("OVERALL/cmc/1"), rel=1e-9)
    assert stored.info.run_name == "run"
    assert stored.info.status == "FINISHED"
    assert stored.data.params["trainer.max_epochs"] == "2"
    assert stored.data.params["loss.args.miner.name"] == "hard_triplets"
    assert {"baseline", "cpu"} <= set(stored.data.tags)

    def paths(folder: str | None = None) -> list[str]:
        out = []
        for item in client.list_artifacts(run_id, folder):
            out += paths(item.path) if item.is_dir else [item.path]
        return out

    stored_paths = set(paths())
    assert {"config.yaml", "df.csv"} <= stored_paths
    assert {f"figures/worst_queries/OVERALL/cmc/1/step_00000{epoch}.png" for epoch in (0, 1)} <= stored_paths
    config = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl")))
    assert config.read_text() == (run.run_dir / "config.yaml").read_text()
