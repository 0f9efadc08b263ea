"""Exact, streaming k-nearest-neighbour search with a total tie order, and exclusion of pairs.

Results are ordered by the pair ``(distance, gallery index)``: among equal distances the smaller gallery
index comes first. Every backend that follows this order returns the same rows whatever its chunk sizes,
so metrics computed from them do not depend on how the data was split.

Memory: :class:`TorchKnn` holds one ``query_chunk x gallery_chunk`` distance block plus the running
``Q x k`` result, never a full ``Q x G`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from omlcore.protocols import KnnBackend

__all__ = ["Exclusions", "TorchKnn", "knn_with_exclusions", "pair_distances"]

KnnMetric = Literal["l2", "cosine", "dot"]
_METRICS: tuple[str, ...] = ("l2", "cosine", "dot")


@dataclass(frozen=True)
class Exclusions:
    """Query-gallery pairs that must never be returned by a search.

    A pair ``(q, g)`` (a query row and a gallery row, in the order passed to ``search``) is excluded when
    any of these holds:

    - ``query_ids[q] == gallery_ids[g]`` (both given): the same sample, e.g. a row that is both query and
      gallery (pass the dataset row index as its id on both sides);
    - ``query_sequence[q] == gallery_sequence[g]`` (both given): the two share a sequence;
    - ``g in ignore[q]`` (given): an explicit list of gallery positions per query.

    Ids and sequences are integer tensors of shapes ``(Q,)`` and ``(G,)``; ``ignore`` has one entry per
    query.
    """

    query_ids: Tensor | None = None
    gallery_ids: Tensor | None = None
    query_sequence: Tensor | None = None
    gallery_sequence: Tensor | None = None
    ignore: Sequence[Sequence[int]] | None = None

    def validate(self, n_queries: int, n_gallery: int) -> None:
        """Raise ``ValueError`` unless every field has the right length and pairs are given together."""
        for name, q, g in (
            ("ids", self.query_ids, self.gallery_ids),
            ("sequence", self.query_sequence, self.gallery_sequence),
        ):
            if (q is None) != (g is None):
                raise ValueError(f"Exclusions: query_{name} and gallery_{name} must be given together")
            if q is not None and g is not None:
                if q.ndim != 1 or q.shape[0] != n_queries:
                    raise ValueError(f"Exclusions: query_{name} has shape {tuple(q.shape)}, expected ({n_queries},)")
                if g.ndim != 1 or g.shape[0] != n_gallery:
                    raise ValueError(f"Exclusions: gallery_{name} has shape {tuple(g.shape)}, expected ({n_gallery},)")
        if self.ignore is not None:
            if len(self.ignore) != n_queries:
                raise ValueError(
                    f"Exclusions: ignore has {len(self.ignore)} entries, expected one per query ({n_queries})"
                )
            for qi, row in enumerate(self.ignore):
                for item in row:
                    if not 0 <= int(item) < n_gallery:
                        raise ValueError(f"Exclusions: ignore[{qi}] holds {item}, outside range(0, {n_gallery})")

    @property
    def empty(self) -> bool:
        """True when nothing is excluded."""
        return self.query_ids is None and self.query_sequence is None and not any(len(r) for r in self.ignore or ())

    def ignore_pairs(self) -> tuple[Tensor, Tensor]:
        """The explicit ignore list as two long tensors ``(query positions, gallery positions)``, sorted by
        query then gallery position, duplicates removed."""
        qs: list[int] = []
        gs: list[int] = []
        for q, row in enumerate(self.ignore or ()):
            for g in sorted({int(x) for x in row}):
                qs.append(q)
                gs.append(g)
        return torch.tensor(qs, dtype=torch.long), torch.tensor(gs, dtype=torch.long)

    def counts(self, n_queries: int, n_gallery: int) -> Tensor:
        """``(Q,)`` number of gallery rows excluded for each query, exactly (no pair counted twice)."""
        return excluded_counts(self, n_queries, n_gallery)

    def block_mask(
        self, q0: int, q1: int, g0: int, g1: int, pairs: tuple[Tensor, Tensor] | None = None
    ) -> Tensor | None:
        """Boolean ``(q1 - q0, g1 - g0)`` mask of the excluded pairs in a block (``None`` if none).

        ``pairs`` is :meth:`ignore_pairs`, precomputed by callers that visit many blocks.
        """
        mask: Tensor | None = None
        if self.query_ids is not None and self.gallery_ids is not None:
            mask = self.query_ids[q0:q1, None] == self.gallery_ids[None, g0:g1]
        if self.query_sequence is not None and self.gallery_sequence is not None:
            same = self.query_sequence[q0:q1, None] == self.gallery_sequence[None, g0:g1]
            mask = same if mask is None else mask | same
        if self.ignore is not None:
            pq, pg = pairs if pairs is not None else self.ignore_pairs()
            if pq.numel():
                lo = int(torch.searchsorted(pq, torch.tensor(q0)).item())
                hi = int(torch.searchsorted(pq, torch.tensor(q1)).item())
                bq, bg = pq[lo:hi], pg[lo:hi]
                inside = (bg >= g0) & (bg < g1)
                if bool(inside.any()):
                    if mask is None:
                        mask = torch.zeros(q1 - q0, g1 - g0, dtype=torch.bool)
                    mask = mask.clone()
                    mask[bq[inside] - q0, bg[inside] - g0] = True
        return mask


def _group_counts(query_keys: Tensor, gallery_keys: Tensor) -> Tensor:
    """For each query row of ``query_keys`` ``(Q, c)``, how many rows of ``gallery_keys`` ``(G, c)`` equal it."""
    both = torch.cat([query_keys, gallery_keys], dim=0)
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    n_q = query_keys.shape[0]
    per_group = torch.bincount(inverse[n_q:], minlength=int(inverse.max().item()) + 1 if inverse.numel() else 0)
    return per_group[inverse[:n_q]]


def excluded_counts(
    exclusions: Exclusions,
    n_queries: int,
    n_gallery: int,
    query_keys: Tensor | None = None,
    gallery_keys: Tensor | None = None,
) -> Tensor:
    """``(Q,)`` count of excluded gallery rows per query, optionally only those whose key equals the query's.

    With ``query_keys``/``gallery_keys`` (long ``(Q,)``/``(G,)``, e.g. labels) only gallery rows sharing
    the query's key are counted (the excluded positives). Inclusion-exclusion over the three conditions,
    computed with group counts in ``O((Q + G) log(Q + G))`` plus the ignore list's length.
    """
    zeros_q = torch.zeros(n_queries, dtype=torch.long)
    zeros_g = torch.zeros(n_gallery, dtype=torch.long)
    kq = (query_keys if query_keys is not None else zeros_q).long().view(-1, 1)
    kg = (gallery_keys if gallery_keys is not None else zeros_g).long().view(-1, 1)
    has_ids = exclusions.query_ids is not None and exclusions.gallery_ids is not None
    has_seq = exclusions.query_sequence is not None and exclusions.gallery_sequence is not None
    total = torch.zeros(n_queries, dtype=torch.long)
    if n_queries == 0 or n_gallery == 0:
        return total
    if has_ids:
        assert exclusions.query_ids is not None
        assert exclusions.gallery_ids is not None
        qi, gi = exclusions.query_ids.long().view(-1, 1), exclusions.gallery_ids.long().view(-1, 1)
        total += _group_counts(torch.cat([kq, qi], 1), torch.cat([kg, gi], 1))
    if has_seq:
        assert exclusions.query_sequence is not None
        assert exclusions.gallery_sequence is not None
        qs, gs = exclusions.query_sequence.long().view(-1, 1), exclusions.gallery_sequence.long().view(-1, 1)
        total += _group_counts(torch.cat([kq, qs], 1), torch.cat([kg, gs], 1))
        if has_ids:
            assert exclusions.query_ids is not None
            assert exclusions.gallery_ids is not None
            qi, gi = exclusions.query_ids.long().view(-1, 1), exclusions.gallery_ids.long().view(-1, 1)
            total -= _group_counts(torch.cat([kq, qi, qs], 1), torch.cat([kg, gi, gs], 1))
    if exclusions.ignore is not None:
        pq, pg = exclusions.ignore_pairs()
        if pq.numel():
            keep = kq[pq, 0] == kg[pg, 0]
            if has_ids:
                assert exclusions.query_ids is not None
                assert exclusions.gallery_ids is not None
                keep &= exclusions.query_ids[pq] != exclusions.gallery_ids[pg]
            if has_seq:
                assert exclusions.query_sequence is not None
                assert exclusions.gallery_sequence is not None
                keep &= exclusions.query_sequence[pq] != exclusions.gallery_sequence[pg]
            total += torch.bincount(pq[keep], minlength=n_queries)
    return total


def pair_distances(queries: Tensor, gallery: Tensor, metric: str) -> Tensor:
    """Distances ``(q, g)`` between two blocks of rows: Euclidean (``"l2"``), ``1 - cosine similarity``
    (``"cosine"``, rows are normalised here) or ``-(q . g)`` (``"dot"``).

    L2 uses ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))``; computed in the inputs' dtype.
    """
    # In-place arithmetic on fresh blocks: at most two block-sized buffers, same bits as the plain formulas
    # (scaling by -1 or -2 is exact, so ``a + (-2) * b`` rounds like ``a - 2 * b``).
    if metric == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=1)
        gallery = torch.nn.functional.normalize(gallery, dim=1)
        return (queries @ gallery.T).neg_().add_(1.0)
    if metric == "dot":
        return (queries @ gallery.T).neg_()
    if metric == "l2":
        dot = queries @ gallery.T
        sq = (queries * queries).sum(1, keepdim=True) + (gallery * gallery).sum(1)[None, :]
        sq.add_(dot, alpha=-2.0)
        del dot
        return sq.clamp_(min=0.0).sqrt_()
    raise ValueError(f"unknown distance metric {metric!r}; expected one of {list(_METRICS)}")


def _block_topk(dist: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest entries of every row of ``dist`` in ``(value, column)`` order, exactly.

    ``torch.topk`` may pick any of several equal values at the k-th place; rows where that can happen
    (more than ``k`` entries at most the k-th value, i.e. the (k+1)-th smallest equals the k-th) are redone
    with a stable sort. Asking ``topk`` for ``k + 1`` entries finds them without another pass over ``dist``.
    """
    if k < dist.shape[1]:
        values, cols = torch.topk(dist, k + 1, dim=1, largest=False, sorted=True)
        ambiguous = values[:, k] == values[:, k - 1]
        values, cols = values[:, :k].contiguous(), cols[:, :k].contiguous()
    else:
        values, cols = torch.topk(dist, k, dim=1, largest=False, sorted=True)
        ambiguous = torch.zeros(dist.shape[0], dtype=torch.bool, device=dist.device)
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().flatten()
        v2, c2 = torch.sort(dist[rows], dim=1, stable=True)
        values[rows], cols[rows] = v2[:, :k], c2[:, :k]
    # Order the k winners by (value, column): sort by column, then stable-sort by value.
    cols, order = cols.sort(dim=1)
    values = values.gather(1, order)
    values, order = values.sort(dim=1, stable=True)
    return values, cols.gather(1, order)


class TorchKnn:
    """Exact brute-force kNN in torch, streaming over query and gallery chunks (CPU or GPU).

    ``metric``: ``"l2"`` (Euclidean), ``"cosine"`` (``1 - cosine similarity``) or ``"dot"``
    (``-(q . g)``). ``query_chunk`` x ``gallery_chunk`` bounds the distance block held at once;
    ``device`` is where distances are computed (default: the queries' device); results are returned on
    the queries' device.

    Rows are sorted by ``(distance, gallery index)``; the result does not depend on the chunk sizes as long
    as the distance of a pair is computed to the same bits (true for the same device and dtype, apart
    from BLAS kernels that round differently for different block shapes; near-ties within float rounding
    may then swap).
    """

    def __init__(
        self,
        metric: KnnMetric = "l2",
        query_chunk: int = 1024,
        gallery_chunk: int = 65536,
        device: str | None = None,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"TorchKnn: unknown metric {metric!r}; expected one of {list(_METRICS)}")
        for name, value in (("query_chunk", query_chunk), ("gallery_chunk", gallery_chunk)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TorchKnn: {name} must be a positive int, got {value!r}")
        self.metric: str = metric
        self.query_chunk = query_chunk
        self.gallery_chunk = gallery_chunk
        self.device = torch.device(device) if device is not None else None

    def __repr__(self) -> str:
        return (
            f"TorchKnn(metric={self.metric!r}, query_chunk={self.query_chunk}, "
            f"gallery_chunk={self.gallery_chunk}, device={str(self.device) if self.device else None!r})"
        )

    def blocks(self, queries: Tensor, gallery: Tensor) -> Iterator[tuple[int, int, int, int, Tensor]]:
        """Yield ``(q0, q1, g0, g1, distances)`` for every block, queries outer, gallery inner, in order.

        ``distances`` is the ``(q1 - q0, g1 - g0)`` block on the compute device.
        """
        _check_inputs(queries, gallery)
        device = self.device or queries.device
        for q0 in range(0, queries.shape[0], self.query_chunk):
            q1 = min(q0 + self.query_chunk, queries.shape[0])
            qc = queries[q0:q1].to(device)
            for g0 in range(0, gallery.shape[0], self.gallery_chunk):
                g1 = min(g0 + self.gallery_chunk, gallery.shape[0])
                yield q0, q1, g0, g1, pair_distances(qc, gallery[g0:g1].to(device), self.metric)

    def search(
        self, queries: Tensor, gallery: Tensor, k: int, *, exclude: Exclusions | None = None
    ) -> tuple[Tensor, Tensor]:
        """The ``min(k, G)`` nearest gallery rows of every query: ``(distances float, indices long)``.

        Rows are sorted by ``(distance, gallery index)``. With ``exclude``, excluded pairs are never
        returned; a query with fewer than ``min(k, G)`` admissible gallery rows gets its row padded with
        distance ``inf`` and index ``-1``.
        """
        _check_k(k)
        _check_inputs(queries, gallery)
        n_q, n_g = queries.shape[0], gallery.shape[0]
        kk = min(k, n_g)
        out_device = queries.device
        if exclude is not None:
            exclude.validate(n_q, n_g)
            if exclude.empty:
                exclude = None
        pairs = exclude.ignore_pairs() if exclude is not None and exclude.ignore is not None else None
        out_d = torch.empty(n_q, kk, dtype=queries.dtype, device=out_device)
        out_i = torch.empty(n_q, kk, dtype=torch.long, device=out_device)
        if kk == 0 or n_q == 0:
            return out_d, out_i
        run_d: Tensor | None = None
        run_i: Tensor | None = None
        for q0, q1, g0, g1, dist in self.blocks(queries, gallery):
            if g0 == 0:
                run_d, run_i = None, None
            if exclude is not None:
                mask = exclude.block_mask(q0, q1, g0, g1, pairs)
                if mask is not None:
                    dist = dist.masked_fill_(mask.to(dist.device), math.inf)  # a fresh block: no copy
            d_blk, i_blk = _block_topk(dist, min(kk, g1 - g0))
            i_blk = i_blk + g0
            if run_d is None or run_i is None:
                run_d, run_i = d_blk, i_blk
            else:
                # Running entries have smaller gallery indices than this block's, and both parts are sorted
                # by (distance, index): a stable sort by distance keeps the total order.
                cat_d, cat_i = torch.cat([run_d, d_blk], 1), torch.cat([run_i, i_blk], 1)
                cat_d, order = cat_d.sort(dim=1, stable=True)
                run_d, run_i = cat_d[:, :kk], cat_i.gather(1, order)[:, :kk]
            if g1 == n_g:
                assert run_i is not None
                out_d[q0:q1] = run_d.to(out_device)
                out_i[q0:q1] = run_i.to(out_device)
        if exclude is not None:
            out_i[torch.isinf(out_d)] = -1
        return out_d, out_i


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")


def _check_inputs(queries: Tensor, gallery: Tensor) -> None:
    for name, x in (("queries", queries), ("gallery", gallery)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries have dimension {queries.shape[1]} but gallery rows have {gallery.shape[1]}")


def knn_with_exclusions(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    backend: KnnBackend,
    exclusions: Exclusions | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``min(k, G)`` nearest admissible gallery rows per query with any :class:`KnnBackend`.

    :class:`TorchKnn` masks excluded pairs inside its blocks. Other backends are asked for
    ``k + m`` neighbours, ``m`` the largest number of excluded rows of any query (counted exactly), and the
    excluded ones are dropped: since the backend's rows follow the ``(distance, index)`` order, the first
    ``k`` admissible rows of that answer are exactly the ``k`` nearest admissible rows, however many
    excluded rows tie with them. Rows short of ``min(k, G)`` admissible neighbours are padded with
    ``inf`` / ``-1``.
    """
    _check_k(k)
    _check_inputs(queries, gallery)
    if isinstance(backend, TorchKnn):
        return backend.search(queries, gallery, k, exclude=exclusions)
    n_q, n_g = queries.shape[0], gallery.shape[0]
    if exclusions is None or exclusions.empty:
        return backend.search(queries, gallery, k)
    exclusions.validate(n_q, n_g)
    kk = min(k, n_g)
    extra = int(exclusions.counts(n_q, n_g).max().item()) if n_q else 0
    dist, idx = backend.search(queries, gallery, min(kk + extra, n_g))
    dist, idx = dist.cpu(), idx.cpu()
    pairs = exclusions.ignore_pairs() if exclusions.ignore is not None else None
    bad = torch.zeros_like(idx, dtype=torch.bool)
    rows = torch.arange(n_q)[:, None].expand_as(idx)
    if exclusions.query_ids is not None and exclusions.gallery_ids is not None:
        bad |= exclusions.query_ids[rows] == exclusions.gallery_ids[idx]
    if exclusions.query_sequence is not None and exclusions.gallery_sequence is not None:
        bad |= exclusions.query_sequence[rows] == exclusions.gallery_sequence[idx]
    if pairs is not None and pairs[0].numel():
        key_pairs = pairs[0] * n_g + pairs[1]
        bad |= torch.isin(rows * n_g + idx, key_pairs)
    # Stable sort puts admissible rows first, in their original (distance, index) order.
    order = bad.to(torch.int8).sort(dim=1, stable=True).indices[:, :kk]
    out_d = dist.gather(1, order).clone()
    out_i = idx.gather(1, order).clone()
    dropped = bad.gather(1, order)
    out_d[dropped] = math.inf
    out_i[dropped] = -1
    return out_d.to(queries.device), out_i.to(queries.device)
