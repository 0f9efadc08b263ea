"""``balance``: P labels x K instances per batch, every label once per epoch (OML's ``BalanceSampler``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from omlcore_samplers._common import EpochSampler, IntArray, LabelGroups, check_int, sample_per_row, show

__all__ = ["BalanceSampler"]


class BalanceSampler(EpochSampler):
    """Batches of ``n_labels`` distinct labels with ``n_instances`` items each ("P x K" sampling).

    One epoch visits the ``L`` distinct labels in a random order, ``n_labels`` per batch, each label at
    most once; it has ``L // n_labels`` batches (the ``L % n_labels`` labels left over are not used that
    epoch). A label's ``n_instances`` items are distinct when it has that many, otherwise all its items
    followed by repeats drawn with replacement. A batch lists its labels' items label by label.

    Args:
        labels: The label of every dataset item (given by the pipeline).
        n_labels: Distinct labels per batch; ``1 < n_labels <= L``.
        n_instances: Items per label in a batch; ``> 1``.
        seed: Seed of the batches; the batches of an epoch depend on ``(seed, epoch)`` only.
        world_size: Number of DDP ranks; default: torch.distributed's if initialised, else 1.
        rank: This process's rank; default: torch.distributed's if initialised, else 0.
    """

    def __init__(
        self,
        labels: Sequence[int] | NDArray[Any],
        n_labels: Annotated[int, Field(gt=1)],
        n_instances: Annotated[int, Field(gt=1)],
        *,
        seed: Annotated[int, Field(ge=0)] = 0,
        world_size: Annotated[int, Field(ge=1)] | None = None,
        rank: Annotated[int, Field(ge=0)] | None = None,
    ) -> None:
        self.n_labels = check_int("n_labels", n_labels, 2)
        self.n_instances = check_int("n_instances", n_instances, 2)
        self._groups = LabelGroups(labels)
        n_distinct = len(self._groups)
        if self.n_labels > n_distinct:
            raise ValueError(
                f"n_labels={self.n_labels} but the data has only {n_distinct} distinct labels "
                f"(labels {show(self._groups.labels)}): a batch needs n_labels different labels"
            )
        self._groups.require_pairs()
        self._total = n_distinct // self.n_labels
        self._batch_size = self.n_labels * self.n_instances
        self._setup(seed, world_size, rank)

    def _epoch_batches(self, rng: np.random.Generator) -> IntArray:
        groups = self._groups
        chosen = rng.permutation(len(groups))[: self._total * self.n_labels]
        offsets = sample_per_row(rng, groups.counts[chosen], self.n_instances)
        items = groups.order[groups.starts[chosen][:, None] + offsets]
        batches: IntArray = items.reshape(self._total, self._batch_size)
        return batches
