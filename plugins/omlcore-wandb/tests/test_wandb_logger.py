"""The wandb logger in offline mode, read back from the run's ``.wandb`` file.

wandb 0.31 has no reader for offline runs, so :func:`read_run` parses the file: a LevelDB-log framed
stream (a 7-byte file header ``:W&B`` + magic + version, 32 KiB blocks, records with a 7-byte header
``<crc32 uint32, length uint16, type uint8>``, types FULL/FIRST/MIDDLE/LAST) of
``wandb_internal_pb2.Record`` messages. The checksum is zlib's CRC-32 of the type byte and the chunk.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
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
from omlcore_wandb import WandbLogger
from omlcore_wandb.logger import STEP_KEY

import omlcore
from omlcore.testing.conformance import ExperimentLoggerConformance, MetricHistory

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[bytes]:
    """The payloads of a W&B transaction log, up to the first chunk that is not whole yet.

    W&B's service process may still be writing the file: a chunk cut short at the file's end, or whose
    bytes have not all landed (checksum mismatch), ends the stream instead of being parsed.
    """
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            return
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


@dataclass
class StoredRun:
    """What an offline run recorded."""

    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    name: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # artifact -> {file name: type}
    exit_code: int | None = None

    def series(self, name: str) -> list[tuple[int, float]]:
        """``(trainer/global_step, value)`` of metric ``name``."""
        return [(int(row[STEP_KEY]), float(row[name])) for row in self.history if name in row and STEP_KEY in row]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(folder: Path, wait_s: float = 60.0) -> StoredRun:
    """Parse ``folder/run-*.wandb`` (a ``wandb/offline-run-*`` folder) once it holds the run's exit record:
    ``run.finish()`` may return before W&B's service process has written the log."""
    deadline = time.monotonic() + wait_s
    while True:
        run = _parse_run(folder)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def _parse_run(folder: Path) -> StoredRun:
    from wandb.proto import wandb_internal_pb2

    (log,) = folder.glob("run-*.wandb")
    run = StoredRun()
    for payload in records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name = record.run.display_name
            run.tags = list(record.run.tags)
            run.config.update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            files = {entry.path: record.artifact.type for entry in record.artifact.manifest.contents}
            run.artifacts[record.artifact.name] = files
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


@pytest.fixture(autouse=True)
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep W&B's files (settings, caches, artifact staging) inside the test's folder, offline."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(home / name.lower()))
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


class TestWandbConformance(ExperimentLoggerConformance):
    kind_name = "wandb"

    @pytest.fixture
    def component_args(self, tmp_path: Path) -> dict[str, Any]:
        return {"mode": "offline", "save_dir": str(tmp_path / "wb")}

    @pytest.fixture
    def component(self, make_component: Any) -> Iterator[Any]:
        logger = make_component()
        yield logger
        logger.finish()  # tests that do not finish the run leave it to us

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        run = read_run(logger.run_folder)
        names = {k for row in run.history for k in row if not k.startswith("_") and k != STEP_KEY}
        return {name: run.series(name) for name in names}

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        return read_run(logger.run_folder).config

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        return [name for files in read_run(logger.run_folder).artifacts.values() for name in files]


def test_direct_api_reads_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "2026-01-01_run"
    run_dir.mkdir()
    config = run_dir / "config.yaml"
    config.write_text("trainer:\n  max_epochs: 2\n")
    logger = omlcore.build("logger", {"name": "wandb", "args": {}}, run_dir=run_dir, tags=["baseline", "cpu"])
    assert logger.mode == "offline"  # from WANDB_MODE
    logger.log_params({"trainer": {"max_epochs": 2}, "loss": {"args": {"margin": 0.2}}, "scheduling": None})
    for epoch, value in enumerate([0.5, 0.625]):
        logger.log_metrics({"OVERALL/cmc/1": value}, step=epoch)
    logger.log_figure(make_figure(), "worst_queries/OVERALL/cmc/1", 1)
    logger.log_artifact(config)
    logger.log_artifact(config, name="df.csv")
    folder = logger.run_folder
    logger.finish("success")

    assert folder.parent == run_dir / "wandb"
    run = read_run(folder)
    assert run.name == "2026-01-01_run"
    assert sorted(run.tags) == ["baseline", "cpu"]
    assert {"trainer/max_epochs": 2, "loss/args/margin": 0.2, "scheduling": None}.items() <= run.config.items()
    assert run.series("OVERALL/cmc/1") == [(0, 0.5), (1, 0.625)]
    (figure,) = [row for row in run.history if "worst_queries/OVERALL/cmc/1/_type" in row]
    assert figure[STEP_KEY] == 1
    assert (figure["worst_queries/OVERALL/cmc/1/width"], figure["worst_queries/OVERALL/cmc/1/height"]) == (100, 75)
    assert (folder / "files" / figure["worst_queries/OVERALL/cmc/1/path"]).is_file()
    assert run.artifacts == {
        f"{logger.run_id}-config.yaml": {"config.yaml": "config"},
        f"{logger.run_id}-df.csv": {"df.csv": "dataset"},
    }
    assert run.exit_code == 0
    assert logger.failures == []


def test_failed_run_exits_non_zero(tmp_path: Path) -> None:
    logger = WandbLogger(mode="offline", save_dir=tmp_path)
    logger.log_metrics({"loss": 1.0}, step=3)
    folder = logger.run_folder
    logger.finish("failed")
    run = read_run(folder)
    assert run.exit_code == 1
    assert run.series("loss") == [(3, 1.0)]


def test_lightning_fit_writes_into_the_same_run(tmp_path: Path) -> None:
    logger = WandbLogger(mode="offline", save_dir=tmp_path / "wb", log_checkpoint=True)
    lightning_logger = logger.lightning_logger()
    assert lightning_logger.experiment is logger.experiment
    fit = fit_tiny_model(lightning_logger, tmp_path)
    logger.log_figure(make_figure(), "after_fit", 2)
    folder = logger.run_folder
    logger.finish("success")

    run = read_run(folder)
    assert [v for _, v in run.series("val/score")] == fit.val_scores
    assert [v for _, v in run.series("OVERALL/cmc/1")] == [0.5, 0.625]
    assert len(run.series("train/loss")) == fit.train_steps
    assert run.config["hidden"] == 2  # the LightningModule's hyperparameters
    assert run.artifacts == {f"{logger.run_id}-best.ckpt": {"best.ckpt": "model"}}
    assert any("after_fit/_type" in row for row in run.history)
    assert logger.failures == []


def test_reader_stops_at_a_record_still_being_written(tmp_path: Path) -> None:
    """:func:`read_run` polls the file while W&B's service writes it: a cut or half-landed tail must not be parsed."""
    logger = WandbLogger(mode="offline", save_dir=tmp_path / "wb")
    for step in range(50):
        logger.log_metrics({"m": float(step)}, step)
    folder = logger.run_folder
    logger.finish("success")
    whole = read_run(folder)
    assert whole.exit_code == 0
    (log,) = folder.glob("run-*.wandb")
    data = log.read_bytes()
    full = list(records(log))
    for cut in (len(data) - 1, len(data) // 2, len(data) // 3 + 5):
        log.write_bytes(data[:cut])
        assert full[: len(list(records(log)))] == list(records(log))
        assert _parse_run(folder).exit_code is None
    garbled = bytearray(data)
    garbled[len(data) // 2] ^= 0xFF  # a chunk whose bytes have not all landed yet
    log.write_bytes(bytes(garbled))
    assert len(list(records(log))) < len(full)
    assert _parse_run(folder).exit_code is None


def test_online_without_credentials_fails_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(MissingCredentialsError, match="Set WANDB_API_KEY; or run `wandb login`.*mode: offline"):
        omlcore.build("logger", {"name": "wandb", "args": {"project": "p"}})


def test_credentials_in_netrc_are_found_and_server_must_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ServerUnreachableError, match=f"server at http://127.0.0.1:{port}"):
        WandbLogger(mode="online")


def test_failures_are_reported(tmp_path: Path) -> None:
    logger = WandbLogger(mode="offline", save_dir=tmp_path)
    with pytest.warns(LoggerFailureWarning, match="log_artifact failed"):
        logger.log_artifact(tmp_path / "missing.ckpt")
    with pytest.warns(LoggerFailureWarning, match="1 failed call"):
        logger.finish()


def test_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingSDKError, match=r'pip install "omlcore\[wandb\]"'):
        WandbLogger(mode="offline")


def test_importing_the_plugin_imports_no_sdk() -> None:
    assert sdk_imports_of_plugin("omlcore_wandb") == set()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "configs" / "train.yaml"


@pytest.mark.integration
def test_omlcore_train_logs_to_wandb(tmp_path: Path) -> None:
    require_pipeline(EXAMPLE)
    run = train_on_mock(tmp_path, EXAMPLE, ["logger.name=wandb"])  # offline: WANDB_MODE from wandb_home
    (folder,) = (run.run_dir / "wandb").glob("offline-run-*")
    stored = read_run(folder)
    assert [v for _, v in stored.series("OVERALL/cmc/1")] == pytest.approx(run.metric("OVERALL/cmc/1"), rel=1e-9)
    assert stored.name == "run"
    assert sorted(stored.tags) == ["baseline", "cpu"]
    assert stored.config["trainer.max_epochs"] == 2
    assert stored.config["loss.args.miner.name"] == "hard_triplets"
    figures = [row[STEP_KEY] for row in stored.history if "worst_queries/OVERALL/cmc/1/_type" in row]
    assert figures == [0, 1]
    files = {name for artifact in stored.artifacts.values() for name in artifact}
    assert {"config.yaml", "df.csv"} <= files
    assert stored.exit_code == 0
