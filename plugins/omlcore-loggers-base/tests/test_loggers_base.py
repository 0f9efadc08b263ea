"""The shared base: flattening, names, figures, checks and the failure policy (with an in-memory backend)."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest
from omlcore_loggers_base import (
    BaseLogger,
    LoggerCallError,
    LoggerFailureWarning,
    MissingCredentialsError,
    MissingSDKError,
    ParamValue,
    ServerUnreachableError,
    artifact_kind,
    artifact_name,
    check_reachable,
    figure_to_png,
    flatten_params,
    import_sdk,
    is_rank_zero,
    png_size,
    png_to_rgb_array,
    safe_key,
    split_metric_name,
)
from omlcore_loggers_base.testing import SDK_MODULES, fit_tiny_model, imported_modules, make_figure, png_image

from omlcore.errors import OmlcoreError
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory

# ---- flattening ----------------------------------------------------------------------------------------


def test_flatten_nested_config() -> None:
    config = {
        "trainer": {"max_epochs": 2, "devices": "auto", "extra_args": {}},
        "loss": {"name": "triplet_with_miner", "args": {"margin": 0.2, "miner": {"name": "hard_triplets"}}},
        "metrics": {"cmc_top_k": [1, 5], "fmr_vals": []},
        "logger": [{"name": "mlflow", "args": {}}, {"name": "tensorboard", "args": {"save_dir": Path("tb")}}],
        "scheduling": None,
        "flag": True,
    }
    assert flatten_params(config) == {
        "trainer/max_epochs": 2,
        "trainer/devices": "auto",
        "trainer/extra_args": "{}",
        "loss/name": "triplet_with_miner",
        "loss/args/margin": 0.2,
        "loss/args/miner/name": "hard_triplets",
        "metrics/cmc_top_k": "[1, 5]",
        "metrics/fmr_vals": "[]",
        "logger/0/name": "mlflow",
        "logger/0/args": "{}",
        "logger/1/name": "tensorboard",
        "logger/1/args/save_dir": "tb",
        "scheduling": None,
        "flag": True,
    }


def test_flatten_is_idempotent_and_takes_config_objects() -> None:
    flat = flatten_params({"a": {"b": 1, "c": [0.5, "x"]}})
    assert flatten_params(flat) == flat
    assert flatten_params(argparse.Namespace(lr=0.1, opt={"name": "adam"})) == {"lr": 0.1, "opt/name": "adam"}

    @dataclasses.dataclass
    class Section:
        size: int
        path: Path

    assert flatten_params({"data": Section(3, Path("/d"))}, sep=".") == {"data.size": 3, "data.path": "/d"}
    assert flatten_params({"nan": float("nan"), "obj": object}) == {"nan": "nan", "obj": str(object)}
    with pytest.raises(TypeError, match="expected a mapping"):
        flatten_params([1, 2])


def test_flatten_pydantic_config() -> None:
    from omlcore.schemas import RunSection

    flat = flatten_params({"run": RunSection(tags=["a"], postfix="x")})
    assert flat["run/tags"] == '["a"]'
    assert flat["run/postfix"] == "x"
    assert flat["run/logs_root"] == "logs"


# ---- names and figures ---------------------------------------------------------------------------------


def test_artifact_names_and_kinds() -> None:
    assert artifact_name("/runs/1/config.yaml") == "config.yaml"
    assert artifact_name("x.csv", "data/df.csv") == "data/df.csv"
    for bad in ("", "/abs.csv", "../up.csv", "a/../../b"):
        with pytest.raises(ValueError, match="relative file name"):
            artifact_name("x.csv", bad)
    assert [artifact_kind(n) for n in ("c.YAML", "df.csv", "best.ckpt", "notes.txt")] == [
        "config",
        "dataset",
        "model",
        "file",
    ]


def test_safe_keys_and_metric_groups() -> None:
    assert safe_key("worst_queries/top 5 worst by OVERALL map@5") == "worst_queries/top_5_worst_by_OVERALL_map_5"
    assert safe_key("a//b/") == "a/b"
    assert safe_key("a/b", keep_slash=False) == "a_b"
    assert split_metric_name("OVERALL/cmc/1") == ("OVERALL/cmc", "1")
    assert split_metric_name("lr") == ("lr", "lr")


def test_figures_become_png() -> None:
    png = figure_to_png(make_figure())
    assert png_size(png) == (100, 75)
    assert figure_to_png(png) == png
    assert png_to_rgb_array(png).shape == (75, 100, 3)
    with pytest.raises(ValueError, match="not a PNG"):
        figure_to_png(b"GIF89a")
    with pytest.raises(TypeError, match="expected a matplotlib figure"):
        figure_to_png("figure.png")
    gradient = png_to_rgb_array(png_image(3, 2))  # the stand-in figure when matplotlib is missing
    assert gradient.tolist() == [
        [[0, 0, 128], [127, 0, 128], [255, 0, 128]],
        [[0, 255, 128], [127, 255, 128], [255, 255, 128]],
    ]


# ---- checks --------------------------------------------------------------------------------------------


def test_import_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_sdk("json", "json").dumps(1) == "1"
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[wandb\]"') as info:
        import_sdk("wandb", "wandb")
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, OmlcoreError)


def test_rank_zero_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_rank_zero()
    monkeypatch.setenv("RANK", "1")
    assert not is_rank_zero()


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_fails_fast_with_its_address(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    address = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(ServerUnreachableError, match=rf"cannot reach its server at {address}.*Start it") as info:
        check_reachable("mlflow", address, "Start it.", timeout=2.0)
    assert info.value.address == address
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable("mlflow", f"http://127.0.0.1:{server.getsockname()[1]}/api", "", timeout=2.0)
    with pytest.raises(ServerUnreachableError, match="no host name"):
        check_reachable("mlflow", "http:///nohost", "")


def test_unreachable_proxy_is_named(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ServerUnreachableError, match="through the proxy"):
        check_reachable("wandb", "https://api.example.invalid", "", timeout=2.0)


def test_missing_credentials_message() -> None:
    error = MissingCredentialsError("wandb", ["WANDB_API_KEY", "run `wandb login`"], "set mode: offline")
    assert "Set WANDB_API_KEY; or run `wandb login`. To log without an account, set mode: offline." in str(error)
    assert "never reads credentials from its configs" in str(error)


# ---- the failure policy, on an in-memory backend -------------------------------------------------------


class MemoryLogger(BaseLogger):
    """Keeps everything in lists; ``fail`` names calls that raise."""

    backend = "memory"

    def __init__(self, fail: Collection[str] = (), strict: bool = False, log_checkpoint: bool = False) -> None:
        super().__init__(strict=strict, log_checkpoint=log_checkpoint, tags=["b", "a", "b"])
        self.fail = set(fail)
        self.params: dict[str, ParamValue] = {}
        self.metrics: list[tuple[str, int | None, float]] = []
        self.figures: list[tuple[str, int, bytes]] = []
        self.artifacts: dict[str, bytes] = {}
        self.closed: str | None = None

    def _check(self, call: str) -> None:
        if call in self.fail:
            raise ConnectionError(f"{call} is down")

    def _log_params(self, params: dict[str, ParamValue]) -> None:
        self._check("params")
        self.params.update(params)

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        self._check("metrics")
        self.metrics += [(name, step, value) for name, value in metrics.items()]

    def _log_figure(self, png: bytes, title: str, step: int) -> None:
        self._check("figure")
        self.figures.append((title, step, png))

    def _log_artifact(self, path: Path, name: str) -> None:
        self._check("artifact")
        self.artifacts[name] = path.read_bytes()

    def _finish(self, status: str) -> None:
        self._check("finish")
        self.closed = status


class TestMemoryLoggerConformance(ExperimentLoggerConformance):
    @pytest.fixture
    def make_component(self) -> Any:
        return MemoryLogger

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        out: dict[str, list[tuple[int | None, float]]] = {}
        for name, step, value in logger.metrics:
            out.setdefault(name, []).append((step, value))
        return out

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return dict(logger.params)

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return list(logger.artifacts)


def test_inputs_are_prepared_once_for_every_backend(tmp_path: Path) -> None:
    import torch

    logger = MemoryLogger()
    assert logger.tags == ("b", "a")
    logger.log_params({"optimizer": {"args": {"lr": 0.1}}})
    logger.log_metrics({"OVERALL/cmc/1": torch.tensor(0.5), "epoch": 1}, step=torch.tensor(3))  # type: ignore[dict-item,arg-type]
    logger.log_figure(make_figure(), "fig", 2)
    source = tmp_path / "df.csv"
    source.write_text("a\n1\n")
    logger.log_artifact(source, name="data/df.csv")
    logger.finish("failed")
    assert logger.params == {"optimizer/args/lr": 0.1}
    assert logger.metrics == [("OVERALL/cmc/1", 3, 0.5), ("epoch", 3, 1.0)]
    assert all(type(v) is float for _, _, v in logger.metrics)
    assert logger.figures[0][:2] == ("fig", 2)
    assert png_size(logger.figures[0][2]) == (100, 75)
    assert logger.artifacts == {"data/df.csv": b"a\n1\n"}
    assert (logger.closed, logger.status) == ("failed", "failed")


def test_failures_are_reported_once_per_call_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = MemoryLogger(fail={"metrics"})
    with pytest.warns(LoggerFailureWarning, match=r"memory logger's log_metrics failed \(ConnectionError"):
        logger.log_metrics({"a": 1.0}, step=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.log_metrics({"a": 2.0}, step=1)  # logged to 'omlcore.loggers' only
        logger.log_params({"b": 1})
    assert [r.name for r in caplog.records] == ["omlcore.loggers", "omlcore.loggers"]
    assert caplog.records[0].exc_info is not None
    assert len(logger.failures) == 2
    assert str(logger.failures[0]) == "memory: log_metrics: ConnectionError: metrics is down"
    with pytest.warns(LoggerFailureWarning, match="2 failed call"):
        logger.finish()
    assert logger.closed == "success"


def test_logger_switches_itself_off_after_many_failures() -> None:
    logger = MemoryLogger(fail={"metrics"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(MemoryLogger.max_failures + 5):
            logger.log_metrics({"a": 1.0}, step=step)
    assert [str(w.message).split(" ")[-1] for w in caught] == ["only", "unaffected"]
    assert len(logger.failures) == MemoryLogger.max_failures
    logger.fail.clear()
    logger.log_metrics({"a": 1.0}, step=99)
    assert logger.metrics == []


def test_strict_mode_raises() -> None:
    logger = MemoryLogger(fail={"artifact"}, strict=True)
    with pytest.raises(LoggerCallError, match="memory logger's log_artifact failed: FileNotFoundError"):
        logger.log_artifact("missing.csv")


def test_calls_after_finish_are_reported_not_sent() -> None:
    logger = MemoryLogger()
    logger.finish()
    with pytest.warns(LoggerFailureWarning, match="already closed"):
        logger.log_metrics({"a": 1.0})
    assert logger.metrics == []


def test_context_manager_closes_as_failed_on_error() -> None:
    with pytest.raises(KeyError), MemoryLogger() as logger:
        raise KeyError("boom")
    assert logger.status == "failed"


def test_other_ranks_log_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    logger = MemoryLogger(fail={"metrics"})
    logger.log_metrics({"a": 1.0})
    logger.finish()
    assert (logger.metrics, logger.failures, logger.closed) == ([], [], None)


# ---- Lightning ------------------------------------------------------------------------------------------


def test_forwarding_lightning_logger_fit(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import Logger
    from omlcore_loggers_base.lightning import ForwardingLightningLogger

    logger = MemoryLogger(log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    assert isinstance(lightning_logger, ForwardingLightningLogger)
    assert isinstance(lightning_logger, Logger)
    fit = fit_tiny_model(lightning_logger, tmp_path)
    assert logger.closed is None  # Lightning's finalize leaves the run open for the pipeline
    logger.finish()
    scores = [(step, value) for name, step, value in logger.metrics if name == "val/score"]
    assert [v for _, v in scores] == fit.val_scores
    assert len([1 for name, _, _ in logger.metrics if name == "train/loss"]) == fit.train_steps
    assert logger.params == {"hparams/hidden": 2, "hparams/lr": 0.1}
    assert logger.artifacts == {"best.ckpt": fit.best_checkpoint.read_bytes()}


def test_guarded_lightning_logger_reports_failures(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger
    from omlcore_loggers_base import GuardedLightningLogger

    class FailingCSV(CSVLogger):
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            raise OSError("disk full")

    class BrokenCSV(GuardedLightningLogger, FailingCSV):
        pass

    owner = MemoryLogger()
    lightning_logger = BrokenCSV(save_dir=str(tmp_path / "csv"))
    lightning_logger._omlcore_owner = owner
    with pytest.warns(LoggerFailureWarning, match="lightning log_metrics failed"):
        fit = fit_tiny_model(lightning_logger, tmp_path)
    assert fit.best_checkpoint.is_file()  # training finished and checkpointed despite the failures
    assert owner.failures
    assert {f.call for f in owner.failures} == {"lightning log_metrics"}
    assert owner.best_checkpoint == fit.best_checkpoint


def test_importing_the_base_imports_no_sdk() -> None:
    assert not imported_modules("import omlcore_loggers_base") & set(SDK_MODULES)
