"""Data loading for the pipelines: reproducible, resumable, DDP-aware training batches and padded
distributed validation.

Reproducibility does not depend on how a run was started or resumed:

- the batches of an epoch depend only on ``(seed, epoch)``: :class:`TrainBatches` calls the batch
  sampler's ``set_epoch`` and iterates it under a random state seeded from ``(seed, epoch)``;
- every training item is loaded under a random state seeded from ``(seed, epoch, rank, batch, position)``
  (:class:`SeededItems`), so augmentations are the same whatever the number of loader workers and
  whether a batch is drawn in an uninterrupted run or after ``--resume``;
- :class:`TrainProgress` (the epoch and the batches consumed in it) is saved in checkpoints through the
  loader's ``state_dict``, so a run stopped in the middle of an epoch resumes with the next batch.

Under DDP each rank takes its share of the batches: samplers that shard themselves (omlcore's samplers
read ``torch.distributed`` when they are built, and expose ``world_size``) are used as they are; any
other batch sampler is iterated identically on every rank and rank ``r`` keeps batches ``r, r + W, ...``.
Validation uses a :class:`~torch.utils.data.DistributedSampler` without shuffling, which pads the ranks to
equal length by repeating samples; the metric drops the repeats by dataset index.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "SeededItems",
    "ShuffledBatches",
    "TrainBatches",
    "TrainLoader",
    "TrainProgress",
    "derive_seed",
    "eval_loader",
    "seed_all",
    "seeded_rng",
    "train_loader",
]

_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit value from a 64-bit value."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """A seed in ``[0, 2**63)`` that depends on every part (order matters), for independent random streams."""
    h = 0x6A09E667F3BCC908
    for p in parts:
        h = _mix(h ^ (int(p) & _MASK64))
    return h >> 1


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's (legacy global) and torch's CPU random generators from one number, plus the CUDA
    generators when CUDA is in use.

    Called once per training item, so it avoids two slow paths: ``torch.manual_seed`` (before CUDA is
    initialised it queues a deferred call with a formatted stack trace) and ``torch.cuda.is_available()``
    (under Lightning, which sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, every call loads the NVML library again
    on a machine without a GPU: 1-3 ms). ``torch.cuda.is_initialized()`` is a flag lookup, and CUDA can only be
    initialised where it is available.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.manual_seed_all(seed)


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run a block under ``seed_all(seed)`` and restore the previous random states afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    seed_all(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


@dataclass
class TrainProgress:
    """Where training stands in its data: the epoch drawn and how many of its batches were consumed."""

    epoch: int = 0
    consumed: int = 0


class SeededItems(Dataset[Any]):
    """Wraps a dataset so that an item asked for as ``(index, seed)`` is loaded under that seed.

    Plain ``int`` indices are passed through unseeded (``len``, attributes and ``get_labels`` are the
    wrapped dataset's).
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            seed_all(seed)
            return self.dataset[index]
        return self.dataset[key]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ShuffledBatches:
    """Batches of ``batch_size`` from a permutation of ``range(n)`` drawn from ``(seed, epoch)``; the last
    incomplete batch is dropped (what ``sampler: null`` gives, as in OML)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        if batch_size > n:
            raise ValueError(
                f"data.batch_size_train={batch_size} is larger than the {n} training samples: "
                "no complete batch can be formed"
            )
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()


class TrainBatches:
    """The batch sampler the training loader uses: a batch sampler made reproducible, resumable and sharded.

    Yields lists of ``(dataset index, item seed)`` for :class:`SeededItems`. ``progress`` says which epoch
    to draw and how many of its batches to skip (after resuming in the middle of an epoch); it is read
    when iteration starts.
    """

    def __init__(
        self,
        sampler: Any,
        progress: TrainProgress,
        seed: int,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.sampler = sampler
        self.progress = progress
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        own = getattr(sampler, "world_size", None)
        self.shard = world_size > 1 and own != world_size
        if self.shard and own not in (None, 1):
            raise ValueError(
                f"the batch sampler {type(sampler).__name__} was built for {own} processes but the run has {world_size}"
            )
        if self.shard and len(sampler) < world_size:
            raise ValueError(
                f"the batch sampler {type(sampler).__name__} yields {len(sampler)} batch(es) per epoch, fewer "
                f"than the {world_size} processes: every process needs at least one"
            )

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.world_size if self.shard else n

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (plain dataset indices)."""
        set_epoch: Callable[[int], None] | None = getattr(self.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        with seeded_rng(derive_seed(self.seed, epoch, 0x5A)):
            batches = [[int(i) for i in batch] for batch in self.sampler]
        if self.shard:
            used = len(batches) // self.world_size * self.world_size
            batches = batches[self.rank : used : self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # A generator: nothing runs until the first batch is asked for, when `progress` is up to date.
        epoch, skip = self.progress.epoch, self.progress.consumed
        for b, batch in enumerate(self.epoch_batches(epoch)):
            if b < skip:
                continue
            yield [(i, derive_seed(self.seed, epoch, self.rank, b, pos)) for pos, i in enumerate(batch)]


class TrainLoader(DataLoader[Any]):
    """A training ``DataLoader`` whose position in the data is saved in Lightning checkpoints."""

    progress: TrainProgress

    def state_dict(self) -> dict[str, int]:
        """The epoch and the batches consumed in it."""
        return {"epoch": self.progress.epoch, "consumed": self.progress.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position."""
        self.progress.epoch = int(state["epoch"])
        self.progress.consumed = int(state["consumed"])


def train_loader(
    dataset: Dataset[Any],
    sampler: Any,
    *,
    progress: TrainProgress,
    seed: int,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
) -> TrainLoader:
    """The training loader over ``dataset`` with the batches of ``sampler`` (see :class:`TrainBatches`)."""
    loader = TrainLoader(
        SeededItems(dataset),
        batch_sampler=TrainBatches(sampler, progress, seed, world_size, rank),
        num_workers=num_workers,
        persistent_workers=False,
    )
    loader.progress = progress
    return loader


def eval_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
) -> DataLoader[Any]:
    """A loader in dataset order; under DDP each rank gets an interleaved, padded share."""
    sampler: DistributedSampler[Any] | None = None
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=num_workers)
