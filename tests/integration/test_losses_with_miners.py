"""Every real miner nested in `triplet_with_miner` from a config: finite loss, gradients, memory miners."""

from __future__ import annotations

import pytest

import omlcore

pytestmark = pytest.mark.integration

MINERS = {
    "all_triplets": {},
    "hard_triplets": {},
    "n_hard_triplets": {"n_positive": 1, "n_negative": 2},
    "hard_cluster": {},
    "miner_with_bank": {"bank_size_in_batches": 2, "n_positive": 1, "n_negative": 2},
    "triplets_with_memory": {"bank_size_in_batches": 2, "tri_expand_k": 2},
}


@pytest.mark.parametrize("miner", list(MINERS))
def test_triplet_with_each_miner(miner: str) -> None:
    import torch

    from omlcore.registry import get_registry

    registry = get_registry()
    args = MINERS[miner]  # every key must be a real argument: validation below would reject a typo
    spec = {"name": "triplet_with_miner", "args": {"margin": 0.2, "miner": {"name": miner, "args": args}}}
    assert registry.validate("loss", spec, "loss") == []
    loss_fn = omlcore.build("loss", spec)
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8)
    labels = torch.arange(4).repeat_interleave(4)
    for step in range(3):  # the memory miners fill their banks over several batches
        features = model(torch.randn(16, 16))
        loss = loss_fn(features, labels)
        assert loss.shape == ()
        assert torch.isfinite(loss), (miner, step)
        model.zero_grad()
        loss.backward()
        assert model.weight.grad is not None
        assert torch.isfinite(model.weight.grad).all()
    assert loss_fn.last_logs
