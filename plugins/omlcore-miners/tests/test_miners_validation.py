"""Bad input gives a clear error; batches with nothing to mine give empty results, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from omlcore.registry import Registry

MINERS = [
    ("miner", "all_triplets", {}),
    ("miner", "hard_triplets", {}),
    ("miner", "n_hard_triplets", {"n_positive": 2}),
    ("miner", "hard_cluster", {}),
    ("miner", "miner_with_bank", {"bank_size_in_batches": 1}),
    ("miner", "triplets_with_memory", {"bank_size_in_batches": 1, "tri_expand_k": 3}),
    ("pair_miner", "pairs", {}),
]
IDS = [name for _, name, _ in MINERS]
GOOD_LABELS = torch.tensor([0, 0, 1, 1])


def build(registry: Registry, kind: str, name: str, args: dict[str, Any]) -> Any:
    return registry.build(kind, {"name": name, "args": args})


BAD = [
    (torch.randn(4, 3), torch.tensor([[0, 0], [1, 1]]), "labels must be 1-D"),
    (torch.randn(4, 3), torch.tensor([0.0, 0.0, 1.0, 1.0]), "labels must be an integer tensor"),
    (torch.randn(4, 3), torch.tensor([True, True, False, False]), "labels must be an integer tensor"),
    (torch.randn(4, 3), torch.tensor([0, 0, 1]), "disagree on the batch size"),
    (torch.randn(4), GOOD_LABELS, "features must be 2-D"),
    (torch.ones(4, 3, dtype=torch.long), GOOD_LABELS, "features must be a floating tensor"),
    (torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0], [2.0, 0.0]]), GOOD_LABELS, "NaN or infinite"),
    (torch.tensor([[0.0, 1.0], [1.0, 0.0], [float("inf"), 1.0], [2.0, 0.0]]), GOOD_LABELS, r"row 2\)"),
]


@pytest.mark.parametrize(("kind", "name", "args"), MINERS, ids=IDS)
@pytest.mark.parametrize(("features", "labels", "message"), BAD, ids=[m for *_, m in BAD])
def test_malformed_input_raises(
    installed_registry: Registry, kind: str, name: str, args: dict[str, Any], features: Any, labels: Any, message: str
) -> None:
    miner = build(installed_registry, kind, name, args)
    with pytest.raises(ValueError, match=message):
        miner.sample(features, labels)


@pytest.mark.parametrize(("kind", "name", "args"), MINERS, ids=IDS)
def test_features_must_be_a_tensor(installed_registry: Registry, kind: str, name: str, args: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        build(installed_registry, kind, name, args).sample([[0.0, 1.0]], GOOD_LABELS)


@pytest.mark.parametrize(("kind", "name", "args"), MINERS, ids=IDS)
@pytest.mark.parametrize(
    "labels",
    [torch.full((5,), 2), torch.arange(5), torch.zeros(0, dtype=torch.long)],
    ids=["one-label", "one-per-label", "empty"],
)
def test_nothing_to_mine_is_empty(
    installed_registry: Registry, kind: str, name: str, args: dict[str, Any], labels: torch.Tensor
) -> None:
    miner = build(installed_registry, kind, name, args)
    features = torch.randn(labels.numel(), 3)
    # a second call sees a bank; with one item per label, MinerWithBank rightly finds positives in it
    calls = 1 if name == "miner_with_bank" and labels.unique().numel() == labels.numel() > 0 else 2
    for _ in range(calls):
        out = miner.sample(features, labels)
        assert len(out) == 3
        assert all(t.numel() == 0 for t in out)
        assert out[0].dtype == torch.long


def test_other_integer_label_dtypes_and_lists_are_accepted(installed_registry: Registry) -> None:
    miner = build(installed_registry, "miner", "hard_triplets", {})
    features = torch.randn(4, 3)
    expected = miner.sample(features, GOOD_LABELS)
    for labels in (GOOD_LABELS.int(), GOOD_LABELS.to(torch.uint8), [0, 0, 1, 1]):
        for x, y in zip(miner.sample(features, labels), expected, strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"n_positive": 0}, "n_positive must be >= 1"),
        ({"n_negative": [3, 2]}, "1 <= first <= last"),
        ({"n_negative": [1, 2, 3]}, "range"),
        ({"n_positive": [0, 2]}, "1 <= first <= last"),
    ],
)
def test_bad_rank_ranges(args: dict[str, Any], message: str) -> None:
    from omlcore_miners import NHardTripletsMiner

    with pytest.raises(ValueError, match=message):
        NHardTripletsMiner(**args)


def test_bad_constructor_args() -> None:
    from omlcore_miners import AllTripletsMiner, MinerWithBank, TripletMinerWithMemory

    with pytest.raises(ValueError, match="max_output_triplets"):
        AllTripletsMiner(max_output_triplets=0)
    with pytest.raises(ValueError, match="bank_size_in_batches"):
        MinerWithBank(0)
    with pytest.raises(ValueError, match="tri_expand_k"):
        TripletMinerWithMemory(1, tri_expand_k=0)


def test_bank_rejects_a_changed_feature_size() -> None:
    from omlcore_miners import MinerWithBank

    miner = MinerWithBank(1)
    miner.sample(torch.randn(4, 3), GOOD_LABELS)
    with pytest.raises(ValueError, match="bank holds rows of 3"):
        miner.sample(torch.randn(4, 5), GOOD_LABELS)


def test_last_memory_before_sample_is_an_error() -> None:
    from omlcore_miners import HardClusterMiner

    with pytest.raises(RuntimeError, match="after the first sample"):
        HardClusterMiner().last_memory()
