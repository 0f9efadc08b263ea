"""Metric-learning batch samplers for omlcore (entry-point group ``omlcore.samplers``).

- ``balance`` (:class:`BalanceSampler`): ``n_labels`` labels x ``n_instances`` items per batch.
- ``category_balance`` (:class:`CategoryBalanceSampler`): categories x labels x items per batch.
- ``distinct_category_balance`` (:class:`DistinctCategoryBalanceSampler`): the same, with labels not
  repeated until their category has used them all.

They re-implement OML 2.1's samplers of the same names with vectorised numpy (no torch import), are
seeded (the batches of an epoch depend on ``(seed, epoch)`` only) and shard themselves across DDP ranks.
"""

from omlcore_samplers.balance import BalanceSampler
from omlcore_samplers.category import CategoryBalanceSampler, DistinctCategoryBalanceSampler

__all__ = ["BalanceSampler", "CategoryBalanceSampler", "DistinctCategoryBalanceSampler"]
__version__ = "0.1.0"
