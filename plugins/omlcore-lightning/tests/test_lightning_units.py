"""The building blocks: batch sharding and seeding, the validation callback with several loaders, atomic files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning_fakes import TinyExtractor
from omlcore_lightning import ExtractorModule, MetricValCallback
from omlcore_lightning.callbacks import AtomicCheckpointIO
from omlcore_lightning.data import SeededItems, ShuffledBatches, TrainBatches, TrainProgress, derive_seed, seed_all
from omlcore_lightning.run import RunFolder
from omlcore_metrics import EmbeddingMetrics
from torch.utils.data import DataLoader, Dataset

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # lightning 2.6 on torch 2.14, not ours


class _ListSampler:
    """A batch sampler that knows nothing about DDP: 7 batches drawn from numpy's global generator."""

    def __iter__(self) -> Any:
        import numpy as np

        order = np.random.permutation(28)
        return iter(order.reshape(7, 4).tolist())

    def __len__(self) -> int:
        return 7


def test_a_sampler_that_does_not_shard_itself_is_sharded() -> None:
    progress = TrainProgress(epoch=3)
    ranks = [TrainBatches(_ListSampler(), progress, seed=5, world_size=2, rank=r) for r in (0, 1)]
    single = TrainBatches(_ListSampler(), progress, seed=5)
    assert [len(r) for r in ranks] == [3, 3]
    assert len(single) == 7
    everything = single.epoch_batches(3)
    shards = [r.epoch_batches(3) for r in ranks]
    assert shards[0] == everything[0:6:2]
    assert shards[1] == everything[1:6:2]
    assert single.epoch_batches(4) != everything  # another epoch, other batches
    assert single.epoch_batches(3) == everything  # whatever the global random state in between


def test_batches_resume_and_carry_item_seeds() -> None:
    progress = TrainProgress(epoch=1, consumed=0)
    batches = TrainBatches(ShuffledBatches(20, 5, seed=2), progress, seed=9)
    full = list(batches)
    assert len(full) == 4
    assert all(len(b) == 5 for b in full)
    assert sorted(i for b in full for i, _ in b) == list(range(20))
    assert full[1][2][1] == derive_seed(9, 1, 0, 1, 2)
    progress.consumed = 3  # resumed after 3 batches of epoch 1
    assert list(batches) == full[3:]


def test_shuffled_batches_need_one_full_batch() -> None:
    with pytest.raises(ValueError, match="larger than the 3 training samples"):
        ShuffledBatches(3, 5)


class _Randomised(Dataset[float]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> float:
        return float(torch.rand(()))


def test_items_are_loaded_under_their_seed() -> None:
    items = SeededItems(_Randomised())
    assert items[(2, 11)] == items[(2, 11)]
    assert items[(2, 11)] != items[(2, 12)]
    assert len(items) == 4


def test_item_seeding_never_probes_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under Lightning (PYTORCH_NVML_BASED_CUDA_CHECK=1) every torch.cuda.is_available() call loads NVML again;
    # seed_all runs once per training item, so it must not ask.
    def probe() -> bool:
        raise AssertionError("seed_all called torch.cuda.is_available()")

    monkeypatch.setattr(torch.cuda, "is_available", probe)
    seed_all(5)
    first = torch.rand(3)
    seed_all(5)
    assert torch.equal(first, torch.rand(3))


class _Points(Dataset[dict[str, Any]]):
    """Validation items whose 'image' is a point: labels in pairs, every item query and gallery."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.labels = torch.arange(n) // 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_tensors": self.x[i], "labels": self.labels[i], "is_query": True, "is_gallery": True, "idx": i}


def _direct(model: TinyExtractor, data: _Points) -> dict[str, float]:
    metric = EmbeddingMetrics(cmc_top_k=(1,), map_top_k=(2,))
    with torch.no_grad():
        emb = model.eval().extract(data.x)
    metric.update({"embeddings": emb, "labels": data.labels, "is_query": torch.ones(len(data), dtype=torch.bool),
                   "is_gallery": torch.ones(len(data), dtype=torch.bool)})  # fmt: skip
    return metric.compute()


def test_several_validation_loaders_each_with_its_metric(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyExtractor()
    first, second = _Points(10, 1), _Points(6, 2)
    callbacks = [
        MetricValCallback(EmbeddingMetrics(cmc_top_k=(1,), map_top_k=(2,)), loader_idx=0),
        MetricValCallback(EmbeddingMetrics(cmc_top_k=(1,), map_top_k=(2,)), loader_idx=1, prefix="shop/"),
    ]
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False
    )
    out = trainer.validate(ExtractorModule(model), [DataLoader(first, batch_size=3), DataLoader(second, batch_size=4)])
    assert callbacks[0].latest == pytest.approx(_direct(model, first))
    assert callbacks[1].latest == pytest.approx({f"shop/{k}": v for k, v in _direct(model, second).items()})
    logged = {k: v for d in out for k, v in d.items()}
    assert logged["shop/OVERALL/cmc/1"] == pytest.approx(callbacks[1].latest["shop/OVERALL/cmc/1"])
    assert logged["OVERALL/map/2"] == pytest.approx(callbacks[0].latest["OVERALL/map/2"])


def test_a_loader_that_drops_samples_is_refused() -> None:
    callback = MetricValCallback(EmbeddingMetrics(cmc_top_k=(1,)))
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[callback], enable_progress_bar=False, enable_model_summary=False
    )
    loader = DataLoader(_Points(10, 1), batch_size=4, drop_last=True)
    with pytest.raises(RuntimeError, match="expected 10 distinct samples"):
        trainer.validate(ExtractorModule(TinyExtractor()), loader)


def test_checkpoint_files_are_replaced_atomically(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(2)}, target)
    with pytest.raises(AttributeError, match="pickle"):
        io.save_checkpoint({"bad": lambda: 0}, target)  # cannot be pickled: the old file stays
    assert torch.equal(torch.load(target)["a"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_run_folder_names(tmp_path: Path) -> None:
    a = RunFolder.create(tmp_path, None, "my run/1")
    b = RunFolder.create(tmp_path, None, "my run/1")
    assert a.path.name.endswith("_my_run_1")
    assert b.path.name == a.path.name + "-2"
    assert RunFolder.create(tmp_path, "named", "").path == tmp_path / "named"


def test_send_figures_survives_a_failing_sink_and_closes_each_figure() -> None:
    import matplotlib.pyplot as plt
    from omlcore_lightning.callbacks import send_figures

    figures = [plt.figure(), plt.figure()]
    got: list[tuple[str, int]] = []

    def broken(figure: Any, title: str, step: int) -> None:
        raise ConnectionError("server gone")

    def keep(figure: Any, title: str, step: int) -> None:
        got.append((title, step))

    with pytest.warns(UserWarning, match=r"logging the figure 'a' failed: ConnectionError: server gone"):
        send_figures(figures, ["a", "b"], [broken, keep], 3)
    assert got == [("a", 3), ("b", 3)]
    assert not any(plt.fignum_exists(f.number) for f in figures)
