"""``category_balance`` and ``distinct_category_balance``: batches of categories x labels x instances.

Both match OML's ``CategoryBalanceSampler`` and ``DistinctCategoryBalanceSampler`` (batch composition,
epoch length, with/without replacement); see the package README for the rules and the differences.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from omlcore_samplers._common import (
    EpochSampler,
    IntArray,
    LabelGroups,
    check_int,
    sample_per_row,
    show,
    weighted_top_k,
)

__all__ = ["CategoryBalanceSampler", "DistinctCategoryBalanceSampler"]


class _Categories:
    """The labels of each category: ``members[starts[c] : starts[c] + sizes[c]]`` are label positions."""

    def __init__(self, groups: LabelGroups, label2category: Mapping[int, Hashable]) -> None:
        if not isinstance(label2category, Mapping):
            raise TypeError(
                f"label2category must be a mapping from label to category, got {type(label2category).__name__}"
            )
        missing = [int(label) for label in groups.labels if int(label) not in label2category]
        if missing:
            raise ValueError(
                f"label2category has no category for {len(missing)} of the {len(groups)} labels "
                f"(labels {show(missing)}); every label needs one"
            )
        ids: dict[Hashable, int] = {}
        codes = np.fromiter(
            (ids.setdefault(label2category[int(label)], len(ids)) for label in groups.labels),
            dtype=np.int64,
            count=len(groups),
        )
        self.names: list[Hashable] = list(ids)  # in order of first appearance among the sorted labels
        self.members: IntArray = np.argsort(codes, kind="stable").astype(np.int64, copy=False)
        self.sizes: IntArray = np.bincount(codes, minlength=len(ids)).astype(np.int64, copy=False)
        self.starts: IntArray = np.r_[0, np.cumsum(self.sizes)[:-1]].astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.names)

    def labels_of(self, category: int) -> IntArray:
        start = int(self.starts[category])
        return self.members[start : start + int(self.sizes[category])]

    def require_n_categories(self, n_categories: int) -> None:
        if n_categories > len(self):
            raise ValueError(
                f"n_categories={n_categories} but the labels fall into only {len(self)} categories "
                f"({show(self.names)}): a batch needs n_categories different categories"
            )

    def require_labels_per_category(self, n_labels: int, hint: str) -> None:
        small = np.flatnonzero(self.sizes < n_labels)
        if small.size:
            names = [f"{self.names[c]!r} ({self.sizes[c]})" for c in small]
            raise ValueError(
                f"{small.size} of {len(self)} categories have fewer than n_labels={n_labels} labels: "
                f"{show(names)}{hint}"
            )


def _common_checks(
    labels: Sequence[int] | NDArray[Any],
    label2category: Mapping[int, Hashable],
    n_categories: int,
    n_labels: int,
    n_instances: int,
) -> tuple[LabelGroups, _Categories]:
    check_int("n_categories", n_categories, 1)
    check_int("n_labels", n_labels, 2)
    check_int("n_instances", n_instances, 2)
    groups = LabelGroups(labels)
    if n_labels > len(groups):
        raise ValueError(
            f"n_labels={n_labels} but the data has only {len(groups)} distinct labels (labels {show(groups.labels)})"
        )
    categories = _Categories(groups, label2category)
    categories.require_n_categories(n_categories)
    groups.require_pairs()
    return groups, categories


class CategoryBalanceSampler(EpochSampler):
    """Batches of ``n_categories`` categories x ``n_labels`` labels x ``n_instances`` items.

    Every batch is drawn independently: ``n_categories`` distinct categories (with probability
    proportional to their number of labels if ``weight_categories``, else uniformly), then ``n_labels``
    labels of each category, then ``n_instances`` items of each label. Labels and items are distinct
    when there are enough, otherwise all of them followed by repeats drawn with replacement (labels can
    only run short with ``resample_labels=True``). An epoch has ``ceil(L / n_labels)`` batches, ``L``
    being the number of distinct labels (OML's count).

    Args:
        labels: The label of every dataset item (given by the pipeline).
        label2category: The category of every label (given by the pipeline).
        n_categories: Distinct categories per batch; ``1 <= n_categories <= C``.
        n_labels: Labels per category in a batch; ``1 < n_labels <= L``.
        n_instances: Items per label in a batch; ``> 1``.
        resample_labels: Allow categories with fewer than ``n_labels`` labels (their labels then repeat
            within a batch); without it such a category is an error.
        weight_categories: Draw categories in proportion to their number of labels.
        seed: Seed of the batches; the batches of an epoch depend on ``(seed, epoch)`` only.
        world_size: Number of DDP ranks; default: torch.distributed's if initialised, else 1.
        rank: This process's rank; default: torch.distributed's if initialised, else 0.
    """

    def __init__(
        self,
        labels: Sequence[int] | NDArray[Any],
        label2category: Mapping[int, Hashable],
        n_categories: Annotated[int, Field(ge=1)],
        n_labels: Annotated[int, Field(gt=1)],
        n_instances: Annotated[int, Field(gt=1)],
        resample_labels: bool = False,
        weight_categories: bool = True,
        *,
        seed: Annotated[int, Field(ge=0)] = 0,
        world_size: Annotated[int, Field(ge=1)] | None = None,
        rank: Annotated[int, Field(ge=0)] | None = None,
    ) -> None:
        self._groups, self._categories = _common_checks(labels, label2category, n_categories, n_labels, n_instances)
        self.n_categories, self.n_labels, self.n_instances = int(n_categories), int(n_labels), int(n_instances)
        self.resample_labels = bool(resample_labels)
        self.weight_categories = bool(weight_categories)
        if not self.resample_labels:
            self._categories.require_labels_per_category(
                self.n_labels, "; lower n_labels or set resample_labels: true to repeat labels within a batch"
            )
        sizes = self._categories.sizes.astype(np.float64)
        self._weights = sizes / sizes.sum() if self.weight_categories else np.full(sizes.size, 1.0 / sizes.size)
        self._total = math.ceil(len(self._groups) / self.n_labels)
        self._batch_size = self.n_categories * self.n_labels * self.n_instances
        self._setup(seed, world_size, rank)

    def _epoch_batches(self, rng: np.random.Generator) -> IntArray:
        groups, cats = self._groups, self._categories
        chosen = weighted_top_k(rng, self._weights, self._total, self.n_categories).reshape(-1)
        label_offsets = sample_per_row(rng, cats.sizes[chosen], self.n_labels)
        label_pos = cats.members[cats.starts[chosen][:, None] + label_offsets].reshape(-1)
        item_offsets = sample_per_row(rng, groups.counts[label_pos], self.n_instances)
        items = groups.order[groups.starts[label_pos][:, None] + item_offsets]
        batches: IntArray = items.reshape(self._total, self._batch_size)
        return batches


class DistinctCategoryBalanceSampler(EpochSampler):
    """Like ``category_balance``, but no label comes back until its category has used all its labels.

    Each epoch starts with every label unused. A batch draws ``n_categories`` distinct categories
    uniformly among those that still have unused labels, then ``n_labels`` unused labels of each
    (uniformly, without replacement); a category with fewer unused labels left gives all of them plus
    labels it used earlier in the cycle (distinct, drawn uniformly), and then counts as exhausted. When
    fewer than ``n_categories`` categories have unused labels, every label becomes unused again. Items
    are drawn per label as in ``balance``. An epoch has ``epoch_size`` batches.

    Args:
        labels: The label of every dataset item (given by the pipeline).
        label2category: The category of every label (given by the pipeline).
        n_categories: Distinct categories per batch; ``1 <= n_categories <= C``.
        n_labels: Labels per category in a batch; ``1 < n_labels``, and every category needs that many.
        n_instances: Items per label in a batch; ``> 1``.
        epoch_size: Batches per epoch (before DDP sharding).
        seed: Seed of the batches; the batches of an epoch depend on ``(seed, epoch)`` only.
        world_size: Number of DDP ranks; default: torch.distributed's if initialised, else 1.
        rank: This process's rank; default: torch.distributed's if initialised, else 0.
    """

    def __init__(
        self,
        labels: Sequence[int] | NDArray[Any],
        label2category: Mapping[int, Hashable],
        n_categories: Annotated[int, Field(ge=1)],
        n_labels: Annotated[int, Field(gt=1)],
        n_instances: Annotated[int, Field(gt=1)],
        epoch_size: Annotated[int, Field(ge=1)],
        *,
        seed: Annotated[int, Field(ge=0)] = 0,
        world_size: Annotated[int, Field(ge=1)] | None = None,
        rank: Annotated[int, Field(ge=0)] | None = None,
    ) -> None:
        self._groups, self._categories = _common_checks(labels, label2category, n_categories, n_labels, n_instances)
        self.n_categories, self.n_labels, self.n_instances = int(n_categories), int(n_labels), int(n_instances)
        self.epoch_size = check_int("epoch_size", epoch_size, 1)
        self._categories.require_labels_per_category(self.n_labels, "; lower n_labels")
        self._total = self.epoch_size
        self._batch_size = self.n_categories * self.n_labels * self.n_instances
        self._setup(seed, world_size, rank)

    def _epoch_batches(self, rng: np.random.Generator) -> IntArray:
        groups, cats = self._groups, self._categories
        n_cat, n_lab = self.n_categories, self.n_labels
        label_pos = np.empty((self._total, n_cat, n_lab), dtype=np.int64)
        orders: list[IntArray] = []  # per category: its labels in a random order; used = the first `used[c]`
        used: list[int] = []
        alive: list[int] = []  # categories with unused labels
        for b in range(self._total):
            if len(alive) < n_cat:  # (also the start of the epoch) every label is unused again
                orders = [rng.permutation(cats.labels_of(c)) for c in range(len(cats))]
                used = [0] * len(cats)
                alive = list(range(len(cats)))
            picks = rng.choice(len(alive), size=n_cat, replace=False)
            categories = [alive[int(i)] for i in picks]
            for slot, c in enumerate(categories):
                order, start = orders[c], used[c]
                fresh = order[start : start + n_lab]
                if fresh.size < n_lab:  # too few unused: all of them + earlier used ones, distinct
                    extra = order[:start][rng.choice(start, size=n_lab - fresh.size, replace=False)]
                    fresh = np.concatenate([fresh, extra])
                label_pos[b, slot] = fresh
                used[c] = min(start + n_lab, order.size)
            alive = [c for c in alive if used[c] < orders[c].size]
        flat = label_pos.reshape(-1)
        offsets = sample_per_row(rng, groups.counts[flat], self.n_instances)
        items = groups.order[groups.starts[flat][:, None] + offsets]
        batches: IntArray = items.reshape(self._total, self._batch_size)
        return batches
