"""The bank miners' state (bank contents, generator) goes through state_dict / torch.save and back, directly
and inside ``triplet_with_miner``'s own state_dict: a resumed run mines exactly as the original."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from miners_oracles import as_triplets
from omlcore_miners import MinerWithBank, TripletMinerWithMemory


def batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def through_torch_save(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "make", [lambda: MinerWithBank(2, n_positive=[1, 2]), lambda: TripletMinerWithMemory(3, tri_expand_k=3, seed=4)]
)
def test_bank_miner_state_round_trip(make: Any) -> None:
    data = batches(7, seed=1)
    original, resumed = make(), make()
    for features, labels in data[:4]:
        original.sample(features, labels)
    resumed.load_state_dict(through_torch_save(original.state_dict()))
    for features, labels in data[4:]:
        assert as_triplets(resumed.sample(features, labels)) == as_triplets(original.sample(features, labels))
        assert torch.equal(resumed.last_memory().features, original.last_memory().features)
        assert torch.equal(resumed.last_memory().labels, original.last_memory().labels)


def test_a_fresh_miner_differs_without_the_state() -> None:
    """The round trip above is meaningful: without the bank, the next results differ."""
    data = batches(5, seed=2)
    original, fresh = MinerWithBank(2), MinerWithBank(2)
    for features, labels in data[:4]:
        original.sample(features, labels)
    features, labels = data[4]
    assert as_triplets(fresh.sample(features, labels)) != as_triplets(original.sample(features, labels))


def test_state_is_in_the_loss_state_dict() -> None:
    TripletLossWithMiner = pytest.importorskip(
        "omlcore_losses", reason="needs omlcore-losses (tests_all)"
    ).TripletLossWithMiner

    data = batches(6, seed=3)
    original = TripletLossWithMiner(margin=0.2, miner=TripletMinerWithMemory(2, tri_expand_k=2, seed=7))
    resumed = TripletLossWithMiner(margin=0.2, miner=TripletMinerWithMemory(2, tri_expand_k=2, seed=0))
    for features, labels in data[:3]:
        original(features, labels)
    resumed.load_state_dict(through_torch_save(original.state_dict()))
    for features, labels in data[3:]:
        torch.testing.assert_close(resumed(features, labels), original(features, labels), rtol=0, atol=0)
    stateless = TripletLossWithMiner(margin=0.2)
    assert stateless.get_extra_state() == {}
    with pytest.raises(ValueError, match="has no load_state_dict"):
        stateless.load_state_dict(through_torch_save(original.state_dict()))


def test_bad_states_are_rejected_before_any_change() -> None:
    miner = MinerWithBank(1)
    features, labels = batches(1, seed=4)[0]
    miner.sample(features, labels)
    before = miner.state_dict()
    bad_states: list[Any] = [
        {"bank": "nope"},
        {"bank": [{"features": features}, {"features": features}]},  # more batches than the bank holds
        {"bank": [{"features": features, "labels": labels[:3]}]},
        {"bank": [{"features": labels, "labels": labels}]},
    ]
    for state in bad_states:
        with pytest.raises(ValueError, match="MinerWithBank"):
            miner.load_state_dict(state)
    assert torch.equal(miner.state_dict()["bank"][0]["features"], before["bank"][0]["features"])
    with pytest.raises(ValueError, match="generator"):
        TripletMinerWithMemory(1).load_state_dict({"bank": []})
