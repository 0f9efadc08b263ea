"""The neptune logger in offline mode, read back from the operations Neptune queued on disk.

Offline, neptune 1.x writes every operation as a JSON line to
``$NEPTUNE_DATA_DIRECTORY/offline/run__<id>__<pid>__<key>/data-1.log``; :func:`read_run` replays them.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from omlcore_loggers_base import LoggerSetupError, MissingCredentialsError, MissingSDKError, ServerUnreachableError
from omlcore_loggers_base.lightning import ForwardingLightningLogger
from omlcore_loggers_base.testing import (
    fit_tiny_model,
    make_figure,
    require_pipeline,
    sdk_imports_of_plugin,
    train_on_mock,
)
from omlcore_neptune import NeptuneLogger
from omlcore_neptune.logger import server_address

import omlcore
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory


@dataclass
class StoredRun:
    """The state a replay of the offline operations gives."""

    fields: dict[str, Any] = field(default_factory=dict)
    series: dict[str, list[tuple[float | None, Any]]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)

    def under(self, prefix: str) -> dict[str, Any]:
        return {k[len(prefix) :]: v for k, v in self.fields.items() if k.startswith(prefix)}


def read_run(data_dir: Path) -> StoredRun:
    """Replay the single offline run under ``data_dir``."""
    (log,) = data_dir.glob("offline/run__*/data-1.log")
    run = StoredRun()
    for line in log.read_text().splitlines():
        op = json.loads(line)["obj"]
        path = "/".join(op["path"])
        kind = op["type"]
        if kind.startswith("Assign"):
            run.fields[path] = op["value"]
        elif kind in ("LogFloats", "LogImages", "LogStrings"):
            run.series.setdefault(path, []).extend((v.get("step"), v["value"]) for v in op["values"])
        elif kind == "UploadFile":
            run.files[path] = op["file_path"]
        elif kind == "AddStrings" and path == "sys/tags":
            run.tags.update(op["values"])
    return run


@pytest.fixture(autouse=True)
def neptune_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "neptune-data"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(data_dir))
    for name in ("NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT", "NEPTUNE_MODE"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


class TestNeptuneConformance(ExperimentLoggerConformance):
    kind_name = "neptune"
    args = {"mode": "offline"}

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        series = read_run(Path(logger.data_dir)).series
        return {k[len("metrics/") :]: v for k, v in series.items() if k.startswith("metrics/")}

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return read_run(Path(logger.data_dir)).under("parameters/")

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return [Path(k).name for k in read_run(Path(logger.data_dir)).files if k.startswith("artifacts/")]

    @pytest.fixture
    def component(self, make_component: Any, neptune_env: Path) -> Iterator[Any]:
        logger = make_component()
        logger.data_dir = neptune_env
        yield logger
        logger.finish()  # tests that do not finish the run leave it to us


def test_direct_api_reads_back(tmp_path: Path, neptune_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    run_dir = tmp_path / "2026-01-01_run"
    run_dir.mkdir()
    config = run_dir / "config.yaml"
    config.write_text("trainer:\n  max_epochs: 2\n")
    logger = omlcore.build("logger", {"name": "neptune", "args": {}}, run_dir=run_dir, tags=["baseline", "cpu"])
    assert logger.mode == "offline"
    logger.log_params({"trainer": {"max_epochs": 2}, "loss": {"args": {"margin": 0.2}}, "scheduling": None})
    for epoch, value in enumerate([0.5, 0.625]):
        logger.log_metrics({"OVERALL/cmc/1": value, "epoch": epoch}, step=epoch)
    logger.log_metrics({"epoch": 1}, step=1)  # the same step again: skipped, as Neptune would refuse it
    logger.log_figure(make_figure(), "worst_queries/top 5 worst", 1)
    logger.log_artifact(config)
    logger.log_artifact(config, name="copies/renamed.yaml")
    logger.finish("success")

    run = read_run(neptune_env)
    assert run.fields["sys/name"] == "2026-01-01_run"
    assert run.tags == {"baseline", "cpu"}
    assert run.under("parameters/") == {"trainer/max_epochs": 2, "loss/args/margin": 0.2, "scheduling": "None"}
    assert run.series["metrics/OVERALL/cmc/1"] == [(0, 0.5), (1, 0.625)]
    assert run.series["metrics/epoch"] == [(0, 0), (1, 1)]
    ((step, image),) = run.series["figures/worst_queries/top_5_worst"]
    assert step == 1
    assert base64.b64decode(image["data"]).startswith(b"\x89PNG")
    assert run.files == {"artifacts/config.yaml": str(config), "artifacts/copies/renamed.yaml": str(config)}
    assert run.fields["sys/failed"] is False
    assert logger.failures == []


def test_failed_run_is_marked(neptune_env: Path) -> None:
    logger = NeptuneLogger(mode="offline")
    logger.log_metrics({"loss": 1.0}, step=3)
    logger.finish("failed")
    run = read_run(neptune_env)
    assert run.fields["sys/failed"] is True
    assert run.series["metrics/loss"] == [(3, 1.0)]


def test_lightning_fit_writes_into_the_same_run(tmp_path: Path, neptune_env: Path) -> None:
    logger = NeptuneLogger(mode="offline", log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    assert isinstance(lightning_logger, ForwardingLightningLogger)
    assert lightning_logger.experiment is logger.experiment
    fit = fit_tiny_model(lightning_logger, tmp_path)
    logger.log_figure(make_figure(), "after_fit", 2)
    logger.finish("success")

    run = read_run(neptune_env)
    assert [v for _, v in run.series["metrics/val/score"]] == fit.val_scores
    assert [v for _, v in run.series["metrics/OVERALL/cmc/1"]] == [0.5, 0.625]
    assert len(run.series["metrics/train/loss"]) == fit.train_steps
    assert run.fields["parameters/hparams/hidden"] == 2
    assert run.files == {"artifacts/best.ckpt": str(fit.best_checkpoint)}
    assert [s for s, _ in run.series["figures/after_fit"]] == [2]
    assert logger.failures == []


def test_debug_mode_keeps_values_in_memory(neptune_env: Path) -> None:
    logger = NeptuneLogger(mode="debug")
    logger.log_metrics({"OVERALL/cmc/1": 0.5}, step=0)
    logger.log_params({"a": {"b": 1}})
    assert logger.experiment["parameters/a/b"].fetch() == 1
    assert list(logger.experiment["metrics/OVERALL/cmc/1"].fetch_values()["value"]) == [0.5]
    logger.finish()
    assert not [p for p in neptune_env.rglob("*") if p.is_file()]


def test_online_without_credentials_fails_before_training() -> None:
    with pytest.raises(MissingCredentialsError, match="NEPTUNE_API_TOKEN .* and NEPTUNE_PROJECT.*mode: offline"):
        omlcore.build("logger", {"name": "neptune", "args": {}})


def test_online_token_server_must_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"http://127.0.0.1:{port}"
    token = base64.b64encode(json.dumps({"api_address": address, "api_key": "x"}).encode()).decode()
    assert server_address(token) == address
    assert server_address("not a token") is None
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ServerUnreachableError, match=f"server at {address}"):
        NeptuneLogger(project="team/reid", mode="sync")


def test_bad_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_MODE", "read-only")
    with pytest.raises(LoggerSetupError, match="mode 'read-only'"):
        NeptuneLogger()


def test_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "neptune", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[neptune\]"'):
        NeptuneLogger(mode="offline")


def test_importing_the_plugin_imports_no_sdk() -> None:
    assert sdk_imports_of_plugin("omlcore_neptune") == set()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "train.yaml"


@pytest.mark.integration
def test_omlcore_train_logs_to_neptune(tmp_path: Path, neptune_env: Path) -> None:
    require_pipeline(EXAMPLE)
    run = train_on_mock(tmp_path, EXAMPLE, ["logger={name: neptune, args: {mode: offline}}"])
    stored = read_run(neptune_env)
    cmc = [value for _, value in stored.series["metrics/OVERALL/cmc/1"]]
    assert cmc == pytest.approx(run.metric("OVERALL/cmc/1"), rel=1e-9)
    assert stored.fields["sys/name"] == "run"
    assert stored.tags == {"baseline", "cpu"}
    assert stored.fields["parameters/trainer.max_epochs"] == 2
    assert stored.fields["parameters/loss.args.miner.name"] == "hard_triplets"
    assert [step for step, _ in stored.series["figures/worst_queries/OVERALL/cmc/1"]] == [0, 1]
    assert stored.files["artifacts/config.yaml"] == str(run.run_dir / "config.yaml")
    assert Path(stored.files["artifacts/df.csv"]).read_text() == (tmp_path / "mock" / "df.csv").read_text()
    assert stored.fields["sys/failed"] is False
