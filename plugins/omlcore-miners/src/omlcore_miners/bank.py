"""Miners with a memory of earlier batches (cross-batch memory); they follow the extra-rows contract."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor

from omlcore_miners._common import (
    Memory,
    MemoryRecorder,
    all_triplets,
    check_batch,
    empty_triplets,
    n_hard_from_rows,
    parse_rank_range,
)

__all__ = ["MinerWithBank", "TripletMinerWithMemory"]


class _BatchBank:
    """A FIFO of the last ``capacity`` batches (detached features, labels)."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"bank_size_in_batches must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._batches: deque[tuple[Tensor, Tensor]] = deque(maxlen=capacity)

    @property
    def n_batches(self) -> int:
        return len(self._batches)

    def snapshot(self, like: Tensor) -> Memory:
        """The stored rows, oldest batch first, on ``like``'s device and dtype."""
        dim = like.shape[1]
        if not self._batches:
            return Memory(like.new_zeros((0, dim)), torch.zeros(0, dtype=torch.long, device=like.device))
        stored_dim = self._batches[0][0].shape[1]
        if stored_dim != dim:
            raise ValueError(f"features have {dim} columns but the bank holds rows of {stored_dim}")
        features = torch.cat([f for f, _ in self._batches]).to(device=like.device, dtype=like.dtype)
        labels = torch.cat([lab for _, lab in self._batches]).to(like.device)
        return Memory(features, labels)

    def push(self, features: Tensor, labels: Tensor) -> None:
        """Store a detached copy of the batch; the oldest batch leaves when the bank is full."""
        if features.shape[0] > 0:
            self._batches.append((features.detach().clone(), labels.clone()))

    def state(self) -> list[dict[str, Tensor]]:
        """The stored batches, oldest first (the tensors themselves, as ``torch.save`` wants them)."""
        return [{"features": f, "labels": lab} for f, lab in self._batches]

    def load(self, batches: Any, owner: str) -> None:
        """Replace the content by ``batches`` as :meth:`state` gives them; validate before changing anything."""
        if not isinstance(batches, list | tuple):
            raise ValueError(f"{owner}: the state's 'bank' must be a list of batches, got {type(batches).__name__}")
        if len(batches) > self.capacity:
            raise ValueError(
                f"{owner}: the state holds {len(batches)} batches but bank_size_in_batches is {self.capacity}; "
                f"build the miner with the bank size it was saved with"
            )
        loaded: list[tuple[Tensor, Tensor]] = []
        for i, batch in enumerate(batches):
            features = batch.get("features") if isinstance(batch, dict) else None
            labels = batch.get("labels") if isinstance(batch, dict) else None
            if not (isinstance(features, Tensor) and features.ndim == 2 and features.is_floating_point()):
                raise ValueError(f"{owner}: bank batch {i} needs 'features', a float (N, D) tensor")
            if not (isinstance(labels, Tensor) and labels.shape == (features.shape[0],)):
                raise ValueError(f"{owner}: bank batch {i} needs 'labels', a (N,) tensor matching its features")
            if loaded and features.shape[1] != loaded[0][0].shape[1]:
                raise ValueError(
                    f"{owner}: bank batch {i} has {features.shape[1]} columns, batch 0 has {loaded[0][0].shape[1]}"
                )
            loaded.append((features.detach().clone(), labels.long().clone()))
        self._batches.clear()
        self._batches.extend(loaded)


class MinerWithBank(MemoryRecorder):
    """N-hard mining over ``[batch; bank]`` with anchors from the batch (OML's ``MinerWithBank``).

    Args:
        bank_size_in_batches: how many earlier batches the bank keeps; it is used once it holds that many.
        n_positive: as in ``n_hard_triplets`` (``k`` or a 1-based range ``[first, last]``).
        n_negative: as in ``n_hard_triplets``.

    Indices ``>= B`` refer to ``last_memory()`` (the bank as it was before this batch was pushed).
    """

    def __init__(
        self, bank_size_in_batches: int, n_positive: int | list[int] = 1, n_negative: int | list[int] = 1
    ) -> None:
        self.bank_size_in_batches = bank_size_in_batches
        self.n_positive = n_positive
        self.n_negative = n_negative
        self._bank = _BatchBank(bank_size_in_batches)
        self._positive_ranks = parse_rank_range(n_positive, "n_positive")
        self._negative_ranks = parse_rank_range(n_negative, "n_negative")
        self._memory = None
        self.last_logs: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        """The bank (the earlier batches it holds), for checkpoints; see :meth:`load_state_dict`."""
        return {"bank": self._bank.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the bank saved by :meth:`state_dict` (a resumed run then mines as the original would)."""
        self._bank.load(state.get("bank") if isinstance(state, dict) else None, type(self).__name__)

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Triplets ordered by anchor, positive rank, negative rank; then the batch enters the bank."""
        labels = check_batch(features, labels)
        size = labels.shape[0]
        memory = self._bank.snapshot(features)
        if self._bank.n_batches < self._bank.capacity:
            memory = Memory(memory.features[:0], memory.labels[:0])
        self._memory = memory
        if size == 0:
            self.last_logs = {"bank_rows": float(memory.labels.numel()), "triplets": 0.0}
            return empty_triplets(features.device)
        pool_features = torch.cat([features.detach(), memory.features])
        pool_labels = torch.cat([labels, memory.labels])
        a, p, n = n_hard_from_rows(
            features, pool_features, labels, pool_labels, self._positive_ranks, self._negative_ranks
        )
        self._bank.push(features, labels)
        count = max(a.numel(), 1)
        self.last_logs = {
            "bank_rows": float(memory.labels.numel()),
            "triplets": float(a.numel()),
            "positives_from_bank": float((p >= size).sum()) / count,
            "negatives_from_bank": float((n >= size).sum()) / count,
        }
        return a, p, n


def _draw_other_label(anchor_labels: Tensor, pool_labels: Tensor, generator: torch.Generator) -> Tensor:
    """For each anchor label, a uniformly drawn index of a pool row with another label (``-1``: none).

    CPU tensors. Rows sorted by label leave, for label ``c``, the valid rows as the sorted order minus
    one contiguous block; the ``r``-th valid row is found without a per-anchor mask.
    """
    sorted_labels, order = torch.sort(pool_labels, stable=True)
    start = torch.searchsorted(sorted_labels, anchor_labels, right=False)
    stop = torch.searchsorted(sorted_labels, anchor_labels, right=True)
    n_other = pool_labels.numel() - (stop - start)
    draws = torch.rand(anchor_labels.numel(), generator=generator, dtype=torch.float64)
    r = (draws * n_other).floor().long().clamp(min=0)
    r = torch.minimum(r, (n_other - 1).clamp(min=0))
    position = torch.where(r < start, r, r + (stop - start))
    picked = order[position.clamp(max=max(pool_labels.numel() - 1, 0))] if pool_labels.numel() else position
    return torch.where(n_other > 0, picked, torch.full_like(picked, -1))


def _draw_positive_pairs(labels: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` ordered positive pairs ``(i, j)``, ``i != j``, drawn uniformly with replacement (CPU)."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    pairs = same.nonzero()
    if pairs.shape[0] == 0 or n == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    pick = torch.randint(pairs.shape[0], (n,), generator=generator)
    return pairs[pick, 0], pairs[pick, 1]


class TripletMinerWithMemory(MemoryRecorder):
    """All in-batch triplets plus random triplets mixing the batch and a memory bank (OML's miner).

    Args:
        bank_size_in_batches: how many earlier batches the bank keeps (used as soon as it holds any).
        tri_expand_k: ``E = floor(T * (tri_expand_k - 1) / 2)`` extra triplets of each mixed kind are
            drawn, ``T`` being the number of in-batch triplets; 1 adds none.
        seed: seed of the miner's own generator.

    Order: batch anchor/positive with bank negative (``E``), bank anchor/positive with batch negative
    (``E``), then all in-batch triplets. Indices ``>= B`` refer to ``last_memory()``.
    """

    def __init__(self, bank_size_in_batches: int, tri_expand_k: int = 1, seed: int = 0) -> None:
        if isinstance(tri_expand_k, bool) or not isinstance(tri_expand_k, int) or tri_expand_k < 1:
            raise ValueError(f"tri_expand_k must be an int >= 1, got {tri_expand_k!r}")
        self.bank_size_in_batches = bank_size_in_batches
        self.tri_expand_k = tri_expand_k
        self.seed = seed
        self._bank = _BatchBank(bank_size_in_batches)
        self._generator = torch.Generator().manual_seed(seed)
        self._memory = None
        self.last_logs: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        """The bank and the state of the miner's generator, for checkpoints; see :meth:`load_state_dict`."""
        return {"bank": self._bank.state(), "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved: the bank and the generator (the next draws are the same)."""
        name = type(self).__name__
        generator = state.get("generator") if isinstance(state, dict) else None
        if not isinstance(generator, Tensor) or generator.dtype != torch.uint8:
            raise ValueError(f"{name}: the state needs 'generator', a uint8 tensor from Generator.get_state()")
        self._bank.load(state.get("bank") if isinstance(state, dict) else None, name)
        self._generator.set_state(generator)

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixed triplets first, in-batch triplets last; then the batch enters the bank."""
        labels = check_batch(features, labels)
        size = labels.shape[0]
        memory = self._bank.snapshot(features)
        self._memory = memory
        device = features.device
        a0, p0, n0 = all_triplets(labels)
        extra = a0.numel() * (self.tri_expand_k - 1) // 2
        parts: list[tuple[Tensor, Tensor, Tensor]] = []
        if extra > 0 and memory.labels.numel() > 0:
            batch_labels, bank_labels = labels.cpu(), memory.labels.cpu()
            # batch anchor + positive, bank negative
            a1, p1 = _draw_positive_pairs(batch_labels, extra, self._generator)
            n1 = _draw_other_label(batch_labels[a1], bank_labels, self._generator)
            keep = n1 >= 0
            parts.append((a1[keep], p1[keep], n1[keep] + size))
            # bank anchor + positive, batch negative
            a2, p2 = _draw_positive_pairs(bank_labels, extra, self._generator)
            n2 = _draw_other_label(bank_labels[a2], batch_labels, self._generator)
            keep = n2 >= 0
            parts.append((a2[keep] + size, p2[keep] + size, n2[keep]))
        else:
            parts = [empty_triplets(torch.device("cpu")), empty_triplets(torch.device("cpu"))]
        parts.append((a0.cpu(), p0.cpu(), n0.cpu()))
        a, p, n = (torch.cat([part[i] for part in parts]).to(device) for i in range(3))
        self._bank.push(features, labels)
        self.last_logs = {
            "bank_rows": float(memory.labels.numel()),
            "original_triplets": float(a0.numel()),
            "bank_negative_triplets": float(parts[0][0].numel()),
            "bank_positive_triplets": float(parts[1][0].numel()),
        }
        if a.numel() == 0:
            return empty_triplets(device)
        return a, p, n
