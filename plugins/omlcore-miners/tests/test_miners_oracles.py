"""Every in-batch miner equals a brute-force oracle (Python loops, float64) on random batches."""

from __future__ import annotations

import pytest
import torch
from miners_oracles import as_triplets, dist, oracle_all, oracle_n_hard, random_batch, rows
from omlcore_miners import AllTripletsMiner, HardClusterMiner, HardTripletsMiner, NHardTripletsMiner, PairsMiner

SEEDS = range(40)


@pytest.mark.parametrize("integer_features", [False, True], ids=["float", "ties"])
def test_all_triplets(integer_features: bool) -> None:
    for seed in SEEDS:
        features, labels = random_batch(seed, integer_features)
        assert as_triplets(AllTripletsMiner().sample(features, labels)) == oracle_all(labels.tolist())


def test_all_triplets_limit_is_a_seeded_ordered_subset() -> None:
    features, labels = random_batch(3)
    labels = torch.arange(12) % 3
    features = torch.randn(12, 4)
    everything = oracle_all(labels.tolist())
    first = as_triplets(AllTripletsMiner(max_output_triplets=50, seed=7).sample(features, labels))
    again = as_triplets(AllTripletsMiner(max_output_triplets=50, seed=7).sample(features, labels))
    other = as_triplets(AllTripletsMiner(max_output_triplets=50, seed=8).sample(features, labels))
    assert len(first) == 50
    assert first == sorted(first)
    assert set(first) <= set(everything)
    assert first == again
    assert first != other
    assert as_triplets(AllTripletsMiner(max_output_triplets=10_000).sample(features, labels)) == everything


@pytest.mark.parametrize("integer_features", [False, True], ids=["float", "ties"])
def test_hard_triplets(integer_features: bool) -> None:
    for seed in SEEDS:
        features, labels = random_batch(seed, integer_features)
        r, lab = rows(features), labels.tolist()
        expected = oracle_n_hard(r, lab, r, lab, 1, 1)
        assert as_triplets(HardTripletsMiner().sample(features, labels)) == expected


@pytest.mark.parametrize("n_positive", [1, 2, [2, 3], [1, 5]])
@pytest.mark.parametrize("n_negative", [1, 3, [2, 4]])
@pytest.mark.parametrize("integer_features", [False, True], ids=["float", "ties"])
def test_n_hard_triplets(n_positive: object, n_negative: object, integer_features: bool) -> None:
    miner = NHardTripletsMiner(n_positive=n_positive, n_negative=n_negative)  # type: ignore[arg-type]
    for seed in range(20):
        features, labels = random_batch(seed, integer_features)
        r, lab = rows(features), labels.tolist()
        expected = oracle_n_hard(r, lab, r, lab, n_positive, n_negative)
        assert as_triplets(miner.sample(features, labels)) == expected


@pytest.mark.parametrize("integer_features", [False, True], ids=["float", "ties"])
def test_hard_cluster(integer_features: bool) -> None:
    miner = HardClusterMiner()
    for seed in SEEDS:
        features, labels = random_batch(seed, integer_features)
        size, r, lab = labels.numel(), rows(features), labels.tolist()
        uniq = sorted(set(lab))
        centres = []
        for c in uniq:
            members = [r[i] for i in range(size) if lab[i] == c]
            centres.append([sum(col) / len(members) for col in zip(*members, strict=True)])
        expected, allowed = [], []
        if len(uniq) > 1:
            for j, c in enumerate(uniq):
                members = [i for i in range(size) if lab[i] == c]
                if len(members) < 2:
                    continue
                far = min(members, key=lambda i: (-dist(r[i], centres[j]), i))
                # members equidistant from the centre in exact arithmetic (two members always are) may be
                # ordered either way by float rounding: any of them is accepted
                top = dist(r[far], centres[j])
                allowed.append({i for i in members if dist(r[i], centres[j]) > top - 1e-5})
                near = min((k for k in range(len(uniq)) if k != j), key=lambda k: (dist(centres[j], centres[k]), k))
                expected.append((size + j, far, size + near))
        got = as_triplets(miner.sample(features, labels))
        assert [(a, q) for a, _, q in got] == [(a, q) for a, _, q in expected], seed
        for (_, p, _), (_, p_expected, _), candidates in zip(got, expected, allowed, strict=True):
            assert p == p_expected or (len(candidates) > 1 and p in candidates), seed
        memory = miner.last_memory()
        assert memory.labels.tolist() == uniq
        torch.testing.assert_close(memory.features.double(), torch.tensor(centres, dtype=torch.float64))


def test_hard_cluster_centres_carry_the_gradient() -> None:
    features = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    miner = HardClusterMiner()
    a, p, n = miner.sample(features, labels)
    rows_all = torch.cat([features, miner.last_memory().features])
    loss = ((rows_all[a] - rows_all[p]).norm(dim=1) - (rows_all[a] - rows_all[n]).norm(dim=1)).sum()
    loss.backward()
    assert features.grad is not None
    assert bool(features.grad.abs().sum(dim=1).gt(0).all())  # every row is in some centre


@pytest.mark.parametrize("hard_mining", [True, False])
def test_pairs(hard_mining: bool) -> None:
    miner = PairsMiner(hard_mining=hard_mining)
    for seed in SEEDS:
        features, labels = random_batch(seed)
        r, lab = rows(features), labels.tolist()
        triplets = oracle_n_hard(r, lab, r, lab, 1, 1) if hard_mining else oracle_all(lab)
        positive = sorted({(min(a, p), max(a, p)) for a, p, _ in triplets})
        negative = sorted({(min(a, q), max(a, q)) for a, _, q in triplets})
        ids1, ids2, is_negative = miner.sample(features, labels)
        assert list(zip(ids1.tolist(), ids2.tolist(), strict=True)) == positive + negative
        assert is_negative.tolist() == [False] * len(positive) + [True] * len(negative)
