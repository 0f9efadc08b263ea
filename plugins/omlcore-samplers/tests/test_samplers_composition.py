"""Batch composition and epoch length of the three samplers, checked against OML's rules."""

from collections import Counter

import numpy as np
import pytest
from omlcore_samplers import BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler
from omlcore_samplers._common import sample_per_row, weighted_top_k
from samplers_testdata import make_labels


def label_blocks(batch: list[int], labels: list[int], k: int) -> list[list[int]]:
    """The batch cut into its per-label blocks of ``k`` items; asserts each block has one label."""
    assert len(batch) % k == 0
    blocks = [batch[i : i + k] for i in range(0, len(batch), k)]
    for block in blocks:
        assert len({labels[i] for i in block}) == 1, f"block {block} mixes labels"
    return blocks


def check_instances(block: list[int], count: int, k: int) -> None:
    """OML's smart_sample: distinct items if the label has >= k, else all of them first, then repeats."""
    if count >= k:
        assert len(set(block)) == k
    else:
        assert len(set(block[:count])) == count, "a short label must give all its items first"
        assert set(block[count:]) <= set(block[:count])


@pytest.mark.parametrize(("n_labels", "n_instances"), [(2, 2), (3, 4), (5, 3), (23, 2)])
def test_balance_composition_and_epoch_length(labels: list[int], n_labels: int, n_instances: int) -> None:
    sampler = BalanceSampler(labels, n_labels, n_instances, seed=3)
    counts = Counter(labels)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 23 // n_labels
        seen: list[int] = []
        for batch in batches:
            assert len(batch) == sampler.batch_size == n_labels * n_instances
            blocks = label_blocks(batch, labels, n_instances)
            batch_labels = [labels[b[0]] for b in blocks]
            assert len(set(batch_labels)) == n_labels
            for block in blocks:
                check_instances(block, counts[labels[block[0]]], n_instances)
            seen += batch_labels
        # every label at most once per epoch; all but L % n_labels labels are used
        assert len(seen) == len(set(seen)) == (23 // n_labels) * n_labels


def test_balance_instances_are_uniform() -> None:
    """A label with 5 items sampled 2 at a time: every item equally often (chi-square-ish bound)."""
    labels = make_labels([5, 5])
    sampler = BalanceSampler(labels, 2, 2, seed=0)
    hits: Counter[int] = Counter()
    for epoch in range(2000):
        for batch in sampler.batches(epoch):
            hits.update(batch)
    assert set(hits) == set(range(10))
    assert max(hits.values()) / min(hits.values()) < 1.15  # 800 expected each


def test_sample_per_row_matches_smart_sample() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([1, 2, 3, 4, 5, 10, 100] * 300, dtype=np.int64)
    out = sample_per_row(rng, sizes, 4)
    assert out.shape == (sizes.size, 4)
    for row, size in zip(out, sizes, strict=True):
        assert ((row >= 0) & (row < size)).all()
        distinct = min(int(size), 4)
        assert len(set(row[:distinct].tolist())) == distinct
    # all 4-subsets of 5 are equally likely, and so are the orders
    subsets = Counter(tuple(sorted(r)) for r in sample_per_row(rng, np.full(20000, 5, dtype=np.int64), 4).tolist())
    assert len(subsets) == 5
    assert max(subsets.values()) / min(subsets.values()) < 1.15
    firsts = Counter(sample_per_row(rng, np.full(20000, 4, dtype=np.int64), 4)[:, 0].tolist())
    assert len(firsts) == 4
    assert max(firsts.values()) / min(firsts.values()) < 1.15


def test_weighted_top_k_is_successive_weighted_sampling() -> None:
    """First draw proportional to the weights; the second among the rest, renormalised."""
    rng = np.random.default_rng(1)
    weights = np.array([0.5, 0.3, 0.2, 0.0])
    draws = weighted_top_k(rng, weights, 40000, 2)
    assert (draws[:, 0] != draws[:, 1]).all()
    assert (draws != 3).all()
    first = np.bincount(draws[:, 0], minlength=4) / 40000
    np.testing.assert_allclose(first, weights, atol=0.01)
    # P(second = 2 | first = 0) = 0.2 / 0.5
    second_after_0 = draws[draws[:, 0] == 0, 1]
    assert abs((second_after_0 == 2).mean() - 0.4) < 0.02


@pytest.mark.parametrize(
    ("n_categories", "n_labels", "n_instances", "weight"), [(1, 2, 2, True), (2, 3, 3, False), (3, 7, 2, True)]
)
def test_category_balance_composition(
    labels: list[int], label2category: dict[int, str], n_categories: int, n_labels: int, n_instances: int, weight: bool
) -> None:
    sampler = CategoryBalanceSampler(
        labels, label2category, n_categories, n_labels, n_instances, weight_categories=weight, seed=5
    )
    counts = Counter(labels)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-23 // n_labels)  # ceil(L / n_labels), as OML
    for batch in batches:
        assert len(batch) == sampler.batch_size == n_categories * n_labels * n_instances
        blocks = label_blocks(batch, labels, n_instances)
        per_category = [blocks[i : i + n_labels] for i in range(0, len(blocks), n_labels)]
        cats = []
        for group in per_category:
            group_labels = [labels[b[0]] for b in group]
            assert len({label2category[x] for x in group_labels}) == 1
            assert len(set(group_labels)) == n_labels  # every category has >= n_labels labels here
            cats.append(label2category[group_labels[0]])
            for block in group:
                check_instances(block, counts[labels[block[0]]], n_instances)
        assert len(set(cats)) == n_categories


def test_category_weights() -> None:
    """Categories of 2 and 6 labels, one per batch: drawn 1:3 with weights, 1:1 without."""
    labels = make_labels([2] * 8)
    l2c = {i: "small" if i < 2 else "big" for i in range(8)}
    for weight, expected in ((True, 0.25), (False, 0.5)):
        sampler = CategoryBalanceSampler(labels, l2c, 1, 2, 2, weight_categories=weight)
        small = [l2c[labels[b[0]]] == "small" for e in range(500) for b in sampler.batches(e)]
        assert abs(np.mean(small) - expected) < 0.03


def test_category_resample_labels_repeats_labels_of_a_small_category() -> None:
    labels = make_labels([3] * 5)
    l2c = {0: "x", 1: "x", 2: "y", 3: "y", 4: "y"}
    with pytest.raises(ValueError, match=r"fewer than n_labels=3 labels: 'x' \(2\)"):
        CategoryBalanceSampler(labels, l2c, 1, 3, 2)
    sampler = CategoryBalanceSampler(labels, l2c, 2, 3, 2, resample_labels=True)
    for batch in sampler:
        blocks = label_blocks(batch, labels, 2)
        x_labels = [labels[b[0]] for b in blocks if l2c[labels[b[0]]] == "x"]
        assert len(x_labels) == 3
        assert set(x_labels) == {0, 1}
        assert set(x_labels[:2]) == {0, 1}


def test_distinct_category_balance_uses_every_label_before_repeating() -> None:
    # categories of 4, 5 and 6 labels; 2 categories x 2 labels per batch
    labels = make_labels([3] * 15)
    l2c = {i: "abc"[0 if i < 4 else 1 if i < 9 else 2] for i in range(15)}
    sampler = DistinctCategoryBalanceSampler(labels, l2c, 2, 2, 2, epoch_size=40, seed=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40
    used: dict[str, set[int]] = {c: set() for c in "abc"}
    sizes = Counter(l2c.values())
    for batch in batches:
        blocks = label_blocks(batch, labels, 2)
        groups = [[labels[b[0]] for b in blocks[i : i + 2]] for i in range(0, len(blocks), 2)]
        cats = [l2c[g[0]] for g in groups]
        assert len(set(cats)) == 2
        alive = [c for c in "abc" if len(used[c]) < sizes[c]]
        if len(alive) < 2:  # the sampler resets: every label is unused again
            used = {c: set() for c in "abc"}
            alive = list("abc")
        for cat, group in zip(cats, groups, strict=True):
            assert cat in alive, "an exhausted category was drawn before the reset"
            assert {l2c[x] for x in group} == {cat}
            assert len(set(group)) == 2
            fresh = [x for x in group if x not in used[cat]]
            left = sizes[cat] - len(used[cat])
            assert len(fresh) == min(2, left), "labels came back before the category was exhausted"
            used[cat].update(group)


def test_distinct_category_balance_epoch_starts_fresh() -> None:
    """Every epoch starts with all labels unused: the first batches of an epoch never repeat a label."""
    labels = make_labels([2] * 12)
    l2c = {i: i % 2 for i in range(12)}
    sampler = DistinctCategoryBalanceSampler(labels, l2c, 2, 3, 2, epoch_size=2)
    for epoch in range(5):
        batch_labels = [labels[i] for batch in sampler.batches(epoch) for i in batch[::2]]
        assert sorted(batch_labels) == list(range(12))
