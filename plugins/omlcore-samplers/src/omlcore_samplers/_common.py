"""Machinery shared by the samplers: label grouping, vectorised draws, epochs and DDP sharding.

Nothing here is part of the public API; the sampler classes in :mod:`omlcore_samplers` are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

_SHOWN = 5


def show(values: Sequence[Any] | NDArray[Any], limit: int = _SHOWN) -> str:
    """``1, 2, 3`` or ``1, 2, 3, 4, 5 and 7 more``: a bounded list for error messages."""
    items = [str(v) for v in list(values[:limit])]
    text = ", ".join(items)
    return text if len(values) <= limit else f"{text} and {len(values) - limit} more"


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``; ``ValueError``/``TypeError`` otherwise.

    The registry validates config arguments before a sampler is built; this repeats the check for code
    that constructs a sampler directly.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class LabelGroups:
    """The dataset indices grouped by label, built once with one stable argsort.

    Attributes:
        labels: the distinct labels, ascending (``int64``, length ``L``).
        counts: how many dataset items each label has.
        starts: where each label's items begin in ``order``.
        order: dataset indices sorted by label (stable, so ascending within a label).
    """

    def __init__(self, labels: Sequence[int] | NDArray[Any]) -> None:
        array = np.asarray(labels)
        if array.ndim != 1:
            raise ValueError(f"labels must be a flat sequence of ints, got an array of shape {array.shape}")
        if array.size == 0:
            raise ValueError("labels is empty: the sampler needs the label of every dataset item")
        if array.dtype.kind not in "iu":
            if array.dtype.kind == "b" or not np.issubdtype(array.dtype, np.number):
                raise TypeError(f"labels must be ints, got values of dtype {array.dtype}")
            if not np.all(np.mod(array, 1) == 0):
                bad = array[np.mod(array, 1) != 0]
                raise TypeError(f"labels must be ints, got non-integer values {show(bad)}")
        array = array.astype(np.int64, copy=False)
        self.size = int(array.size)
        self.order: IntArray = np.argsort(array, kind="stable").astype(np.int64, copy=False)
        sorted_labels = array[self.order]
        first = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        self.labels: IntArray = sorted_labels[first]
        self.starts: IntArray = first.astype(np.int64, copy=False)
        self.counts: IntArray = np.diff(np.r_[first, self.size]).astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self.labels.size)

    def require_pairs(self) -> None:
        """Every label has at least 2 items, or ``ValueError`` naming the offenders."""
        single = np.flatnonzero(self.counts < 2)
        if single.size:
            raise ValueError(
                f"{single.size} of {len(self)} labels have fewer than 2 samples (labels {show(self.labels[single])}); "
                "every label needs at least 2 so that each item in a batch has a positive. "
                "Remove those items from the training data or merge their labels."
            )

    def index_of(self, labels: IntArray) -> IntArray:
        """Positions of ``labels`` (all present) in :attr:`labels`."""
        return np.searchsorted(self.labels, labels).astype(np.int64, copy=False)


def sample_per_row(rng: np.random.Generator, sizes: IntArray, k: int) -> IntArray:
    """For each row ``r``, ``k`` offsets into ``range(sizes[r])``, drawn as OML's ``smart_sample`` does.

    A row with ``sizes[r] >= k`` gets ``k`` distinct offsets, a uniformly random subset in random order.
    A row with ``sizes[r] < k`` gets every offset once, in random order, followed by ``k - sizes[r]``
    offsets drawn with replacement. Rows are independent. Vectorised over rows (Robert Floyd's
    subset algorithm, one step per column), so the cost is ``O(rows * k^2)`` with no Python loop over rows.
    """
    rows = int(sizes.size)
    out = np.empty((rows, k), dtype=np.int64)
    if rows == 0 or k == 0:
        return out
    distinct = np.minimum(sizes, k)
    for step in range(k):
        # Floyd: for j = m - d + step, draw t in [0, j]; keep t unless already taken, else take j.
        active = step < distinct
        j = sizes - distinct + step
        t = rng.integers(0, np.where(active, j, 0) + 1)
        if step:
            taken = (out[:, :step] == t[:, None]).any(axis=1)
            t = np.where(taken, j, t)
        repeat = rng.integers(0, sizes)  # rows past their distinct part draw with replacement
        out[:, step] = np.where(active, t, repeat)
    # Floyd's subset is not in random order: shuffle the distinct part of each row, keep repeats last.
    keys = rng.random((rows, k))
    keys[np.arange(k)[None, :] >= distinct[:, None]] = 2.0
    shuffle = np.argsort(keys, axis=1, kind="stable")
    return np.take_along_axis(out, shuffle, axis=1)


def weighted_top_k(rng: np.random.Generator, weights: NDArray[np.float64], rows: int, k: int) -> IntArray:
    """``rows`` independent draws of ``k`` of ``len(weights)`` items without replacement, in draw order.

    Each row is distributed as successive draws proportional to ``weights`` among the items not drawn
    yet (what ``numpy.random.choice(n, k, replace=False, p=weights)`` does), using exponential keys
    ``E / w`` and keeping the ``k`` smallest. Items with weight 0 are never drawn.
    """
    n = int(weights.size)
    out = np.empty((rows, k), dtype=np.int64)
    chunk = max(1, 4_000_000 // max(n, 1))
    with np.errstate(divide="ignore"):
        inverse = np.where(weights > 0, 1.0 / weights, np.inf)
    for begin in range(0, rows, chunk):
        end = min(rows, begin + chunk)
        keys = rng.standard_exponential((end - begin, n)) * inverse
        if k < n:
            part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (end - begin, n)).copy()
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
        out[begin:end] = np.take_along_axis(part, order, axis=1)
    return out


def distributed_defaults(world_size: int | None, rank: int | None) -> tuple[int, int]:
    """``(world_size, rank)``: the explicit values, else torch.distributed's if it is initialised, else (1, 0).

    torch is not imported here: if the process has not imported it, no process group can exist.
    """
    torch = sys.modules.get("torch")
    dist: Any = getattr(torch, "distributed", None) if torch is not None else None
    active = dist is not None and dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = int(dist.get_world_size()) if active else 1
    if rank is None:
        rank = int(dist.get_rank()) if active else 0
    world_size = check_int("world_size", world_size, 1)
    rank = check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size, got rank {rank} with world_size {world_size}")
    return world_size, rank


class EpochSampler:
    """Base of the samplers: seeded per-epoch batch lists, sharded across DDP ranks.

    A subclass sets ``self._total`` (batches in one epoch before sharding) and ``self._batch_size`` and
    implements :meth:`_epoch_batches`, which returns the whole epoch as an ``(total, batch_size)`` array
    of dataset indices drawn from the generator it is given. Every rank draws the same array from the
    same ``(seed, epoch)`` and keeps its own slice.
    """

    _total: int
    _batch_size: int

    def _setup(self, seed: int, world_size: int | None, rank: int | None) -> None:
        self.seed = check_int("seed", seed, 0)
        self.world_size, self.rank = distributed_defaults(world_size, rank)
        if self._total < self.world_size:
            raise ValueError(
                f"an epoch has {self._total} batches, fewer than the {self.world_size} DDP ranks: every rank "
                "needs at least one batch (use fewer labels per batch or fewer ranks)"
            )
        self._next_epoch = 0

    # ---- the public surface ------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Items per batch."""
        return self._batch_size

    @property
    def epoch(self) -> int:
        """The epoch the next pass draws."""
        return self._next_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw ``epoch``'s batches (as :class:`torch.utils.data.DistributedSampler`).

        Without calls to ``set_epoch`` the passes draw epochs 0, 1, 2, ... in turn.
        """
        self._next_epoch = check_int("epoch", epoch, 0)

    def __len__(self) -> int:
        """Batches this rank yields per epoch: ``total // world_size``."""
        return self._total // self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._next_epoch
        self._next_epoch = epoch + 1  # a pass without set_epoch moves on to the next epoch
        return iter(self.batches(epoch))

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (does not change :attr:`epoch`)."""
        epoch = check_int("epoch", epoch, 0)
        rng = np.random.default_rng([self.seed, epoch])
        everything = self._epoch_batches(rng)
        used = len(self) * self.world_size
        mine: list[list[int]] = everything[self.rank : used : self.world_size].tolist()
        return mine

    def _epoch_batches(self, rng: np.random.Generator) -> IntArray:
        raise NotImplementedError
