"""Seeds, epochs and DDP sharding: the batches depend on (seed, epoch) only; ranks split them."""

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from omlcore_samplers import BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler

Factory = Callable[..., Any]


@pytest.fixture(params=["balance", "category_balance", "distinct_category_balance"])
def factory(request: pytest.FixtureRequest, labels: list[int], label2category: dict[int, str]) -> Factory:
    """Builds one of the samplers over the shared label set with keyword overrides."""
    if request.param == "balance":
        return lambda **kw: BalanceSampler(labels, 2, 2, **kw)
    if request.param == "category_balance":
        return lambda **kw: CategoryBalanceSampler(labels, label2category, 2, 2, 2, **kw)
    return lambda **kw: DistinctCategoryBalanceSampler(labels, label2category, 2, 2, 2, epoch_size=12, **kw)


def test_same_seed_and_epoch_same_batches_whatever_the_global_rngs(factory: Factory) -> None:
    random.seed(1)
    np.random.seed(1)
    a = factory(seed=4)
    a.set_epoch(3)
    first = list(a)
    random.seed(2)
    np.random.seed(2)
    b = factory(seed=4)
    b.set_epoch(3)
    assert list(b) == first
    assert a.batches(3) == first


def test_epochs_and_seeds_differ(factory: Factory) -> None:
    sampler = factory(seed=0)
    epochs = [sampler.batches(e) for e in range(4)]
    assert all(epochs[i] != epochs[j] for i in range(4) for j in range(i))
    assert factory(seed=1).batches(0) != epochs[0]


def test_passes_without_set_epoch_move_on(factory: Factory) -> None:
    sampler = factory(seed=9)
    assert sampler.epoch == 0
    passes = [list(sampler) for _ in range(3)]
    assert passes == [sampler.batches(e) for e in range(3)]
    assert sampler.epoch == 3
    sampler.set_epoch(1)  # as Lightning / DistributedSampler users do
    assert list(sampler) == passes[1]
    assert len(sampler) == len(passes[0])


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_get_disjoint_equal_shards_of_the_epoch(factory: Factory, world_size: int) -> None:
    single = factory(seed=11, world_size=1, rank=0)
    total = len(single)
    for epoch in (0, 5):
        everything = single.batches(epoch)
        ranks = [factory(seed=11, world_size=world_size, rank=r) for r in range(world_size)]
        shards = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        # the same number of batches on every rank: total // world_size (the rest is dropped, never padded)
        assert {len(s) for s in shards} == {len(r) for r in ranks} == {total // world_size}
        # disjoint slots of the same epoch list, together the whole list up to the dropped remainder
        used = (total // world_size) * world_size
        assert sorted(b for s in shards for b in s) == sorted(everything[:used])
        for r, shard in enumerate(shards):
            assert shard == everything[r:used:world_size]
        # a rank rebuilt from scratch draws the same shard (deterministic from seed + epoch only)
        again = factory(seed=11, world_size=world_size, rank=world_size - 1)
        assert again.batches(epoch) == shards[-1]


def test_balance_ranks_never_share_an_item(labels: list[int]) -> None:
    """balance uses every label at most once per epoch, so the ranks' items are disjoint too."""
    shards = [set(i for b in BalanceSampler(labels, 2, 2, world_size=3, rank=r) for i in b) for r in range(3)]
    assert not (shards[0] & shards[1])
    assert not (shards[0] & shards[2])
    assert not (shards[1] & shards[2])


def test_ddp_arguments_are_checked(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="rank must be < world_size, got rank 2 with world_size 2"):
        BalanceSampler(labels, 2, 2, world_size=2, rank=2)
    with pytest.raises(ValueError, match="an epoch has 1 batches, fewer than the 2 DDP ranks"):
        BalanceSampler(labels, 23, 2, world_size=2, rank=0)


def test_world_size_comes_from_torch_distributed_when_initialised(labels: list[int], tmp_path: Any) -> None:
    torch = pytest.importorskip("torch")
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", world_size=1, rank=0)
    try:
        sampler = BalanceSampler(labels, 2, 2)
        assert (sampler.world_size, sampler.rank) == (1, 0)
        assert BalanceSampler(labels, 2, 2, world_size=4, rank=3).rank == 3  # explicit values win
    finally:
        dist.destroy_process_group()
