"""The train pipeline: the run folder, loggers, resuming, Ctrl-C, freezing, schedulers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning_fakes import RecordingLogger
from omlcore_lightning import train

from omlcore.config import load_config


def _state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return state


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _same_weights(a: Path, b: Path) -> bool:
    return _equal(_state(a), _state(b))


def test_a_run_writes_one_folder(train_config: dict[str, Any], tmp_path: Path) -> None:
    train_config["run"]["postfix"] = "tiny run"
    train_config["metrics"]["log_images"] = True
    result = train(train_config, verbose=False)
    runs = list((tmp_path / "logs").iterdir())
    assert runs == [result.run_dir]
    assert result.run_dir.name.endswith("_tiny_run")
    assert not result.interrupted
    # the resolved config is a valid config that reproduces the run
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2
    assert saved["checkpoint"]["monitor"] == "OVERALL/cmc/1"
    assert load_config(result.run_dir / "config.yaml").pipeline == "train"  # type: ignore[attr-defined]
    # one metrics record per validation, in order
    records = json.loads((result.run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert records == result.history
    assert set(records[0]["metrics"]) == {
        "OVERALL/cmc/1", "OVERALL/cmc/3", "OVERALL/precision/3", "OVERALL/map/3", "OVERALL/pcf/0.5"
    }  # fmt: skip
    assert all(r["train_loss"] >= 0 for r in records)
    # wall-clock seconds of fit at each record: positive and growing
    assert 0 < records[0]["elapsed_s"] < records[1]["elapsed_s"]
    assert result.metrics == records[-1]["metrics"]
    # checkpoints: best and last
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert result.best_checkpoint == result.run_dir / "checkpoints" / "best.ckpt"
    tensors = {k for k, v in _state(result.run_dir / "checkpoints" / "last.ckpt").items() if torch.is_tensor(v)}
    assert {k.split(".")[0] for k in tensors} == {"model"}
    # figures of the worst queries per epoch
    figures = sorted(
        p.relative_to(result.run_dir / "figures").as_posix() for p in (result.run_dir / "figures").rglob("*.png")
    )
    assert "epoch_000/worst_queries_OVERALL_cmc_1.png" in figures
    assert "epoch_001/worst_queries_OVERALL_map_3.png" in figures
    assert not list(result.run_dir.rglob("*.tmp"))


def _results(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without their wall-clock time: what a same-seed run must reproduce exactly."""
    return [{k: v for k, v in record.items() if k != "elapsed_s"} for record in history]


def test_same_seed_same_run_and_another_seed_differs(train_config: dict[str, Any]) -> None:
    a = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    b = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    c = train(train_config, ["trainer.max_epochs=1", "seed=4"], verbose=False)
    assert a.run_dir != b.run_dir
    assert _results(a.history) == _results(b.history)
    assert a.last_checkpoint
    assert b.last_checkpoint
    assert c.last_checkpoint
    assert _same_weights(a.last_checkpoint, b.last_checkpoint)
    assert not _same_weights(a.last_checkpoint, c.last_checkpoint)


def test_loader_workers_do_not_change_the_run(train_config: dict[str, Any]) -> None:
    main = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    workers = train(train_config, ["trainer.max_epochs=1", "data.num_workers=2"], verbose=False)
    assert _results(workers.history) == _results(main.history)
    assert main.last_checkpoint is not None
    assert workers.last_checkpoint is not None
    assert _same_weights(main.last_checkpoint, workers.last_checkpoint)


def test_resume_gives_the_uninterrupted_results(train_config: dict[str, Any]) -> None:
    full = train(train_config, verbose=False)
    first = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    assert len(first.history) == 1
    resumed = train(first.run_dir / "config.yaml", ["trainer.max_epochs=2"], resume=first.run_dir, verbose=False)
    assert resumed.run_dir == first.run_dir
    assert _results(resumed.history) == _results(full.history)  # same metrics and training loss, epoch by epoch
    # the wall clock goes on from where the first part stopped
    assert resumed.history[0] == first.history[0]
    assert resumed.history[1]["elapsed_s"] > first.history[0]["elapsed_s"]
    assert resumed.last_checkpoint
    assert full.last_checkpoint
    assert _same_weights(resumed.last_checkpoint, full.last_checkpoint)
    saved = yaml.safe_load((first.run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2


class _CtrlC(Callback):
    """Sends this process SIGINT at the end of one training batch, as a terminal's Ctrl-C would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("at", [(1, 0), (0, 1)], ids=["mid-epoch", "last-batch"])
def test_ctrl_c_saves_a_checkpoint_and_resuming_finishes_the_same_run(
    train_config: dict[str, Any], at: tuple[int, int]
) -> None:
    full = train(train_config, verbose=False)
    stopped = train(train_config, callbacks=[_CtrlC(*at)], verbose=False)
    assert stopped.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    last = stopped.run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    if at == (1, 0):  # stopped after the first batch of epoch 1
        assert ckpt["global_step"] == 3
        assert [r["epoch"] for r in stopped.history] == [0]
    else:  # the last batch of epoch 0: the epoch (and its validation) is finished first
        assert ckpt["global_step"] == 2
        assert [r["epoch"] for r in stopped.history] == [0]
    assert not list(stopped.run_dir.rglob("*.tmp"))
    resumed = train(train_config, resume=stopped.run_dir, verbose=False)
    assert not resumed.interrupted
    assert _results(resumed.history) == _results(full.history)
    assert resumed.last_checkpoint
    assert full.last_checkpoint
    assert _same_weights(resumed.last_checkpoint, full.last_checkpoint)


class _Snapshots(Callback):
    def __init__(self) -> None:
        self.model: list[dict[str, torch.Tensor]] = []
        self.loss: list[torch.Tensor] = []
        self.trainable: list[bool] = []

    def _take(self, pl_module: Any) -> None:
        self.model.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})
        self.loss.append(pl_module.criterion.centres.detach().clone())

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._take(pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._take(pl_module)
        self.trainable.append(all(p.requires_grad for p in pl_module.model.parameters()))


def test_freeze_n_epochs_freezes_the_extractor_then_unfreezes_it(train_config: dict[str, Any]) -> None:
    train_config["loss"] = {"name": "centre"}
    train_config["trainer"]["max_epochs"] = 3
    snaps = _Snapshots()
    train(train_config, ["trainer.freeze_n_epochs=2"], callbacks=[snaps], verbose=False)
    start, after0, after1, after2 = snaps.model
    for key in start:  # weights and batch-norm statistics untouched during the frozen epochs
        assert torch.equal(start[key], after0[key]), key
        assert torch.equal(start[key], after1[key]), key
    assert not torch.equal(start["fc.weight"], after2["fc.weight"])  # trained once unfrozen
    assert not torch.equal(start["bn.running_mean"], after2["bn.running_mean"])
    assert not torch.equal(snaps.loss[0], snaps.loss[1])  # the loss's parameters learn while frozen
    assert snaps.trainable == [False, False, True]


def test_without_freezing_the_first_epoch_trains_the_extractor(train_config: dict[str, Any]) -> None:
    train_config["loss"] = {"name": "centre"}
    snaps = _Snapshots()
    train(train_config, ["trainer.max_epochs=1"], callbacks=[snaps], verbose=False)
    assert not torch.equal(snaps.model[0]["fc.weight"], snaps.model[1]["fc.weight"])


@pytest.mark.parametrize(("interval", "frequency", "steps"), [("step", 2, 4), ("step", 1, 4), ("epoch", 1, 2)])
def test_scheduler_interval_and_frequency(
    train_config: dict[str, Any], interval: str, frequency: int, steps: int
) -> None:
    train_config["scheduling"] = {
        "scheduler": {"name": "step", "args": {"step_size": 1, "gamma": 0.5}},
        "interval": interval,
        "frequency": frequency,
    }
    result = train(train_config, verbose=False)
    assert result.last_checkpoint is not None
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    # 2 epochs of 2 batches: 4 steps or 2 epochs, the scheduler stepping every `frequency` of them
    assert lr == pytest.approx(0.05 * 0.5 ** (steps // frequency))


def test_reduce_on_plateau_watches_a_validation_metric(train_config: dict[str, Any]) -> None:
    train_config["scheduling"] = {
        "scheduler": {"name": "reduce_on_plateau", "args": {"mode": "max", "patience": 0, "factor": 0.1}},
        "interval": "epoch",
        "monitor": "OVERALL/map/3",
    }
    result = train(train_config, ["trainer.max_epochs=3"], verbose=False)
    assert len(result.history) == 3


def test_sampler_null_uses_shuffled_batches(train_config: dict[str, Any]) -> None:
    train_config["sampler"] = None
    train_config["data"]["batch_size_train"] = 5
    result = train(train_config, ["trainer.max_epochs=1"], verbose=False)
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # 12 training images // 5


def test_train_loss_as_checkpoint_monitor(train_config: dict[str, Any]) -> None:
    result = train(train_config, ["checkpoint.monitor=train/loss", "checkpoint.mode=min"], verbose=False)
    assert result.best_checkpoint is not None
    assert result.best_checkpoint.is_file()


def test_one_logger_and_a_list_of_loggers(train_config: dict[str, Any]) -> None:
    train_config["metrics"]["log_images"] = True
    train_config["logger"] = {"name": "recording"}
    one = train(train_config, verbose=False)
    (single,) = RecordingLogger.instances
    assert single.run_dir == one.run_dir
    assert single.params["trainer.max_epochs"] == 2
    assert single.params["loss.args.miner.name"] == "hard_triplets"
    assert single.status == "success"
    assert {"config.yaml", "df.csv", "metrics.json"} <= set(single.artifacts)
    assert ("worst_queries/OVERALL/cmc/1", 0) in single.figures
    assert ("worst_queries/OVERALL/cmc/1", 1) in single.figures
    logged = {name: value for metrics, _ in single.metrics for name, value in metrics.items()}
    assert logged["OVERALL/cmc/1"] == one.metrics["OVERALL/cmc/1"]
    assert "train/loss" in logged

    RecordingLogger.instances.clear()
    train_config["logger"] = [
        {"name": "recording", "args": {"tag": "a"}},
        {"name": "recording", "args": {"tag": "b", "native": True}},
    ]
    two = train(train_config, verbose=False)
    bridge, native = RecordingLogger.instances
    assert bridge.status == native.status == "success"
    assert bridge.figures == native.figures
    assert len(native.figures) >= 2
    assert any("OVERALL/cmc/1" in m for m, _ in bridge.metrics)
    assert native.metrics == []  # its scalars went to its own Lightning logger
    csv = (two.run_dir / "csv_b" / "metrics.csv").read_text().splitlines()
    assert "OVERALL/cmc/1" in csv[0].split(",")


def test_a_logger_that_cannot_start_leaves_no_run_behind(train_config: dict[str, Any], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    train_config["logger"] = [
        {"name": "recording", "args": {"tag": "a"}},
        {"name": "recording", "args": {"fail": True}},
    ]
    with pytest.raises(Exception, match="no credentials"):
        train(train_config, verbose=False)
    (started,) = RecordingLogger.instances
    assert started.status == "failed"  # the logger that did start is closed
    assert not logs.exists() or list(logs.iterdir()) == []  # no half-made run folder
    # a named folder that existed before is kept, with what it held, and holds no run afterwards
    named = logs / "mine"
    named.mkdir(parents=True)
    (named / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="no credentials"):
        train(train_config, ["run.logs_folder=mine"], verbose=False)
    assert (named / "notes.txt").read_text() == "keep me"
    assert not (named / "config.yaml").exists()
    train_config["logger"] = None
    result = train(train_config, ["run.logs_folder=mine", "trainer.max_epochs=1"], verbose=False)
    assert result.run_dir == named
