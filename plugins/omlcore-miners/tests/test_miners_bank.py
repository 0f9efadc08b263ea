"""The bank miners equal a bank mimicked by concatenating the previous batches."""

from __future__ import annotations

import pytest
import torch
from miners_oracles import as_triplets, oracle_all, oracle_n_hard, rows
from omlcore_miners import MinerWithBank, TripletMinerWithMemory
from omlcore_miners.bank import _draw_other_label


def batches(n: int, seed: int, vary_size: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        size = int(torch.randint(4, 13, (1,), generator=g)) if vary_size else 8
        out.append((torch.randn(size, 4, generator=g), torch.randint(0, 4, (size,), generator=g)))
    return out


@pytest.mark.parametrize(("bank_size", "n_positive", "n_negative"), [(1, 1, 1), (2, 2, [1, 3]), (3, [2, 4], 2)])
def test_miner_with_bank_equals_mimicked_bank(bank_size: int, n_positive: object, n_negative: object) -> None:
    miner = MinerWithBank(bank_size, n_positive=n_positive, n_negative=n_negative)  # type: ignore[arg-type]
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    for features, labels in batches(7, seed=bank_size):
        if len(history) >= bank_size:
            kept = history[-bank_size:]
            bank_f, bank_l = torch.cat([f for f, _ in kept]), torch.cat([lab for _, lab in kept])
        else:
            bank_f, bank_l = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
        pool_rows = rows(features) + rows(bank_f)
        pool_labels = labels.tolist() + bank_l.tolist()
        expected = oracle_n_hard(rows(features), labels.tolist(), pool_rows, pool_labels, n_positive, n_negative)
        assert as_triplets(miner.sample(features, labels)) == expected
        memory = miner.last_memory()
        assert torch.equal(memory.features, bank_f)
        assert torch.equal(memory.labels, bank_l)
        history.append((features, labels))
    assert miner.last_logs["bank_rows"] == float(bank_l.numel())


def test_miner_with_bank_stores_detached_copies() -> None:
    miner = MinerWithBank(1)
    features = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    miner.sample(features, labels)
    miner.sample(features.detach() + 1.0, labels)
    memory = miner.last_memory()
    assert not memory.features.requires_grad
    assert torch.equal(memory.features, features.detach())


def test_triplets_with_memory_parts() -> None:
    k, bank_size = 3, 2
    miner = TripletMinerWithMemory(bank_size, tri_expand_k=k, seed=5)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    for step, (features, labels) in enumerate(batches(5, seed=11)):
        kept = history[-bank_size:]
        bank_l = torch.cat([lab for _, lab in kept]) if kept else torch.zeros(0, dtype=torch.long)
        a, p, n = miner.sample(features, labels)
        memory = miner.last_memory()
        assert torch.equal(memory.labels, bank_l)
        if kept:
            assert torch.equal(memory.features, torch.cat([f for f, _ in kept]))
        size = labels.numel()
        original = oracle_all(labels.tolist())
        extra = len(original) * (k - 1) // 2 if kept else 0
        assert len(a) == len(original) + 2 * extra, step  # every batch and bank has both kinds of rows
        got = as_triplets((a, p, n))
        assert got[2 * extra :] == original
        pool_labels = labels.tolist() + bank_l.tolist()
        for i, (x, y, z) in enumerate(got):
            assert x != y
            assert pool_labels[x] == pool_labels[y]
            assert pool_labels[x] != pool_labels[z]
            if i < extra:
                assert x < size
                assert y < size
                assert z >= size
            elif i < 2 * extra:
                assert x >= size
                assert y >= size
                assert z < size
        history.append((features, labels))


def test_triplets_with_memory_is_reproducible_and_seeded() -> None:
    def run(seed: int) -> list[list[tuple[int, int, int]]]:
        miner = TripletMinerWithMemory(2, tri_expand_k=4, seed=seed)
        return [as_triplets(miner.sample(f, lab)) for f, lab in batches(4, seed=3)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_triplets_with_memory_expand_one_is_all_triplets() -> None:
    miner = TripletMinerWithMemory(3)
    for features, labels in batches(4, seed=2):
        assert as_triplets(miner.sample(features, labels)) == oracle_all(labels.tolist())


def test_draw_other_label_is_uniform_over_valid_rows() -> None:
    pool = torch.tensor([2, 0, 1, 2, 0, 2, 3])
    anchors = torch.full((7000,), 2)
    picked = _draw_other_label(anchors, pool, torch.Generator().manual_seed(0))
    counts = torch.bincount(picked, minlength=7)
    assert counts[[0, 3, 5]].sum() == 0
    assert bool(((counts[[1, 2, 4, 6]] - 1750).abs() < 200).all())
    none = _draw_other_label(torch.tensor([5]), torch.tensor([5, 5]), torch.Generator())
    assert none.tolist() == [-1]
