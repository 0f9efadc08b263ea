"""Training a pairwise model: pairs mined per batch, BCE on "is negative" (no Lightning needed).

The STIR recipe trains a pairwise model on *hard* pairs: each training batch carries the cached
embeddings of a frozen extractor (:class:`WithEmbeddings` adds them to a dataset's items), a pair miner
(``pairs`` of omlcore-miners, kind ``pair_miner``) picks positive and negative pairs by those embeddings,
and the model's logits of "different" are fitted to ``is_negative`` with
``binary_cross_entropy_with_logits`` (:func:`pairwise_bce_loss`). :func:`train_pairwise_epoch` is a plain
torch loop over that step; the Lightning pipeline runs the same step.

A pairwise model over embeddings (``linear_siamese``) needs no image at all: :class:`EmbeddingItems` gives
the labels and the cached embeddings only, and the embeddings are both what the miner ranks pairs by and
what the model takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from omlcore.protocols import PairMiner, PairwiseModel

__all__ = ["EmbeddingItems", "WithEmbeddings", "pairwise_bce_loss", "train_pairwise_epoch"]


class WithEmbeddings(Dataset[dict[str, Any]]):
    """``dataset`` whose dict items get ``item[key] = embeddings[i]`` (the cached embedding of item ``i``)."""

    def __init__(self, dataset: Any, embeddings: Tensor, key: str = "embeddings") -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] != len(dataset):
            raise ValueError(
                f"WithEmbeddings: {tuple(embeddings.shape)} embeddings for a dataset of {len(dataset)} items; "
                f"expected ({len(dataset)}, D) (a stale or foreign cache?)"
            )
        self.dataset = dataset
        self.embeddings = embeddings
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        if not isinstance(item, Mapping):
            raise TypeError(f"WithEmbeddings: item {i} is a {type(item).__name__}, not a dict")
        if self.key in item:
            raise KeyError(f"WithEmbeddings: item {i} already has a {self.key!r} key")
        return {**item, self.key: self.embeddings[i]}


class EmbeddingItems(Dataset[dict[str, Any]]):
    """Items ``{labels_key: labels[i], key: embeddings[i]}``: a training set of cached embeddings alone.

    For pairwise models over embeddings: nothing is read from disk while training. ``labels`` are the rows'
    integer labels (e.g. ``dataset.get_labels()`` of the dataset the embeddings were computed from).
    """

    def __init__(self, embeddings: Tensor, labels: Any, key: str = "embeddings", labels_key: str = "labels") -> None:
        labels = torch.as_tensor(labels)
        if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
            raise ValueError(
                f"EmbeddingItems: {tuple(embeddings.shape)} embeddings for {tuple(labels.shape)} labels; "
                f"expected (N, D) and (N,) (a stale or foreign cache?)"
            )
        self.embeddings = embeddings
        self.labels = labels.long()
        self.key = key
        self.labels_key = labels_key

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.labels_key: self.labels[i], self.key: self.embeddings[i]}


def pairwise_bce_loss(
    model: PairwiseModel, miner: PairMiner, features: Tensor, labels: Tensor, inputs: Tensor
) -> tuple[Tensor | None, dict[str, float]]:
    """Mine pairs of a batch by ``features`` and fit ``model`` to tell negatives apart.

    ``features`` ``(B, D)``: embeddings the miner ranks pairs by (the frozen extractor's); ``labels``
    ``(B,)``; ``inputs`` ``(B, ...)``: what the model takes (images for ``concat_siamese``). Returns the
    mean BCE-with-logits of ``model.forward(inputs[i], inputs[j])`` against ``is_negative``, and logs
    (``pairs``, ``negative_fraction``, ``accuracy`` at logit 0, plus the miner's ``last_logs``). The loss
    is None when the batch yields no pair (e.g. a single label): skip that step.
    """
    ids1, ids2, is_negative = miner.sample(features.detach(), labels)
    logs: dict[str, float] = {"pairs": float(ids1.numel())}
    extra = getattr(miner, "last_logs", None)
    if isinstance(extra, Mapping):
        logs.update({f"miner/{k}": float(v) for k, v in extra.items()})
    if ids1.numel() == 0:
        return None, logs
    ids1, ids2 = ids1.to(inputs.device), ids2.to(inputs.device)
    logits = model.forward(inputs[ids1], inputs[ids2])
    target = is_negative.to(device=logits.device, dtype=logits.dtype)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    with torch.no_grad():
        logs["negative_fraction"] = float(target.mean())
        logs["accuracy"] = float(((logits > 0) == is_negative.to(logits.device)).float().mean())
    return loss, logs


def train_pairwise_epoch(
    model: PairwiseModel,
    batches: Iterable[Mapping[str, Any]],
    miner: PairMiner,
    optimizer: torch.optim.Optimizer,
    *,
    device: str | torch.device | None = None,
    input_key: str = "input_tensors",
    labels_key: str = "labels",
    embeddings_key: str = "embeddings",
) -> dict[str, float]:
    """One epoch of :func:`pairwise_bce_loss` steps over ``batches`` (e.g. a ``DataLoader`` over
    :class:`WithEmbeddings`). Returns ``{"loss": mean over steps, "pairs": total, "steps", "skipped"}``."""
    if callable(getattr(model, "train", None)):
        model.train()  # type: ignore[attr-defined]
    dev = torch.device(device) if device is not None else None
    total, steps, skipped, pairs = 0.0, 0, 0, 0.0
    for batch in batches:
        inputs = batch[input_key]
        features = batch[embeddings_key]
        labels = torch.as_tensor(batch[labels_key])
        if dev is not None:
            inputs, features, labels = inputs.to(dev), features.to(dev), labels.to(dev)
        loss, logs = pairwise_bce_loss(model, miner, features, labels, inputs)
        pairs += logs["pairs"]
        if loss is None:
            skipped += 1
            continue
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(loss.detach())
        steps += 1
    return {"loss": total / steps if steps else float("nan"), "pairs": pairs, "steps": steps, "skipped": skipped}
