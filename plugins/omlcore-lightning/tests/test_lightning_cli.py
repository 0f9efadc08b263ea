"""``omlcore train|validate|predict``: exit codes, output, --resume, Ctrl-C and the plugin hooks."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from omlcore import hookimpl
from omlcore.cli import main
from omlcore.plugins import get_plugin_manager


def _write(config: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "validate", "predict"):
        assert command in out


def test_train_then_resume(train_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(train_config, tmp_path / "train.yaml")
    assert main(["train", config, "trainer.max_epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "Validation metrics by epoch (OVERALL):" in out
    assert "epoch    loss   cmc/1" in out
    (run,) = (tmp_path / "logs").iterdir()
    assert f"run folder: {run}" in out
    # --resume with the run's own config and an override extending it
    assert main(["train", "--resume", str(run), "trainer.max_epochs=2"]) == 0
    records = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert list((tmp_path / "logs").iterdir()) == [run]


def test_bad_input_exits_2(train_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(train_config, tmp_path / "train.yaml")
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert main(["train"]) == 2
    assert "give a CONFIG" in capsys.readouterr().err
    assert main(["train", config, "checkpoint.monitor=OVERALL/cmc/2"]) == 2
    err = capsys.readouterr().err
    assert "invalid config, 1 problem(s)" in err
    assert "checkpoint.monitor: 'OVERALL/cmc/2' is never logged" in err
    assert main(["check", config, "checkpoint.monitor=OVERALL/cmc/2"]) == 2  # the omlcore_validate_config hook
    assert "checkpoint.monitor: 'OVERALL/cmc/2' is never logged" in capsys.readouterr().err
    assert main(["check", config, "checkpoint.monitor=closed/cmc/3"]) == 0  # categories need the data
    capsys.readouterr()
    assert main(["validate", config]) == 2
    assert "this command runs the 'validate' pipeline" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


class _CtrlCPlugin:
    """A hook plugin contributing a callback that sends SIGINT after the first training batch."""

    class _Send(Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    @hookimpl
    def omlcore_trainer_callbacks(self, config: Any) -> list[Callback]:
        return [self._Send()]


@pytest.fixture
def ctrl_c_plugin() -> Iterator[None]:
    pm = get_plugin_manager()
    plugin = _CtrlCPlugin()
    pm.register(plugin, name="test-ctrl-c")
    try:
        yield
    finally:
        pm.unregister(plugin)


@pytest.mark.usefixtures("ctrl_c_plugin")
def test_ctrl_c_exits_130_and_tells_how_to_resume(
    train_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(train_config, tmp_path / "train.yaml")
    assert main(["train", config]) == 130
    out = capsys.readouterr().out
    (run,) = (tmp_path / "logs").iterdir()
    assert f"Continue with: omlcore train --resume {run}" in out
    assert (run / "checkpoints" / "last.ckpt").is_file()


class _Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[Path, dict[str, float]]] = []

    @hookimpl
    def omlcore_run_finished(self, config: Any, run_dir: Path, metrics: dict[str, float]) -> None:
        self.seen.append((run_dir, dict(metrics)))


def test_run_finished_observers_see_the_run(train_config: dict[str, Any], tmp_path: Path) -> None:
    pm = get_plugin_manager()
    observer = _Observer()
    pm.register(observer, name="test-observer")
    try:
        config = _write(train_config, tmp_path / "train.yaml")
        assert main(["train", config, "trainer.max_epochs=1"]) == 0
    finally:
        pm.unregister(observer)
    ((run_dir, metrics),) = observer.seen
    assert run_dir == next((tmp_path / "logs").iterdir())
    assert metrics == json.loads((run_dir / "metrics.json").read_text())[-1]["metrics"]


def test_validate_and_predict_commands(
    train_config: dict[str, Any], mock_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    validate_config = {
        "pipeline": "validate",
        "run": train_config["run"],
        "trainer": {"accelerator": "cpu"},
        "data": train_config["data"],
        "transforms_val": train_config["transforms_val"],
        "extractor": {"name": "tiny"},
    }
    assert main(["validate", _write(validate_config, tmp_path / "v.yaml"), "metrics.cmc_top_k=[1,2]"]) == 0
    out = capsys.readouterr().out
    assert "cmc/2" in out
    assert "run folder:" in out
    predict_config = {
        "pipeline": "predict",
        "data": {"data_dir": str(mock_root / "images")},
        "save_dir": str(tmp_path / "pred"),
        "transforms_predict": train_config["transforms_val"],
        "extractor": {"name": "tiny"},
    }
    assert main(["predict", _write(predict_config, tmp_path / "p.yaml"), "trainer.accelerator=cpu"]) == 0
    assert "wrote 24 embeddings of size 8" in capsys.readouterr().out
    assert (tmp_path / "pred" / "embeddings.npy").is_file()


def test_hook_module_is_import_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, omlcore_lightning.hooks, omlcore_lightning;"
        "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
