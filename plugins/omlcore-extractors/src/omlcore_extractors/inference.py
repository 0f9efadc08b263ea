"""Embeddings of many inputs: batched, in dataset order, with a progress bar, optional autocast, DDP-aware.

- :func:`inference_on_dataset`: any map-style dataset whose items are tensors or dicts holding one.
- :func:`inference_on_images`: a list of image paths (read and transformed with omlcore-images).
- :func:`inference_on_csv`: every data row of a dataset CSV, in file order (bounding boxes applied).
- :func:`pairwise_dist`: the distance matrix between two sets of embeddings.

Under ``torch.distributed`` (initialised, world size > 1) each process embeds every ``world_size``-th item,
the rows are gathered, duplicates (padding) dropped by dataset index, and every process gets the full
``(N, D)`` matrix in dataset order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = [
    "Amp",
    "distributed_indices",
    "inference_on_csv",
    "inference_on_dataset",
    "inference_on_images",
    "pairwise_dist",
]

Amp = Literal["off", "fp16", "bf16"]
_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The dataset indices process ``rank`` embeds: ``rank, rank + world_size, ...``, padded (from the start
    of the dataset) so that every process has ``ceil(n / world_size)`` of them."""
    per_rank = -(-n // world_size) if n else 0
    return [(rank + i * world_size) % n for i in range(per_rank)] if n else []


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _input_of(item: Any, key: str) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, dict):
        if key not in item:
            raise KeyError(f"dataset items have no {key!r} key (keys: {', '.join(map(str, item))}); pass key=...")
        value = item[key]
        if not isinstance(value, Tensor):
            raise TypeError(f"item[{key!r}] is {type(value).__name__}, not a tensor")
        return value
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise TypeError(f"cannot find the input tensor in a dataset item of type {type(item).__name__}")


class _Indexed:
    """A dataset view yielding ``(dataset index, input tensor, item's own idx or -1)``."""

    def __init__(self, dataset: Any, key: str) -> None:
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, Tensor, int]:
        item = self.dataset[i]
        own = item.get("idx", -1) if isinstance(item, dict) else -1
        return i, _input_of(item, self.key), int(own) if isinstance(own, int) else -1


def _extract(model: nn.Module, x: Tensor) -> Tensor:
    extract = getattr(model, "extract", None)
    out: Tensor = extract(x) if callable(extract) else model(x)
    return out


def _collate(batch: list[tuple[int, Tensor, int]]) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.tensor([b[0] for b in batch], dtype=torch.long)
    own = torch.tensor([b[2] for b in batch], dtype=torch.long)
    try:
        x = torch.stack([b[1] for b in batch])
    except RuntimeError as exc:
        shapes = sorted({tuple(b[1].shape) for b in batch})
        raise ValueError(
            f"items of one batch have different shapes {shapes}: use a transform that resizes every image to "
            "one size (e.g. norm_resize_torch(im_size=224))"
        ) from exc
    return idx, x, own


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - tqdm comes with timm
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False)


@torch.no_grad()
def inference_on_dataset(
    model: nn.Module,
    dataset: Dataset[Any],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    amp: Amp = "off",
    progress: bool = False,
    key: str = "input_tensors",
    apply: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> Tensor:
    """Embeddings ``(len(dataset), D)`` (float32, on the CPU), row ``i`` for item ``i``.

    Items are tensors or dicts holding the input under ``key`` (omlcore-images' datasets: ``input_tensors``).
    The model runs in ``eval()`` mode under ``no_grad`` and is put back in its previous mode afterwards;
    it stays on its device unless ``device`` is given. ``amp`` runs it under autocast (``fp16`` is meant for
    CUDA, ``bf16`` works on CPUs too). ``apply(model, batch)`` replaces ``model.extract(batch)``.
    Under ``torch.distributed`` every process returns the full matrix (see the module docstring).
    """
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if amp not in ("off", *_AMP_DTYPES):
        raise ValueError(f"amp must be 'off', 'fp16' or 'bf16', got {amp!r}")
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    n = len(dataset)  # type: ignore[arg-type]
    rank, world = _world()
    indices = distributed_indices(n, rank, world) if world > 1 else list(range(n))
    loader: DataLoader[Any] = DataLoader(
        _Indexed(dataset, key),  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=indices,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    run = apply or _extract
    autocast = torch.autocast(dev.type, dtype=_AMP_DTYPES[amp]) if amp != "off" else nullcontext()
    bar = _progress(len(indices), progress and rank == 0, "embedding")
    was_training = model.training
    model.eval()
    outs: list[Tensor] = []
    seen: list[Tensor] = []
    try:
        for idx, x, own in loader:
            if bool((own >= 0).any()) and not torch.equal(own[own >= 0], idx[own >= 0]):
                raise RuntimeError("dataset items carry an 'idx' that differs from their position in the dataset")
            with autocast:
                emb = run(model, x.to(dev, non_blocking=True))
            outs.append(emb.float())
            seen.append(idx.to(dev))
            if bar is not None:
                bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if not outs:
        dim = int(getattr(model, "feat_dim", 0))
        return torch.empty((0, dim), dtype=torch.float32)
    emb = torch.cat(outs)
    order = torch.cat(seen)
    if world > 1:
        emb, order = _gather(emb, order, world)
    return _in_dataset_order(emb, order, n).cpu()


def _gather(emb: Tensor, order: Tensor, world: int) -> tuple[Tensor, Tensor]:
    """Every process's rows and indices (all processes embed the same number of items)."""
    import torch.distributed as dist

    embs = [torch.empty_like(emb) for _ in range(world)]
    orders = [torch.empty_like(order) for _ in range(world)]
    dist.all_gather(embs, emb.contiguous())
    dist.all_gather(orders, order.contiguous())
    return torch.cat(embs), torch.cat(orders)


def _in_dataset_order(emb: Tensor, order: Tensor, n: int) -> Tensor:
    """Rows sorted by dataset index, one per index (the first of duplicates); checks none is missing."""
    perm = torch.argsort(order, stable=True)
    ordered = order[perm]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    kept = ordered[first]
    if kept.numel() != n or not torch.equal(kept, torch.arange(n, device=kept.device)):
        present = set(kept.tolist())
        missing = [i for i in range(n) if i not in present][:5]
        raise RuntimeError(f"no embedding was computed for dataset items {missing}")
    return emb[perm[first]]


def inference_on_images(
    model: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    transform: Any = None,
    *,
    dataset_root: str | os.PathLike[str] | None = None,
    bboxes: Sequence[tuple[int, int, int, int] | None] | None = None,
    f_imread: Callable[[bytes], Any] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    amp: Amp = "off",
    progress: bool = False,
) -> Tensor:
    """Embeddings ``(len(paths), D)`` of image files, row ``i`` for ``paths[i]``.

    ``transform`` maps a decoded image to a tensor (default: ImageNet normalisation and a 224 px square
    resize, ``norm_resize_torch(im_size=224)``); the reader follows the transform (PIL for torchvision,
    OpenCV for albumentations) unless ``f_imread`` is given. ``bboxes[i]`` crops image ``i`` to
    ``(x1, y1, x2, y2)`` first. A missing or broken file raises ``ImageReadError`` naming it.
    """
    from omlcore_images.datasets import ImageBaseDataset

    if transform is None:
        from omlcore_images.transforms import norm_resize_torch

        transform = norm_resize_torch(im_size=224)
    dataset = ImageBaseDataset(
        [str(p) for p in paths], dataset_root=dataset_root, bboxes=bboxes, transform=transform, f_imread=f_imread
    )
    return inference_on_dataset(
        model,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        amp=amp,
        progress=progress,
    )


def inference_on_csv(
    model: nn.Module,
    csv: str | os.PathLike[str],
    transform: Any = None,
    *,
    root: str | os.PathLike[str] | None = None,
    use_bboxes: bool = True,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    amp: Amp = "off",
    progress: bool = False,
) -> Tensor:
    """Embeddings ``(N, D)`` of the ``N`` data rows of a dataset CSV, in file order (all splits).

    The CSV is checked first (omlcore-images' format; errors name the line and column). Relative paths
    start from ``root`` (default: the CSV's folder). Rows with ``x_1, y_1, x_2, y_2`` are cropped to their
    box unless ``use_bboxes=False``. Row ``i`` of the result pairs with data row ``i`` of the CSV, as
    ``omlcore evaluate --embeddings`` expects.
    """
    from omlcore_images.dataframe import BBOX_COLUMNS, read_dataframe
    from omlcore_images.datasets import ImageLabeledDataset

    frame = read_dataframe(Path(csv), root)
    if not use_bboxes:
        frame = frame.drop(columns=[c for c in BBOX_COLUMNS if c in frame.columns])
    if transform is None:
        from omlcore_images.transforms import norm_resize_torch

        transform = norm_resize_torch(im_size=224)
    dataset = ImageLabeledDataset(frame, frame.attrs.get("root"), transform=transform)
    return inference_on_dataset(
        model,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        amp=amp,
        progress=progress,
    )


def pairwise_dist(x1: Tensor, x2: Tensor, p: float = 2.0) -> Tensor:
    """Distances ``(N, M)`` between the rows of ``x1`` ``(N, D)`` and ``x2`` ``(M, D)`` (Minkowski ``p``)."""
    if x1.dim() != 2 or x2.dim() != 2:
        raise ValueError(f"pairwise_dist takes two 2-D tensors, got shapes {tuple(x1.shape)} and {tuple(x2.shape)}")
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"the embeddings have different sizes: {x1.shape[1]} and {x2.shape[1]}")
    if p <= 0:
        raise ValueError(f"p must be positive, got {p}")
    return torch.cdist(x1, x2, p=p)
