"""Training pieces: pairs mined per batch by the cached embeddings, BCE on "is negative", a plain loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omlcore_reranking import ConcatSiamese, LinearSiamese, WithEmbeddings, pairwise_bce_loss
from omlcore_reranking.training import train_pairwise_epoch
from reranking_helpers import TinyConvExtractor
from torch.utils.data import DataLoader

import omlcore


class _Items(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_tensors": self.inputs[i], "labels": int(self.labels[i])}


def _miner(hard: bool = True) -> Any:
    return omlcore.build("pair_miner", {"name": "pairs", "args": {"hard_mining": hard}})


def test_loss_is_bce_on_the_mined_pairs() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    inputs = torch.randn(8, 4)
    model = LinearSiamese(4, identity_init=False)
    miner = _miner()
    loss, logs = pairwise_bce_loss(model, miner, features, labels, inputs)
    ids1, ids2, is_negative = miner.sample(features, labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        model(inputs[ids1], inputs[ids2]), is_negative.float()
    )
    assert loss is not None
    torch.testing.assert_close(loss, expected)
    assert logs["pairs"] == float(ids1.numel())
    assert logs["negative_fraction"] == pytest.approx(float(is_negative.float().mean()))
    assert "miner/positive_pairs" in logs
    loss.backward()
    assert model.proj.weight.grad is not None


def test_a_batch_without_pairs_gives_no_loss() -> None:
    loss, logs = pairwise_bce_loss(
        LinearSiamese(3), _miner(), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.randn(4, 3)
    )
    assert loss is None
    assert logs["pairs"] == 0.0


def test_training_a_linear_siamese_separates_negatives() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    centres = torch.randn(8, 6, generator=g) * 3
    noise = torch.randn(32, 6, generator=g)
    inputs = centres[labels] + noise  # informative directions: the centres; noise of the same size
    features = inputs.clone()  # "cached embeddings" used to mine
    data = WithEmbeddings(_Items(inputs, labels), features)
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    model = LinearSiamese(6, identity_init=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    miner = _miner(hard=False)
    first = train_pairwise_epoch(model, loader, miner, optimizer)
    for _ in range(30):
        last = train_pairwise_epoch(model, loader, miner, optimizer)
    assert last["loss"] < 0.5 * first["loss"]
    assert last["steps"] == 2
    assert last["skipped"] == 0
    model.eval()
    with torch.no_grad():
        same = model.predict(inputs[0:1].expand(3, -1), inputs[1:4])
        other = model.predict(inputs[0:1].expand(3, -1), inputs[4:7])
    assert bool((same.max() < other.min()).item())


def test_concat_siamese_trains_on_images_with_a_frozen_extractor() -> None:
    torch.manual_seed(0)
    images = torch.rand(8, 3, 8, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    model = ConcatSiamese(TinyConvExtractor(), [4])
    model.freeze()
    frozen = [p.clone() for p in model.extractor.parameters()]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batches = [{"input_tensors": images, "labels": labels, "embeddings": torch.randn(8, 5)}]
    stats = train_pairwise_epoch(model, batches, _miner(), optimizer)
    assert stats["steps"] == 1
    assert stats["pairs"] > 0
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.extractor.parameters(), strict=True))


def test_with_embeddings_checks_lengths_and_keys() -> None:
    base = _Items(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(2, 4\) embeddings for a dataset of 3 items"):
        WithEmbeddings(base, torch.randn(2, 4))
    item = WithEmbeddings(base, torch.arange(6.0).view(3, 2))[2]
    assert item["embeddings"].tolist() == [4.0, 5.0]
    with pytest.raises(KeyError, match="already has"):
        WithEmbeddings(WithEmbeddings(base, torch.randn(3, 2)), torch.randn(3, 2))[0]
