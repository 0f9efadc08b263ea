"""Postprocessors of a retrieval top-k (kind ``postprocessor``, group ``omlcore.postprocessors``).

They all work on the *streaming* top-k of the metrics (:func:`omlcore_metrics.retrieval_metrics` keeps
only the ``K`` nearest gallery items of each query), never on a ``Q x G`` matrix:

``process(distances, retrieved, query_ids, dataset) -> (distances, retrieved)``

- ``distances`` float ``(Q, K)``, each row ascending; ``retrieved`` long ``(Q, K)``: the retrieved items as
  *row indices of* ``dataset`` (the same index space as ``query_ids``), ``-1`` with distance ``inf`` where
  a query has fewer than ``K`` results (padding, always at the end of a row); ``query_ids`` long ``(Q,)``:
  row indices of the queries in ``dataset``.
- The result has the same shapes and dtypes, each row ascending, padding at the end. Rows are processed
  independently, so a caller may split the queries into chunks.

Postprocessors:

- :class:`PairwiseEmbeddingsReranker` (``pairwise_embeddings``) and :class:`PairwiseImagesReranker`
  (``pairwise_images``) re-score the first ``top_n`` items of each row with a pairwise model: cost
  ``Q x top_n`` model calls, whatever the gallery size. See :func:`merge_reranked` for where the new
  scores go.
- :class:`ConstantThresholding` (``constant_thresholding``) and :class:`AdaptiveThresholding`
  (``adaptive_thresholding``) drop the items past a distance threshold (they become padding).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from omlcore.protocols import PairwiseModel, RetrievalPostprocessor
from omlcore_reranking.errors import InputSizeError, RerankingError

__all__ = [
    "AdaptiveThresholding",
    "ConstantThresholding",
    "PairwiseEmbeddingsReranker",
    "PairwiseImagesReranker",
    "TopKPostprocessor",
    "check_topk",
    "merge_reranked",
]


TopKPostprocessor = RetrievalPostprocessor
"""What this plugin's postprocessors offer: the core's :class:`~omlcore.protocols.RetrievalPostprocessor`
(``top_n: int | None``, ``reads``, ``process``; dropped items become ``-1``/``inf`` padding), under the name
this plugin first gave it."""


def check_topk(distances: Tensor, retrieved: Tensor, query_ids: Tensor, who: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless the three tensors form a top-k result."""
    for name, t in (("distances", distances), ("retrieved", retrieved), ("query_ids", query_ids)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if distances.ndim != 2 or not distances.is_floating_point():
        raise ValueError(
            f"{who}: distances must be a float (Q, K) tensor, got {distances.dtype} {tuple(distances.shape)}"
        )
    if retrieved.shape != distances.shape or retrieved.dtype != torch.long:
        raise ValueError(
            f"{who}: retrieved must be a long tensor of the distances' shape {tuple(distances.shape)}, "
            f"got {retrieved.dtype} {tuple(retrieved.shape)}"
        )
    if query_ids.shape != (distances.shape[0],) or query_ids.dtype != torch.long:
        raise ValueError(
            f"{who}: query_ids must be a long ({distances.shape[0]},) tensor (one per row), "
            f"got {query_ids.dtype} {tuple(query_ids.shape)}"
        )


def _check_top_n(top_n: int, who: str) -> int:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 2:
        raise ValueError(
            f"{who}: top_n must be an int >= 2 (re-ranking fewer than two items cannot change an order), got {top_n!r}"
        )
    return top_n


def merge_reranked(distances: Tensor, retrieved: Tensor, scores: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Put re-scored leading items in front of each row, ordered by their new scores.

    ``scores`` float ``(Q, n)`` are the new distance-like scores of the first ``n`` columns where
    ``valid`` ``(Q, n)`` is True (the other entries are ignored: padding stays padding).

    - The first ``n`` columns are sorted by ``(score, former column)``: equal scores keep their former
      order, itself ``(distance, gallery index)``, so the result is deterministic. Their distances become
      the scores.
    - The columns after ``n`` keep their items and order. Their distances are left as they were when
      they already exceed every new score of the row; otherwise they are all shifted up by the one
      amount that puts the first of them at the row's largest new score, and any of them still not above
      it are raised to the next representable value. The re-ranked items therefore stay strictly ahead.
    """
    q, k = distances.shape
    n = scores.shape[1]
    dtype = distances.dtype
    top = torch.full((q, n), math.inf, dtype=dtype, device=distances.device)
    top[valid] = scores[valid].to(dtype)
    new_top, order = torch.sort(top, dim=1, stable=True)
    new_top_r = retrieved[:, :n].gather(1, order)
    if k == n:
        return new_top, new_top_r
    tail_d = distances[:, n:].clone()
    tail_r = retrieved[:, n:].clone()
    row_max = torch.where(valid, top, torch.full_like(top, -math.inf)).max(dim=1).values
    first = tail_d[:, 0]
    need = valid.any(dim=1) & torch.isfinite(first) & (first <= row_max)
    if bool(need.any()):
        rows = need.nonzero().flatten()
        peak = row_max[rows]
        shifted = tail_d[rows] + (peak - first[rows])[:, None]
        tail_d[rows] = torch.maximum(shifted, _next_up(peak)[:, None])
    return torch.cat([new_top, tail_d], dim=1), torch.cat([new_top_r, tail_r], dim=1)


def _next_up(x: Tensor) -> Tensor:
    """The smallest value of ``x``'s dtype above each entry (about that, for 16-bit floats)."""
    if x.dtype in (torch.float32, torch.float64):
        return torch.nextafter(x, torch.full_like(x, math.inf))
    info = torch.finfo(x.dtype)
    wide = x.float()
    return (wide + wide.abs() * info.eps + info.tiny).to(x.dtype)


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` inside the block, the former mode restored after."""
    was_training = bool(getattr(model, "training", False))
    if callable(getattr(model, "eval", None)):
        model.eval()
    try:
        yield
    finally:
        if was_training and callable(getattr(model, "train", None)):
            model.train()


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


class _PairwiseReranker:
    """Shared by the two pairwise re-rankers: validation, batching, the merge."""

    name = "pairwise"

    def __init__(
        self,
        top_n: int,
        pairwise_model: PairwiseModel,
        batch_size: int = 128,
        autocast: bool = False,
        autocast_dtype: Literal["float16", "bfloat16"] = "float16",
        device: str | None = None,
    ) -> None:
        self.top_n: int = _check_top_n(top_n, self.name)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"{self.name}: batch_size must be a positive int, got {batch_size!r}")
        if not callable(getattr(pairwise_model, "predict", None)):
            raise TypeError(
                f"{self.name}: pairwise_model must have predict(x1, x2), got {type(pairwise_model).__name__}"
            )
        if autocast_dtype not in ("float16", "bfloat16"):
            raise ValueError(f"{self.name}: autocast_dtype must be 'float16' or 'bfloat16', got {autocast_dtype!r}")
        self.pairwise_model = pairwise_model
        self.batch_size = batch_size
        self.autocast = autocast
        self.autocast_dtype = autocast_dtype
        self.device = torch.device(device) if device is not None else None
        if self.device is not None and isinstance(pairwise_model, nn.Module):
            pairwise_model.to(self.device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(top_n={self.top_n}, pairwise_model={type(self.pairwise_model).__name__}, "
            f"batch_size={self.batch_size}, autocast={self.autocast})"
        )

    def _device(self) -> torch.device:
        return self.device if self.device is not None else _model_device(self.pairwise_model)

    def _predict_batches(self, batches: Iterable[tuple[Tensor, Tensor]]) -> Tensor:
        """Scores of every pair of every batch, in order, as one float32 CPU tensor."""
        device = self._device()
        dtype = torch.float16 if self.autocast_dtype == "float16" else torch.bfloat16
        out: list[Tensor] = []
        with _eval_mode(self.pairwise_model), torch.no_grad():
            for x1, x2 in batches:
                x1 = x1.to(device, non_blocking=True)
                x2 = x2.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=dtype, enabled=self.autocast):
                    scores = self.pairwise_model.predict(x1, x2)
                if not isinstance(scores, Tensor) or tuple(scores.shape) != (x1.shape[0],):
                    got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                    raise RerankingError(
                        f"{self.name}: the pairwise model's predict returned {got} for {x1.shape[0]} pairs; "
                        f"expected one score per pair ({x1.shape[0]},)"
                    )
                out.append(scores.detach().float().cpu())
        scores_all = torch.cat(out) if out else torch.empty(0)
        if bool(torch.isnan(scores_all).any()):
            raise RerankingError(f"{self.name}: the pairwise model returned NaN scores; check its weights and inputs")
        return scores_all

    def _score(self, ids1: Tensor, ids2: Tensor, dataset: Any) -> Tensor:
        raise NotImplementedError

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        """Re-score the first ``top_n`` items of every row; see :func:`merge_reranked`."""
        check_topk(distances, retrieved, query_ids, self.name)
        n = min(self.top_n, distances.shape[1])
        if n == 0 or distances.shape[0] == 0:
            return distances.clone(), retrieved.clone()
        out_device = distances.device
        dist_c, ret_c, qid_c = distances.cpu(), retrieved.cpu(), query_ids.cpu()
        valid = ret_c[:, :n] >= 0
        ids1 = qid_c[:, None].expand(-1, n)[valid]
        ids2 = ret_c[:, :n][valid]
        scores = torch.zeros(valid.shape, dtype=torch.float32)
        if ids1.numel():
            scores[valid] = self._score(ids1, ids2, dataset)
        new_d, new_r = merge_reranked(dist_c, ret_c, scores, valid)
        return new_d.to(out_device), new_r.to(out_device)


def _check_ids(ids: Tensor, size: int, who: str) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        bad = ids[(ids < 0) | (ids >= size)][:5].tolist()
        raise IndexError(f"{who}: item ids {bad} are outside the dataset's {size} rows")


class PairwiseEmbeddingsReranker(_PairwiseReranker):
    """Re-ranks the top ``top_n`` of each query with a pairwise model over embeddings.

    Args:
        top_n: how many leading results of each query to re-score (>= 2).
        pairwise_model: e.g. ``linear_siamese`` or ``trivial_distance_siamese``.
        batch_size: pairs per model call.
        autocast: run the model under ``torch.autocast`` with ``autocast_dtype``.
        device: where the model runs (it is moved there); None: where its parameters are (CPU without any).

    ``dataset`` of :meth:`process` is the embeddings, float ``(N, D)``, indexed by ``query_ids`` and
    ``retrieved``. Cost: ``Q x top_n`` pairs, independent of the gallery size.
    """

    name = "pairwise_embeddings"
    reads: Literal["embeddings", "items", "nothing"] = "embeddings"

    def _score(self, ids1: Tensor, ids2: Tensor, dataset: Any) -> Tensor:
        if dataset is None:
            raise ValueError(f"{self.name}: pass the embeddings (N, D) as the dataset argument of process()")
        emb = torch.as_tensor(dataset)
        if emb.ndim != 2 or not emb.is_floating_point():
            raise InputSizeError(f"{self.name}: the embeddings must be a float (N, D) tensor, got {tuple(emb.shape)}")
        _check_ids(ids1, emb.shape[0], self.name)
        _check_ids(ids2, emb.shape[0], self.name)
        bs = self.batch_size

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            for s in range(0, ids1.numel(), bs):
                yield emb[ids1[s : s + bs]], emb[ids2[s : s + bs]]

        return self._predict_batches(batches())


class _PairsDataset(Dataset[tuple[Tensor, Tensor]]):
    """Pair ``p`` is ``(input of item ids1[p], input of item ids2[p])`` of ``source``."""

    def __init__(self, source: Any, ids1: Sequence[int], ids2: Sequence[int], key: str) -> None:
        self.source = source
        self.ids1 = ids1
        self.ids2 = ids2
        self.key = key

    def __len__(self) -> int:
        return len(self.ids1)

    def _input(self, i: int) -> Tensor:
        item = self.source[i]
        x = item[self.key] if isinstance(item, Mapping) else item
        if not isinstance(x, Tensor):
            where = f"key {self.key!r} of item {i}" if isinstance(item, Mapping) else f"item {i}"
            raise TypeError(f"pairwise_images: {where} of the dataset is a {type(x).__name__}, not a tensor")
        return x

    def __getitem__(self, p: int) -> tuple[Tensor, Tensor]:
        i, j = self.ids1[p], self.ids2[p]
        x1, x2 = self._input(i), self._input(j)
        if x1.shape != x2.shape:
            raise InputSizeError(
                f"pairwise_images: dataset items {i} and {j} have different sizes {tuple(x1.shape)} and "
                f"{tuple(x2.shape)}: the transforms must resize every image to one size"
            )
        return x1, x2


def _collate_pairs(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    shapes = {tuple(x.shape) for pair in batch for x in pair}
    if len(shapes) > 1:
        raise InputSizeError(
            f"pairwise_images: the dataset gives images of several sizes {sorted(shapes)}: the transforms must "
            f"resize every image to one size"
        )
    return torch.stack([p[0] for p in batch]), torch.stack([p[1] for p in batch])


class PairwiseImagesReranker(_PairwiseReranker):
    """Re-ranks the top ``top_n`` of each query with a pairwise model over images (STIR).

    Args:
        top_n: how many leading results of each query to re-score (>= 2; 5 in OML's STIR recipe).
        pairwise_model: e.g. ``concat_siamese``.
        batch_size: pairs per model call (and per ``DataLoader`` batch).
        num_workers: ``DataLoader`` worker processes reading the images.
        autocast: run the model under ``torch.autocast`` with ``autocast_dtype``.
        device: where the model runs (it is moved there); None: where its parameters are.
        input_key: the key of the image tensor in the dataset's items (``input_tensors`` for omlcore's
            image datasets); items that are tensors themselves are used as they are.

    ``dataset`` of :meth:`process` is a map-style dataset indexed by ``query_ids`` and ``retrieved``,
    whose transforms give every image one size (checked: a clear error otherwise). Cost: ``Q x top_n``
    pairs read and scored, independent of the gallery size.
    """

    name = "pairwise_images"
    reads: Literal["embeddings", "items", "nothing"] = "items"

    def __init__(
        self,
        top_n: int,
        pairwise_model: PairwiseModel,
        batch_size: int = 128,
        num_workers: int = 0,
        autocast: bool = False,
        autocast_dtype: Literal["float16", "bfloat16"] = "float16",
        device: str | None = None,
        input_key: str = "input_tensors",
    ) -> None:
        super().__init__(top_n, pairwise_model, batch_size, autocast, autocast_dtype, device)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"{self.name}: num_workers must be an int >= 0, got {num_workers!r}")
        self.num_workers = num_workers
        self.input_key = input_key

    def _score(self, ids1: Tensor, ids2: Tensor, dataset: Any) -> Tensor:
        if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ValueError(f"{self.name}: pass the image dataset (indexable, with a length) as the dataset argument")
        _check_ids(ids1, len(dataset), self.name)
        _check_ids(ids2, len(dataset), self.name)
        pairs = _PairsDataset(dataset, ids1.tolist(), ids2.tolist(), self.input_key)
        loader = DataLoader(
            pairs,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate_pairs,
            pin_memory=self._device().type == "cuda",
        )
        return self._predict_batches(loader)


class ConstantThresholding:
    """Drops every retrieved item whose distance exceeds ``th`` (it becomes padding: ``-1`` / ``inf``).

    Items at distance ``<= th`` are kept. Rows are sorted, so the dropped items are a suffix of each row.
    ``top_n`` is ``None``: every column is read. ``dataset`` is not used.
    """

    name = "constant_thresholding"
    reads: Literal["embeddings", "items", "nothing"] = "nothing"

    def __init__(self, th: float) -> None:
        if isinstance(th, bool) or not isinstance(th, (int, float)) or math.isnan(th):
            raise ValueError(f"{self.name}: th must be a number, got {th!r}")
        self.th = float(th)
        self.top_n: int | None = None

    def __repr__(self) -> str:
        return f"ConstantThresholding(th={self.th})"

    def process(
        self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any = None
    ) -> tuple[Tensor, Tensor]:
        """The rows with the items above ``th`` turned into padding."""
        check_topk(distances, retrieved, query_ids, self.name)
        drop = distances > self.th
        return distances.masked_fill(drop, math.inf), retrieved.masked_fill(drop, -1)


class AdaptiveThresholding:
    """Cuts each row at its first unusually large jump in distance.

    For a row with ``m >= 2`` retrieved items (padding excluded) at distances ``d_1 <= ... <= d_m``, let
    the gaps be ``g_i = d_{i+1} - d_i`` (``i = 1..m-1``), ``mean`` their mean and ``std`` their population
    standard deviation (divided by ``m - 1``), computed in float64. The row is cut at the first ``i``
    with ``g_i > mean + n_std * std``: items ``1..i`` are kept, ``i+1..m`` become padding. A row with no
    such gap (every gap equal, a single gap, or ``m < 2``) is kept whole.

    The statistics are over the ``K`` items the search returned, so the cut depends on ``K`` (the
    depth the metrics or the caller asked for). ``top_n`` is ``None``; ``dataset`` is not used.
    """

    name = "adaptive_thresholding"
    reads: Literal["embeddings", "items", "nothing"] = "nothing"

    def __init__(self, n_std: float) -> None:
        if isinstance(n_std, bool) or not isinstance(n_std, (int, float)) or not math.isfinite(n_std):
            raise ValueError(f"{self.name}: n_std must be a finite number, got {n_std!r}")
        self.n_std = float(n_std)
        self.top_n: int | None = None

    def __repr__(self) -> str:
        return f"AdaptiveThresholding(n_std={self.n_std})"

    def keep_counts(self, distances: Tensor, retrieved: Tensor) -> Tensor:
        """``(Q,)`` how many leading items of each row are kept."""
        k = distances.shape[1]
        d = distances.double()
        present = (retrieved >= 0) & torch.isfinite(d)
        if k < 2:
            return present.sum(dim=1)
        gaps = d[:, 1:] - d[:, :-1]
        gv = present[:, 1:] & present[:, :-1]
        count = gv.sum(dim=1).clamp(min=1).double()
        zero = torch.zeros((), dtype=torch.double)
        mean = torch.where(gv, gaps, zero).sum(dim=1) / count
        var = torch.where(gv, (gaps - mean[:, None]) ** 2, zero).sum(dim=1) / count
        limit = mean + self.n_std * var.sqrt()
        exceed = gv & (gaps > limit[:, None])
        first = exceed.to(torch.int8).argmax(dim=1)
        return torch.where(exceed.any(dim=1), first + 1, present.sum(dim=1))

    def process(
        self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any = None
    ) -> tuple[Tensor, Tensor]:
        """The rows with the items after each row's cut turned into padding."""
        check_topk(distances, retrieved, query_ids, self.name)
        keep = self.keep_counts(distances, retrieved).to(distances.device)
        drop = torch.arange(distances.shape[1], device=distances.device)[None, :] >= keep[:, None]
        return distances.masked_fill(drop, math.inf), retrieved.masked_fill(drop, -1)
