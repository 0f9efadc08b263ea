"""Exact, streaming k-nearest-neighbour search with a total tie order, and exclusion of pairs.

Results are ordered by the pair ``(distance, gallery index)``: among equal distances the smaller gallery
index comes first. Every backend that follows this order returns the same rows whatever its chunk sizes,
so metrics computed from them do not depend on how the data was split. The distances themselves are
:func:`exact_distances`: float64 from the two rows, rounded once to the queries' dtype.

Memory: :class:`TorchKnn` holds one ``query_chunk x gallery_chunk`` block of ranking keys plus the running
``Q x (k + slack)`` candidates, never a full ``Q x G`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from omlcore.protocols import KnnBackend

__all__ = [
    "Exclusions",
    "TorchKnn",
    "exact_distances",
    "exact_pair_distances",
    "knn_with_exclusions",
    "pair_distances",
]

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

    L2 uses ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))``; computed in the inputs' dtype from one matrix product,
    so the last bits can depend on the block's shape. Used for fnmr@fmr's streamed pair distances;
    :meth:`TorchKnn.search` returns :func:`exact_distances` instead.
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


def exact_distances(queries: Tensor, gallery: Tensor, indices: Tensor, metric: str) -> Tensor:
    """Float64 ``(r, m)`` distances from each query row to the gallery rows ``indices`` ``(r, m)``.

    The reference values of every search: a function of the two rows alone (never of a block's shape),
    computed in float64 from the rows as given. ``"l2"``: ``sqrt(sum((q - g)^2))`` (from the difference,
    no cancellation); ``"cosine"``: ``1 - q.g / sqrt(|q|^2 |g|^2)`` clamped to ``[0, 2]``, 1 when either row
    is zero; ``"dot"``: ``-(q . g)``. Index ``-1`` gives ``inf``. Works in slices of at most
    :data:`EXACT_ELEMENTS` float64 elements.
    """
    r, m = indices.shape
    out = torch.empty(r, m, dtype=torch.float64, device=indices.device)
    if r == 0 or m == 0:
        return out
    dim = max(1, queries.shape[1])
    cols = max(1, min(m, EXACT_ELEMENTS // dim))
    rows = max(1, EXACT_ELEMENTS // (cols * dim))
    for r0 in range(0, r, rows):
        q = queries[r0 : r0 + rows].to(device=indices.device, dtype=torch.float64)
        for c0 in range(0, m, cols):
            idx = indices[r0 : r0 + rows, c0 : c0 + cols]
            g = gallery[idx.clamp(min=0).to(gallery.device)].to(device=indices.device, dtype=torch.float64)
            if metric == "l2":
                d = g.sub_(q[:, None, :]).square_().sum(2).sqrt_()
            elif metric == "cosine":
                dot = (g * q[:, None, :]).sum(2)
                norms = (q.square().sum(1, keepdim=True) * g.square_().sum(2)).sqrt_()
                cos = torch.where(norms > 0, dot / norms.clamp(min=1e-300), torch.zeros_like(dot))
                d = cos.neg_().add_(1.0).clamp_(0.0, 2.0)
            elif metric == "dot":
                d = g.mul_(q[:, None, :]).sum(2).neg_()
            else:
                raise ValueError(f"unknown distance metric {metric!r}; expected one of {list(_METRICS)}")
            out[r0 : r0 + rows, c0 : c0 + cols] = d.masked_fill_(idx < 0, math.inf)
    return out


def exact_pair_distances(queries: Tensor, gallery: Tensor, metric: str) -> Tensor:
    """Float64 ``(Q, G)`` :func:`exact_distances` between all rows (small inputs: figures, tests)."""
    idx = torch.arange(gallery.shape[0], device=queries.device).expand(queries.shape[0], -1)
    return exact_distances(queries, gallery, idx, metric)


# ---- the ranked search ---------------------------------------------------------------------------------------

EXACT_ELEMENTS = 1 << 22
"""At most this many float64 elements (32 MiB) are gathered at once when distances are recomputed exactly."""
_GROUP = 32
"""Columns per group of the two-level selection: a block's column groups are ranked by their minimum first."""


def _pool_size(k: int, n_gallery: int) -> int:
    """Candidates kept per query: ``k`` plus a slack, so that near-ties at the k-th place rarely need a
    second pass."""
    return min(n_gallery, k + max(3, k // 8))


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of the matrix products in ``dtype`` on ``device``, allowing for reduced-precision
    float32 products (TF32/bfloat16) when torch is set to use them."""
    if dtype == torch.float64:
        return 2.0**-53
    reduced = torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda":
        reduced = reduced or bool(torch.backends.cuda.matmul.allow_tf32)
    return 2.0**-8 if reduced else 2.0**-24


def _sq_norms(x: Tensor, device: torch.device) -> Tensor:
    """Float64 squared row norms of ``x`` on ``device``, computed in slices (no full float64 copy)."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=device)
    step = max(1, EXACT_ELEMENTS // max(1, x.shape[1]))
    for s in range(0, x.shape[0], step):
        out[s : s + step] = x[s : s + step].to(device=device, dtype=torch.float64).square().sum(1)
    return out


def _unit_rows(x: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Rows of ``x`` scaled to unit length in float64 and rounded once to ``dtype`` (zero rows stay zero)."""
    out = torch.empty(x.shape, dtype=dtype, device=device)
    step = max(1, EXACT_ELEMENTS // max(1, x.shape[1]))
    for s in range(0, x.shape[0], step):
        rows = x[s : s + step].to(device=device, dtype=torch.float64)
        norms = rows.square().sum(1, keepdim=True).sqrt_()
        out[s : s + step] = rows / torch.where(norms > 0, norms, torch.ones_like(norms))  # rows may alias x
    return out


def _select(keys: Tensor, p: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``p`` smallest keys of each row of a block: ``(keys (r, p), columns (r, p), bound (r,))``.

    Every key left out is ``>= bound``. Rows shorter than ``p`` are padded with ``inf`` / ``-1``. Wide
    blocks use a two-level selection: the minimum of every group of :data:`_GROUP` columns (strided groups,
    one vectorised pass), the ``p + 1`` groups with the smallest minima, then the ``p + 1`` smallest keys
    among those groups' columns; any other column lies in a group whose minimum is at least the largest
    selected minimum.
    """
    r, n = keys.shape
    if n <= p:
        out_k = torch.full((r, p), math.inf, dtype=keys.dtype, device=keys.device)
        out_c = torch.full((r, p), -1, dtype=torch.long, device=keys.device)
        out_k[:, :n] = keys
        out_c[:, :n] = torch.arange(n, device=keys.device)
        return out_k, out_c, torch.full((r,), math.inf, dtype=keys.dtype, device=keys.device)
    n_groups = n // _GROUP
    cols: Tensor | None = None
    if n_groups >= 4 * (p + 1):
        width = n_groups * _GROUP
        mins = keys[:, :width].view(r, _GROUP, n_groups).amin(1)
        min_v, min_g = mins.topk(p + 1, dim=1, largest=False, sorted=False)
        bound = min_v.amax(1)
        cols = (min_g[:, :, None] + n_groups * torch.arange(_GROUP, device=keys.device)).view(r, -1)
        if width < n:
            tail = torch.arange(width, n, device=keys.device).expand(r, -1)
            cols = torch.cat([cols, tail], 1)
        cand = keys.gather(1, cols)
    else:
        cand = keys
        bound = torch.full((r,), math.inf, dtype=keys.dtype, device=keys.device)
    values, pos = cand.topk(p + 1, dim=1, largest=False, sorted=True)
    bound = torch.minimum(bound, values[:, p])
    pos = pos[:, :p]
    return values[:, :p], (pos if cols is None else cols.gather(1, pos)), bound


def _merge(
    run: tuple[Tensor, Tensor, Tensor], new: tuple[Tensor, Tensor, Tensor], p: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Combine two candidate pools ``(keys, gallery indices, bound)`` of the same queries into one of size
    ``p``; every key left out of the result is ``>=`` its bound."""
    keys = torch.cat([run[0], new[0]], 1)
    idx = torch.cat([run[1], new[1]], 1)
    values, pos = keys.topk(p + 1, dim=1, largest=False, sorted=True)
    bound = torch.minimum(torch.minimum(run[2], new[2]), values[:, p])
    return values[:, :p], idx.gather(1, pos[:, :p]), bound


def _round_up(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` (float64) in ``dtype``, rounded towards ``+inf`` so that nothing ``<= x`` is lost."""
    y = x.to(dtype)
    return torch.where(y.double() < x, torch.nextafter(y, torch.full_like(y, math.inf)), y)


def _sort_exact(dist: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Rows sorted by ``(distance, index)`` (index ``-1`` padding last, it carries ``inf``); first ``k``."""
    by_index = torch.where(idx < 0, torch.iinfo(torch.long).max, idx).argsort(dim=1, stable=True)
    dist, idx = dist.gather(1, by_index), idx.gather(1, by_index)
    by_dist = dist.argsort(dim=1, stable=True)[:, :k]
    return dist.gather(1, by_dist), idx.gather(1, by_dist)


class _ExclusionPlan:
    """How :class:`Exclusions` are applied to key blocks: equal ids as a sparse list of pairs when there are
    few (one per query when ids are unique), merged with the ignore list and written as ``inf`` entry by
    entry; sequences (and ids shared by many rows) by comparing the block's ids."""

    def __init__(self, exclude: Exclusions | None, n_q: int, n_g: int, device: torch.device) -> None:
        self.device = device
        self.ids: tuple[Tensor, Tensor] | None = None
        self.seq: tuple[Tensor, Tensor] | None = None
        self.pairs: tuple[Tensor, Tensor] | None = None
        if exclude is None:
            return
        pq: list[Tensor] = []
        pg: list[Tensor] = []
        if exclude.query_ids is not None and exclude.gallery_ids is not None:
            sparse = _equal_pairs(exclude.query_ids.cpu(), exclude.gallery_ids.cpu(), 4 * (n_q + n_g) + 1024)
            if sparse is None:
                self.ids = (exclude.query_ids.to(device), exclude.gallery_ids.to(device))
            else:
                pq.append(sparse[0])
                pg.append(sparse[1])
        if exclude.query_sequence is not None and exclude.gallery_sequence is not None:
            self.seq = (exclude.query_sequence.to(device), exclude.gallery_sequence.to(device))
        if exclude.ignore is not None:
            iq, ig = exclude.ignore_pairs()
            pq.append(iq)
            pg.append(ig)
        if pq:
            q_all, g_all = torch.cat(pq), torch.cat(pg)
            if q_all.numel():
                order = q_all.argsort(stable=True)
                self.pairs = (q_all[order], g_all[order])

    def for_gallery(self, g0: int, g1: int) -> tuple[Tensor, Tensor] | None:
        """The sparse pairs whose gallery row lies in ``[g0, g1)`` (query-sorted; columns relative to ``g0``)."""
        if self.pairs is None:
            return None
        pq, pg = self.pairs
        inside = (pg >= g0) & (pg < g1)
        if not bool(inside.any()):
            return None
        return pq[inside].to(self.device), (pg[inside] - g0).to(self.device)

    def apply(
        self,
        keys: Tensor,
        rows: Tensor | tuple[int, int],
        g0: int,
        g1: int,
        pairs: tuple[Tensor, Tensor] | None,
        fill: float = math.inf,
    ) -> None:
        """Write ``fill`` over the excluded entries of the block of query ``rows`` (a ``(q0, q1)`` range or
        sorted positions) and gallery rows ``[g0, g1)``; ``pairs`` is :meth:`for_gallery`'s answer."""
        if pairs is not None:
            pq, pg = pairs
            if isinstance(rows, tuple):
                lo, hi = (int(v) for v in torch.searchsorted(pq, torch.tensor(rows, device=pq.device)).tolist())
                if hi > lo:
                    keys[pq[lo:hi] - rows[0], pg[lo:hi]] = fill
            else:
                local = torch.full((int(rows.max()) + 1,), -1, dtype=torch.long, device=pq.device)
                local[rows] = torch.arange(rows.numel(), device=pq.device)
                hit = pq <= rows.max()
                r = local[pq[hit]]
                keys[r[r >= 0], pg[hit][r >= 0]] = fill
        for both in (self.ids, self.seq):
            if both is not None:
                q_vals = both[0][rows[0] : rows[1]] if isinstance(rows, tuple) else both[0][rows]
                keys.masked_fill_(q_vals[:, None] == both[1][None, g0:g1], fill)


def _equal_pairs(query_ids: Tensor, gallery_ids: Tensor, limit: int) -> tuple[Tensor, Tensor] | None:
    """All ``(q, g)`` with ``query_ids[q] == gallery_ids[g]``, sorted by ``q``; ``None`` if more than ``limit``."""
    order = gallery_ids.argsort(stable=True)
    sorted_ids = gallery_ids[order]
    lo = torch.searchsorted(sorted_ids, query_ids)
    hi = torch.searchsorted(sorted_ids, query_ids, right=True)
    counts = hi - lo
    total = int(counts.sum())
    if total > limit:
        return None
    pq = torch.repeat_interleave(torch.arange(query_ids.shape[0]), counts)
    offsets = torch.arange(total) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    pg = order[torch.repeat_interleave(lo, counts) + offsets]
    return pq, pg


class TorchKnn:
    """Exact brute-force kNN in torch, streaming over gallery and query chunks (CPU or GPU).

    ``metric``: ``"l2"`` (Euclidean), ``"cosine"`` (``1 - cosine similarity``) or ``"dot"``
    (``-(q . g)``). ``query_chunk`` x ``gallery_chunk`` bounds the block of ranking keys held at once;
    ``device`` is where they are computed (default: the queries' device); results are returned on the
    queries' device.

    How a search stays exact: each block is one matrix product of a *ranking key* that orders a query's
    row like the distance does (l2: ``|g|^2 - 2 q.g``, or ``-2 q.g`` when all gallery rows have nearly the
    same norm, the spread being accounted for; cosine: ``-(q.g)`` of normalised rows; dot: ``-(q.g)``). Each
    query keeps its ``k + slack`` smallest keys and a lower bound on every key it dropped. The candidates'
    distances are then recomputed exactly (:func:`exact_distances`, float64 from the rows) and sorted by
    ``(distance cast to the queries' dtype, gallery index)``. A query is accepted when, by a proven bound on
    the rounding of the key products, every dropped gallery row is farther than its k-th result; the rare
    others (near-ties at the k-th place) are searched again with every gallery row whose key could reach
    it, so ties at the k-th place always keep the smaller gallery indices.

    The returned distances are a function of the two rows alone, so results do not depend on chunk sizes,
    on the order of the gallery rows (apart from which index wins an exact tie) or on the backend (the
    faiss backend re-scores with the same formulas).
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

        ``distances`` is the ``(q1 - q0, g1 - g0)`` :func:`pair_distances` block on the compute device
        (computed in the inputs' dtype from one matrix product; used for fnmr@fmr).
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

        Rows are sorted by ``(distance, gallery index)``; distances are :func:`exact_distances` cast to the
        queries' dtype. With ``exclude``, excluded pairs are never returned; a query with fewer than
        ``min(k, G)`` admissible gallery rows gets its row padded with distance ``inf`` and index ``-1``.
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
        if kk == 0 or n_q == 0:
            return (
                torch.empty(n_q, kk, dtype=queries.dtype, device=out_device),
                torch.empty(n_q, kk, dtype=torch.long, device=out_device),
            )
        return _RankedSearch(self, queries, gallery, kk, exclude).run()


class _RankedSearch:
    """One :meth:`TorchKnn.search`: the streaming pass over ranking keys, the exact re-scoring of each
    query's candidates and the second pass for the queries whose k-th place is not settled."""

    def __init__(self, knn: TorchKnn, queries: Tensor, gallery: Tensor, k: int, exclude: Exclusions | None):
        self.knn = knn
        self.metric = knn.metric
        self.queries, self.gallery, self.k = queries, gallery, k
        self.device = knn.device or queries.device
        self.out_dtype = queries.dtype
        n_q, n_g, dim = queries.shape[0], gallery.shape[0], queries.shape[1]
        self.p = _pool_size(k, n_g)
        self.plan = _ExclusionPlan(exclude, n_q, n_g, self.device)
        self.qsq = _sq_norms(queries, self.device)
        gsq = _sq_norms(gallery, self.device)
        gmax = float(gsq.max())
        wide = torch.float64 in (queries.dtype, gallery.dtype) or max(gmax, float(self.qsq.max())) > 1e30
        self.dtype = torch.float64 if wide else torch.float32
        u = _unit_roundoff(self.dtype, self.device)
        # Bound on |computed key - true key| (plus the float64 re-scoring's own rounding), per query.
        if self.metric == "l2":
            self.err = 4.0 * (dim + 4) * u * (self.qsq + 3.0 * gmax)
            gmin = float(gsq.min())
            # With (nearly) equal gallery norms, -2 q.g orders a row like |g|^2 - 2 q.g: skip the bias.
            self.use_bias = gmax - gmin > 16.0 * (dim + 4) * u * gmax
            self.key_offset = 0.0 if self.use_bias else gmin  # true d^2 >= key + |q|^2 + key_offset
        elif self.metric == "cosine":
            self.err = torch.full_like(self.qsq, 4.0 * (2 * dim + 8) * u)
            self.use_bias, self.key_offset = False, 0.0
        else:
            self.err = 4.0 * (dim + 4) * u * (self.qsq + gmax)
            self.use_bias, self.key_offset = False, 0.0
        self.buffer = torch.empty(0, dtype=self.dtype, device=self.device)

    # ---- keys ---------------------------------------------------------------------------------------------

    def _gallery_block(self, g0: int, g1: int) -> tuple[Tensor, Tensor | None]:
        if self.metric == "cosine":
            g = _unit_rows(self.gallery[g0:g1], self.dtype, self.device)
        else:
            g = self.gallery[g0:g1].to(device=self.device, dtype=self.dtype)
        bias = g.square().sum(1) if self.use_bias else None
        return g, bias

    def _query_block(self, rows: Tensor | tuple[int, int]) -> Tensor:
        q = self.queries[rows[0] : rows[1]] if isinstance(rows, tuple) else self.queries[rows.to(self.queries.device)]
        if self.metric == "cosine":
            return _unit_rows(q, self.dtype, self.device).neg_()
        q = q.to(device=self.device, dtype=self.dtype)
        return q * -2.0 if self.metric == "l2" else -q

    def _keys(self, q: Tensor, g: Tensor, bias: Tensor | None) -> Tensor:
        n = q.shape[0] * g.shape[0]
        if self.buffer.numel() < n:
            self.buffer = torch.empty(n, dtype=self.dtype, device=self.device)
        out = self.buffer[:n].view(q.shape[0], g.shape[0])
        if bias is None:
            return torch.mm(q, g.T, out=out)
        return torch.addmm(bias, q, g.T, out=out)

    # ---- the search ---------------------------------------------------------------------------------------

    def run(self) -> tuple[Tensor, Tensor]:
        n_q, n_g = self.queries.shape[0], self.gallery.shape[0]
        qc, gc, p = self.knn.query_chunk, self.knn.gallery_chunk, self.p
        pool_k = torch.empty(n_q, p, dtype=self.dtype, device=self.device)
        pool_i = torch.empty(n_q, p, dtype=torch.long, device=self.device)
        pool_b = torch.empty(n_q, dtype=self.dtype, device=self.device)
        for g0 in range(0, n_g, gc):
            g1 = min(g0 + gc, n_g)
            g, bias = self._gallery_block(g0, g1)
            pairs = self.plan.for_gallery(g0, g1)
            for q0 in range(0, n_q, qc):
                q1 = min(q0 + qc, n_q)
                keys = self._keys(self._query_block((q0, q1)), g, bias)
                self.plan.apply(keys, (q0, q1), g0, g1, pairs)
                b_k, b_c, b_b = _select(keys, p)
                b_i = torch.where(b_c >= 0, b_c + g0, b_c)
                if g0 > 0:
                    b_k, b_i, b_b = _merge((pool_k[q0:q1], pool_i[q0:q1], pool_b[q0:q1]), (b_k, b_i, b_b), p)
                pool_k[q0:q1], pool_i[q0:q1], pool_b[q0:q1] = b_k, b_i, b_b
            del g, bias
        self.buffer = torch.empty(0, dtype=self.dtype, device=self.device)
        out_d = torch.empty(n_q, self.k, dtype=self.out_dtype, device=self.queries.device)
        out_i = torch.empty(n_q, self.k, dtype=torch.long, device=self.queries.device)
        step = max(1, EXACT_ELEMENTS // max(1, p * self.queries.shape[1]))
        for q0 in range(0, n_q, step):
            q1 = min(q0 + step, n_q)
            idx = torch.where(torch.isinf(pool_k[q0:q1]), -1, pool_i[q0:q1])
            d, i = self._finish(torch.arange(q0, q1, device=self.device), idx, pool_b[q0:q1])
            out_d[q0:q1], out_i[q0:q1] = d.to(out_d.device), i.to(out_i.device)
        return out_d, out_i

    def _exact(self, rows: Tensor, idx: Tensor) -> Tensor:
        q = self.queries[rows.to(self.queries.device)]
        return exact_distances(q, self.gallery, idx, self.metric).to(self.out_dtype)

    def _upper(self, kth: Tensor) -> Tensor:
        """Float64 value above which no distance rounds to ``kth`` (the k-th distance, output dtype)."""
        info = torch.finfo(self.out_dtype)
        k64 = kth.double()
        return k64 + 4.0 * info.eps * k64.abs() + info.smallest_normal

    def _finish(self, rows: Tensor, idx: Tensor, bound: Tensor) -> tuple[Tensor, Tensor]:
        """Exact re-scoring and sorting of the candidates of queries ``rows``; second pass where needed."""
        dist, idx = _sort_exact(self._exact(rows, idx), idx, self.k)
        upper = self._upper(dist[:, -1])
        b64 = bound.double() - self.err[rows]
        if self.metric == "l2":
            lower = (b64 + self.qsq[rows] + self.key_offset).clamp(min=0.0).sqrt()
        elif self.metric == "cosine":
            lower = b64 + 1.0
        else:
            lower = b64
        settled = torch.isinf(bound) | (lower > upper)
        if not bool(settled.all()):
            redo = (~settled).nonzero().flatten()
            # Keys every candidate of these rows stays under: distance <= upper, plus the key error.
            if self.metric == "l2":
                limit = upper[redo].square() - self.qsq[rows[redo]] - self.key_offset
            elif self.metric == "cosine":
                limit = upper[redo] - 1.0
            else:
                limit = upper[redo].clone()
            limit += self.err[rows[redo]]
            d2, i2 = self._rescan(rows[redo], limit)
            dist[redo], idx[redo] = d2, i2
        return dist, idx

    def _rescan(self, rows: Tensor, limit: Tensor) -> tuple[Tensor, Tensor]:
        """Exact top-k of the queries ``rows``: every gallery row whose key is at most ``limit`` (float64
        ``(r,)``) is re-scored exactly; all others are provably farther than the k-th result."""
        n_g, gc = self.gallery.shape[0], self.knn.gallery_chunk
        best_d = torch.full((rows.numel(), self.k), math.inf, dtype=self.out_dtype, device=self.device)
        best_i = torch.full((rows.numel(), self.k), -1, dtype=torch.long, device=self.device)
        step = max(1, self.knn.query_chunk)
        for g0 in range(0, n_g, gc):
            g1 = min(g0 + gc, n_g)
            g, bias = self._gallery_block(g0, g1)
            pairs = self.plan.for_gallery(g0, g1)
            for s in range(0, rows.numel(), step):
                sub = rows[s : s + step]
                keys = self._keys(self._query_block(sub), g, bias)
                self.plan.apply(keys, sub, g0, g1, pairs)
                near = keys <= _round_up(limit[s : s + step], self.dtype)[:, None]
                width = int(near.sum(1).max())
                if width == 0:
                    continue
                _, cols = keys.masked_fill_(~near, math.inf).topk(width, dim=1, largest=False, sorted=False)
                cand = torch.where(near.gather(1, cols), cols + g0, -1)
                cd = self._exact(sub, cand)
                merged_d = torch.cat([best_d[s : s + step], cd], 1)
                merged_i = torch.cat([best_i[s : s + step], cand], 1)
                best_d[s : s + step], best_i[s : s + step] = _sort_exact(merged_d, merged_i, self.k)
        self.buffer = torch.empty(0, dtype=self.dtype, device=self.device)
        return best_d, best_i


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
