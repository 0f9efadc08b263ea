"""``train_postprocessor`` as ``omlcore train`` runs: experiment loggers (TensorBoard read back from its
event files, a logger that cannot start), ``--resume`` giving the uninterrupted run's records, Ctrl-C, and
re-ranking on the module's device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omlcore_lightning", reason="omlcore-lightning (the [pipelines] extra) is not installed")
pytest.importorskip("omlcore_images", reason="omlcore-images is not installed")

import torch
from lightning.pytorch.callbacks import Callback
from omlcore_reranking.lightning_parts import RerankValidation
from omlcore_reranking.pipeline import load_train_postprocessor_config, train_postprocessor
from reranking_helpers import FailingLogger, TinyConvExtractor, pipeline_config

from omlcore.errors import ConfigError, ConfigValidationError


@pytest.fixture
def tiny(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((run_dir / "metrics.json").read_text())
    return records


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return state


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- experiment loggers ----------------------------------------------------------------------------


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _hparams(folder: Path) -> dict[str, Any]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}


def test_tensorboard_gets_the_config_every_validation_and_the_loss(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    pytest.importorskip("omlcore_tensorboard", reason="omlcore-tensorboard is not installed")
    cfg = pipeline_config(mock_root, tmp_path, logger=[{"name": "tensorboard", "args": {"flush_secs": 1}}])
    result = train_postprocessor(cfg, verbose=False)
    folder = result.run_dir / "tensorboard"
    stored = _scalars(folder)
    records = _records(result.run_dir)
    assert [r["epoch"] for r in records] == [None, 0, 1]
    for name in ("OVERALL/cmc/1", "OVERALL/map/3"):
        assert stored[f"extractor/{name}"] == [(0, pytest.approx(records[0][name], rel=1e-6))]  # no re-ranking
        steps = [s for s, _ in stored[name]]
        assert steps == sorted(set(steps))  # one value per validation, in order
        assert [v for _, v in stored[name]] == pytest.approx([records[1][name], records[2][name]], rel=1e-6)
    losses = [v for _, v in stored["train/loss_epoch"]]
    assert losses == pytest.approx([records[1]["train_loss"], records[2]["train_loss"]], rel=1e-5)
    params = _hparams(folder)
    assert params["trainer.max_epochs"] == 2
    assert params["postprocessor.args.top_n"] == 3
    assert params["pairwise_model.name"] == "concat_siamese"
    assert (folder / "artifacts" / "config.yaml").read_text() == (result.run_dir / "config.yaml").read_text()
    assert (folder / "artifacts" / "metrics.json").read_text() == (result.run_dir / "metrics.json").read_text()


def test_log_images_draws_the_worst_queries_after_reranking(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    pytest.importorskip("omlcore_tensorboard", reason="omlcore-tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = pipeline_config(mock_root, tmp_path, logger={"name": "tensorboard", "args": {"flush_secs": 1}})
    cfg["metrics"] = {**cfg["metrics"], "log_images": True, "metrics_to_exclude_from_visualization": ["map"]}
    result = train_postprocessor(cfg, verbose=False)
    saved = sorted(str(f.relative_to(result.run_dir / "figures")) for f in (result.run_dir / "figures").rglob("*"))
    assert saved == [
        "epoch_000",
        "epoch_000/worst_queries_OVERALL_cmc_1.png",
        "epoch_000/worst_queries_OVERALL_cmc_3.png",
        "epoch_001",
        "epoch_001/worst_queries_OVERALL_cmc_1.png",
        "epoch_001/worst_queries_OVERALL_cmc_3.png",
    ]
    png = (result.run_dir / "figures" / "epoch_001" / "worst_queries_OVERALL_cmc_1.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    acc = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert [i.step for i in acc.Images("worst_queries/OVERALL/cmc/1")] == [0, 1]


def test_the_figures_show_the_reranked_order(mock_root: Path, installed_registry: Any) -> None:
    from omlcore_images.datasets import get_retrieval_images_datasets
    from omlcore_metrics.functional import retrieval_metrics
    from omlcore_metrics.report import worst_queries
    from omlcore_reranking import LinearSiamese

    from omlcore.schemas import ComponentSpec, MetricsSection

    _, val = get_retrieval_images_datasets(mock_root)
    assert val is not None
    emb = torch.randn(len(val), 4, generator=torch.Generator().manual_seed(0))
    validation = RerankValidation(
        ComponentSpec(name="pairwise_embeddings", args={"top_n": 4}),
        emb,
        val,
        MetricsSection(cmc_top_k=[1], precision_top_k=[], map_top_k=[], pcf_variance=[], log_images=True),
        verbose=False,
    )
    torch.manual_seed(3)
    result = validation.rerank(LinearSiamese(4, identity_init=False))
    figures, titles = validation.figures(result)
    assert titles == ["OVERALL/cmc/1"]
    worst = worst_queries(result, "cmc/1", 5)
    cells = figures[0].axes
    per_row = len(cells) // len(worst)
    labels = val.get_labels()
    rows, width = result.retrieved_rows(), min(5, result.distances.shape[1])
    for r, qpos in enumerate(worst):  # each row: the query, then its results in the re-ranked order
        row = cells[r * per_row : (r + 1) * per_row]
        assert row[0].get_title().startswith(f"query (row {int(result.query_rows[qpos])})")
        assert row[0].images  # drawn from the dataset's image file
        for i in range(width):
            g, d = int(rows[qpos, i]), float(result.distances[qpos, i])
            assert row[1 + i].get_title() == f"#{i + 1}  d={d:.3f}\nlabel {int(labels[g])}"
    before = retrieval_metrics(*validation._args(), cmc_top_k=(4,))
    assert not torch.equal(before.retrieved_rows()[worst, :width], rows[worst, :width])  # re-ranking shows
    sent: list[str] = []
    validation.figure_sinks = [lambda figure, title, step: sent.append(title)]
    validation._send_figures(result, 0)
    assert sent == ["worst_queries/OVERALL/cmc/1"]

    def broken(result: Any) -> Any:
        raise OSError("the image folder is gone")

    validation.figures = broken  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="drawing the worst-query figures failed: OSError: the image folder is gone"):
        validation._send_figures(result, 1)  # a warning: training goes on
    assert sent == ["worst_queries/OVERALL/cmc/1"]


def test_a_logger_that_cannot_start_leaves_no_run_folder(
    mock_root: Path, tmp_path: Path, tiny: None, installed_registry: Any
) -> None:
    installed_registry.register("logger", "failing", FailingLogger)
    FailingLogger.started = 0
    cfg = pipeline_config(mock_root, tmp_path, logger={"name": "failing"})
    with pytest.raises(Exception, match="no credentials"):
        train_postprocessor(cfg, verbose=False)
    assert FailingLogger.started == 1
    assert not (tmp_path / "logs" / "run").exists()  # created for this run, then removed
    # a folder that existed before is kept as it was, and holds no run
    (tmp_path / "logs" / "mine").mkdir(parents=True)
    (tmp_path / "logs" / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(Exception, match="no credentials"):
        train_postprocessor(cfg, ["run.logs_folder=mine"], verbose=False)
    assert (tmp_path / "logs" / "mine" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "logs" / "mine" / "config.yaml").exists()


# ---- resume ----------------------------------------------------------------------------------------


def test_resume_gives_the_uninterrupted_records(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    full = train_postprocessor(pipeline_config(mock_root, tmp_path), verbose=False)
    first = train_postprocessor(
        pipeline_config(mock_root, tmp_path, run={"logs_root": str(tmp_path / "logs"), "logs_folder": "part"}),
        ["trainer.max_epochs=1"],
        verbose=False,
    )
    assert [r["epoch"] for r in first.history] == [None, 0]
    resumed = train_postprocessor(
        first.run_dir / "config.yaml", ["trainer.max_epochs=2"], resume=first.run_dir, verbose=False
    )
    assert resumed.run_dir == first.run_dir
    assert resumed.history == full.history  # baseline, both epochs: metrics, steps and training losses
    assert resumed.metrics == full.metrics
    assert resumed.last_checkpoint is not None
    assert full.last_checkpoint is not None
    assert _same_weights(resumed.last_checkpoint, full.last_checkpoint)
    assert sorted(p.name for p in (first.run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


class _CtrlC(Callback):
    """Sends this process SIGINT at the end of one training batch, as a terminal's Ctrl-C would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_mid_epoch_then_resume_gives_the_uninterrupted_records(
    mock_root: Path, tmp_path: Path, tiny: None
) -> None:
    # 1 label x 3 instances per batch: several batches per epoch (pairs are mined by embeddings within a batch)
    sampler = {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}}
    full = train_postprocessor(pipeline_config(mock_root, tmp_path, sampler=sampler), verbose=False)
    assert full.history[1]["step"] >= 2, "the test needs at least 2 batches per epoch"
    run = {"logs_root": str(tmp_path / "logs"), "logs_folder": "stopped"}
    stopped = train_postprocessor(
        pipeline_config(mock_root, tmp_path, sampler=sampler, run=run), callbacks=[_CtrlC(1, 0)], verbose=False
    )
    assert stopped.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    assert [r["epoch"] for r in stopped.history] == [None, 0]
    ckpt = torch.load(stopped.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == full.history[1]["step"] + 1  # saved after the first batch of epoch 1
    resumed = train_postprocessor(stopped.run_dir / "config.yaml", resume=stopped.run_dir, verbose=False)
    assert not resumed.interrupted
    assert resumed.history == full.history
    assert resumed.last_checkpoint is not None
    assert full.last_checkpoint is not None
    assert _same_weights(resumed.last_checkpoint, full.last_checkpoint)


def test_resume_without_a_checkpoint_is_refused_up_front(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    empty = tmp_path / "logs" / "empty"
    empty.mkdir(parents=True)
    cfg = pipeline_config(mock_root, tmp_path)
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        train_postprocessor(cfg, resume=empty, verbose=False)
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "cache").exists()  # refused before any embedding was computed
    omlcore = Path(sys.executable).parent / "omlcore"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run(
        [str(omlcore), "train-postprocessor", "--resume", str(empty), "trainer.max_epochs=3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "no checkpoint to resume from" in out.stderr
    assert "last.ckpt" in out.stderr


def test_resume_with_another_model_is_refused(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    first = train_postprocessor(pipeline_config(mock_root, tmp_path), ["trainer.max_epochs=1"], verbose=False)
    other = ["pairwise_model.args.mlp_hidden_dims=[4]", "trainer.max_epochs=2"]
    with pytest.raises(ConfigError, match=r"another model .*omlcore train-postprocessor --resume"):
        train_postprocessor(first.run_dir / "config.yaml", other, resume=first.run_dir, verbose=False)
    assert [r["epoch"] for r in _records(first.run_dir)] == [None, 0]


# ---- device ----------------------------------------------------------------------------------------


class _DeviceCheck(Callback):
    """Records, at each epoch end (after the re-ranking), the module's device and the devices re-ranked on."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.device, list[torch.device]]] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        (validation,) = [cb for cb in trainer.callbacks if isinstance(cb, RerankValidation)]
        self.seen.append((pl_module.device, list(validation.devices_used)))


def test_reranking_runs_on_the_modules_device(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    check = _DeviceCheck()
    train_postprocessor(pipeline_config(mock_root, tmp_path), callbacks=[check], verbose=False)
    assert [used for _, used in check.seen] == [[check.seen[0][0]], [check.seen[0][0]] * 2]
    assert check.seen[0][0] == torch.device("cpu")


def test_rerank_metrics_passes_the_device_and_moves_the_model(mock_root: Path, installed_registry: Any) -> None:
    from omlcore_images.datasets import get_retrieval_images_datasets
    from omlcore_reranking import PairwiseImagesReranker
    from torch import nn

    built: list[PairwiseImagesReranker] = []

    class Recording(PairwiseImagesReranker):
        def __init__(self, top_n: int, pairwise_model: Any, device: str | None = None) -> None:
            super().__init__(top_n, pairwise_model, device=device)
            built.append(self)

    class Pairwise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return self.scale * (x1 - x2).flatten(1).abs().mean(1)

        def predict(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return self.forward(x1, x2)

    installed_registry.register("postprocessor", "recording_pairwise", Recording)
    from omlcore.registry import build
    from omlcore.schemas import ComponentSpec, MetricsSection

    resize = build("transform", {"name": "norm_resize_torch", "args": {"im_size": 16}})
    _, val = get_retrieval_images_datasets(mock_root, None, resize)
    assert val is not None
    validation = RerankValidation(
        ComponentSpec(name="recording_pairwise", args={"top_n": 2}),
        torch.randn(len(val), 4, generator=torch.Generator().manual_seed(0)),
        val,
        MetricsSection(cmc_top_k=[1], precision_top_k=[], map_top_k=[], pcf_variance=[]),
    )
    model = Pairwise()
    validation.rerank_metrics(model, torch.device("cpu"))
    assert built[-1].device == torch.device("cpu")
    assert validation.devices_used == [torch.device("cpu")]
    validation.rerank_metrics(model)  # no device: the postprocessor decides (where the parameters are)
    assert built[-1].device is None


def test_a_postprocessor_device_in_the_config_is_refused(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    cfg = pipeline_config(
        mock_root, tmp_path, postprocessor={"name": "pairwise_images", "args": {"top_n": 3, "device": "cpu"}}
    )
    with pytest.raises(ConfigValidationError) as info:
        load_train_postprocessor_config(cfg)
    assert "trainer's device" in {i.path: i.message for i in info.value.issues}["postprocessor.args.device"]
