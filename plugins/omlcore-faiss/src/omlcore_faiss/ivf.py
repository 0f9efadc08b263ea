"""``faiss_ivf``: approximate nearest-neighbour search with a faiss inverted-file (IVF-Flat) index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch

from omlcore_faiss._search import (
    Metric,
    as_faiss_matrix,
    check_inputs,
    check_metric,
    check_positive,
    exact_rows,
    faiss_threads,
    flat_index,
    import_faiss,
    max_sq_norm,
    on_cpu,
    output_dtype,
    rank_candidates,
)
from omlcore_faiss.flat import FaissKnn

__all__ = ["FaissIvfKnn"]


@dataclass
class _Built:
    """An index over one gallery tensor, reused while that tensor is unchanged."""

    key: tuple[Any, ...]
    gallery: torch.Tensor  # the caller's tensor, held so that its memory (and key) cannot be reused
    g_cpu: torch.Tensor
    g32: torch.Tensor
    g_norm: float
    index: Any
    nlist: int
    flat: Any = None  # exhaustive index, built when some query needs the exact fallback


def default_nlist(n_gallery: int) -> int:
    """About ``4 * sqrt(G)`` lists, with at least 39 gallery rows per list (faiss's k-means minimum)."""
    return max(1, min(round(4 * math.sqrt(n_gallery)), n_gallery // 39))


class FaissIvfKnn:
    """Approximate k-nearest-neighbour search with a faiss IVF-Flat index (config name ``faiss_ivf``).

    The gallery is clustered by k-means into ``nlist`` lists (trained on the gallery, or a seeded sample of
    ``train_size`` rows of it); a query scans only the ``nprobe`` lists whose centroids are nearest, so a
    true neighbour in another list is missed. The candidates found are re-scored exactly (same distances
    as the ``faiss`` and ``torch`` backends: ``"l2"`` Euclidean, ``"cosine"`` ``1 - cos``) and sorted by
    (distance, gallery index). A query whose probed lists hold fewer than ``k`` rows is searched exactly.
    The index is kept and reused while the same, unmodified gallery tensor is passed again.

    Use :meth:`estimate_recall` (or ``recall_sample``) to measure how many of the exact neighbours the
    index finds; the figure is also in ``last_logs["recall"]`` and ``last_recall``.

    Args:
        metric: ``"l2"`` or ``"cosine"``.
        nlist: number of inverted lists; ``None`` picks about ``4 * sqrt(G)`` with at least 39 rows per
            list. Capped at the number of training rows.
        nprobe: lists scanned per query (capped at ``nlist``); more is slower and more accurate.
        quantizer: ``"flat"`` finds the nearest centroids exhaustively; ``"hnsw"`` uses an HNSW graph
            over the centroids (faiss ``IVF{nlist}_HNSW32,Flat``), worth it for tens of thousands of lists.
        train_size: rows sampled (seeded) from the gallery to train k-means; ``None``: up to 256 per list.
        seed: seed of the training sample and of k-means.
        query_chunk: queries searched at once (bounds the temporary buffers).
        num_threads: OpenMP threads for faiss (``faiss.omp_set_num_threads``), restored afterwards.
        candidate_margin: extra candidates fetched beyond ``k`` before re-scoring.
        recall_sample: when positive, every ``search`` also estimates the recall on this many of its
            queries (costs an exact search of them).
    """

    def __init__(
        self,
        metric: Metric = "l2",
        *,
        nlist: int | None = None,
        nprobe: int = 8,
        quantizer: Literal["flat", "hnsw"] = "flat",
        train_size: int | None = None,
        seed: int = 0,
        query_chunk: int = 16384,
        num_threads: int | None = None,
        candidate_margin: int = 16,
        recall_sample: int = 0,
    ) -> None:
        check_metric(metric)
        check_positive("nlist", nlist, allow_none=True)
        check_positive("nprobe", nprobe)
        check_positive("train_size", train_size, allow_none=True)
        check_positive("query_chunk", query_chunk)
        check_positive("num_threads", num_threads, allow_none=True)
        if quantizer not in ("flat", "hnsw"):
            raise ValueError(f"quantizer must be 'flat' or 'hnsw', got {quantizer!r}")
        for name, value in (("candidate_margin", candidate_margin), ("recall_sample", recall_sample)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self.metric: str = metric
        self.nlist = nlist
        self.nprobe = nprobe
        self.quantizer = quantizer
        self.train_size = train_size
        self.seed = seed
        self.query_chunk = query_chunk
        self.num_threads = num_threads
        self.candidate_margin = candidate_margin
        self.recall_sample = recall_sample
        self.last_logs: dict[str, float] = {}
        self.last_recall: float | None = None
        self._built: _Built | None = None

    def __repr__(self) -> str:
        return (
            f"FaissIvfKnn(metric={self.metric!r}, nlist={self.nlist}, nprobe={self.nprobe}, "
            f"quantizer={self.quantizer!r})"
        )

    def reset(self) -> None:
        """Drop the cached index (and the reference to the gallery it was built on)."""
        self._built = None

    # ---- index --------------------------------------------------------------------------------------

    @staticmethod
    def _key(gallery: torch.Tensor) -> tuple[Any, ...]:
        return (
            gallery.data_ptr(),
            tuple(gallery.shape),
            gallery.stride(),
            gallery.dtype,
            gallery.device,
            gallery._version,
        )

    def _index_for(self, gallery: torch.Tensor) -> _Built:
        key = self._key(gallery)
        if self._built is not None and self._built.gallery is gallery and self._built.key == key:
            return self._built
        faiss = import_faiss()
        g_cpu = on_cpu(gallery)
        g32 = as_faiss_matrix(g_cpu, self.metric)
        n_gallery, dim = g32.shape
        n_train = min(n_gallery, self.train_size or 256 * (self.nlist or default_nlist(n_gallery)))
        nlist = min(self.nlist or default_nlist(n_gallery), n_train)
        coarse = f"IVF{nlist}_HNSW32" if self.quantizer == "hnsw" else f"IVF{nlist}"
        metric_type = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.index_factory(dim, f"{coarse},Flat", metric_type)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = self.seed
        ivf.cp.max_points_per_centroid = max(256, math.ceil(n_train / nlist))  # we sampled already
        generator = torch.Generator().manual_seed(self.seed)
        sample = torch.randperm(n_gallery, generator=generator)[:n_train].sort().values
        index.train(g32[sample].contiguous().numpy())
        index.add(g32.numpy())
        ivf.nprobe = min(self.nprobe, nlist)
        if self.quantizer == "hnsw":
            hnsw = faiss.downcast_index(ivf.quantizer)
            hnsw.hnsw.efSearch = max(int(hnsw.hnsw.efSearch), 2 * ivf.nprobe)
        self._built = _Built(key, gallery, g_cpu, g32, max_sq_norm(g_cpu), index, nlist)
        return self._built

    # ---- search -------------------------------------------------------------------------------------

    def _search(self, queries: torch.Tensor, gallery: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        k_eff = min(k, gallery.shape[0])
        dtype = output_dtype(queries, gallery)
        n_queries = queries.shape[0]
        distances = torch.empty(n_queries, k_eff, dtype=dtype)
        indices = torch.empty(n_queries, k_eff, dtype=torch.long)
        fallback = 0
        with torch.no_grad(), faiss_threads(self.num_threads):
            built = self._index_for(gallery)
            fetch = min(k_eff + self.candidate_margin, gallery.shape[0])
            for start in range(0, n_queries, self.query_chunk):
                q_cpu = on_cpu(queries[start : start + self.query_chunk])
                q32 = as_faiss_matrix(q_cpu, self.metric)
                _, labels = built.index.search(q32.numpy(), fetch)
                d, i = rank_candidates(q_cpu, built.g_cpu, labels, self.metric, k_eff, dtype)
                short = (i < 0).any(dim=1)
                if bool(short.any()):
                    if built.flat is None:
                        built.flat = flat_index(built.g32, self.metric)
                    d[short], i[short], _ = exact_rows(
                        built.flat.search, q32[short], q_cpu[short], built.g_cpu, built.g_norm, self.metric, k_eff,
                        self.candidate_margin, dtype,
                    )  # fmt: skip
                    fallback += int(short.sum())
                distances[start : start + q32.shape[0]] = d
                indices[start : start + q32.shape[0]] = i
        self.last_logs = {
            "nlist": float(built.nlist),
            "nprobe": float(min(self.nprobe, built.nlist)),
            "exact_fallback_rows": float(fallback),
        }
        return distances, indices

    def search(self, queries: torch.Tensor, gallery: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The approximate ``min(k, G)`` nearest gallery rows of every query: ``(distances, indices)``.

        Same shapes, dtypes, distance definitions and row order as :class:`~omlcore_faiss.FaissKnn`;
        the neighbours are those the probed lists hold. ``last_logs`` then holds ``nlist``, ``nprobe``,
        ``exact_fallback_rows`` and, with ``recall_sample > 0``, the recall figures of
        :meth:`estimate_recall`.
        """
        check_inputs(queries, gallery, k)
        distances, indices = self._search(queries, gallery, k)
        if self.recall_sample > 0 and queries.shape[0] > 0:
            logs = dict(self.last_logs)
            self.estimate_recall(queries, gallery, k, n_sample=self.recall_sample)
            self.last_logs = {**logs, **self.last_logs}
        return distances.to(queries.device), indices.to(queries.device)

    def estimate_recall(self, queries: torch.Tensor, gallery: torch.Tensor, k: int, n_sample: int = 256) -> float:
        """Recall@k of this index against exact search, on ``n_sample`` queries drawn with ``seed``.

        The fraction of the exact top-``min(k, G)`` neighbours (in omlcore's order, computed by
        :class:`~omlcore_faiss.FaissKnn`) that the approximate search returns, averaged over the sampled
        queries (all of them when ``n_sample >= Q``). When several gallery rows tie at the k-th place,
        returning a different one of them counts as a miss. Also stored as ``last_recall`` and in
        ``last_logs`` (``recall``, ``recall_k``, ``recall_queries``).
        """
        check_inputs(queries, gallery, k)
        check_positive("n_sample", n_sample)
        n_queries = queries.shape[0]
        if n_queries == 0:
            raise ValueError("estimate_recall needs at least one query, got 0")
        generator = torch.Generator().manual_seed(self.seed)
        sample = torch.randperm(n_queries, generator=generator)[:n_sample].sort().values
        picked = queries[sample.to(queries.device)]
        _, approx = self._search(picked, gallery, k)
        logs = self.last_logs
        exact_backend = FaissKnn(cast(Metric, self.metric), query_chunk=self.query_chunk, num_threads=self.num_threads)
        _, exact = exact_backend.search(picked, gallery, k)
        exact = exact.cpu()
        hits = sum(int(torch.isin(approx[r], exact[r]).sum()) for r in range(exact.shape[0]))
        recall = hits / exact.numel()
        self.last_recall = recall
        self.last_logs = {
            **logs,
            "recall": recall,
            "recall_k": float(exact.shape[1]),
            "recall_queries": float(exact.shape[0]),
        }
        return recall
