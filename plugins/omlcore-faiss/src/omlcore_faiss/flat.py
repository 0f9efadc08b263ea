"""``faiss``: exact nearest-neighbour search with faiss's flat indexes, in omlcore's total order."""

from __future__ import annotations

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
    max_sq_norm,
    on_cpu,
    output_dtype,
)

__all__ = ["FaissKnn"]


class FaissKnn:
    """Exact k-nearest-neighbour search with ``faiss.IndexFlatL2`` / ``faiss.IndexFlatIP`` (config name ``faiss``).

    Distances are the same as the ``torch`` backend's: ``"l2"`` the Euclidean distance ``|q - g|`` (the
    square root of what faiss computes), ``"cosine"`` ``1 - cos(q, g)`` (faiss ranks unit-length rows by
    inner product). Each returned row is sorted by distance, then by gallery index: faiss's candidates
    are re-scored in float64 and, when equal distances straddle the k-th place, the row is searched again
    with more candidates until the order is exact.

    Args:
        metric: ``"l2"`` or ``"cosine"``.
        query_chunk: queries searched at once; bounds the temporary buffers to
            ``query_chunk x (k + tie_margin)`` (faiss holds the gallery as one float32 copy).
        num_threads: OpenMP threads for faiss during ``search`` (``faiss.omp_set_num_threads``); the
            previous setting is restored afterwards. ``None`` keeps faiss's setting.
        tie_margin: extra candidates fetched per query beyond ``k``, so ties and rounding at the k-th
            place are usually settled without a second search.

    After each ``search``, ``last_logs`` holds ``widened_rows``: how many queries needed a wider search.
    """

    def __init__(
        self,
        metric: Metric = "l2",
        *,
        query_chunk: int = 16384,
        num_threads: int | None = None,
        tie_margin: int = 16,
    ) -> None:
        check_metric(metric)
        check_positive("query_chunk", query_chunk)
        check_positive("num_threads", num_threads, allow_none=True)
        if isinstance(tie_margin, bool) or not isinstance(tie_margin, int) or tie_margin < 0:
            raise ValueError(f"tie_margin must be a non-negative integer, got {tie_margin!r}")
        self.metric: str = metric
        self.query_chunk = query_chunk
        self.num_threads = num_threads
        self.tie_margin = tie_margin
        self.last_logs: dict[str, float] = {}

    def __repr__(self) -> str:
        return (
            f"FaissKnn(metric={self.metric!r}, query_chunk={self.query_chunk}, num_threads={self.num_threads}, "
            f"tie_margin={self.tie_margin})"
        )

    def search(self, queries: torch.Tensor, gallery: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``min(k, G)`` nearest gallery rows of every query: ``(distances, indices)``, each ``(Q, min(k, G))``.

        Distances have the inputs' (promoted) floating dtype, indices are ``torch.long``; both are on the
        queries' device. Raises ValueError/TypeError for NaN or inf values, a dimension mismatch,
        ``k <= 0``, an empty gallery or non-floating inputs.
        """
        check_inputs(queries, gallery, k)
        k_eff = min(k, gallery.shape[0])
        dtype = output_dtype(queries, gallery)
        n_queries = queries.shape[0]
        distances = torch.empty(n_queries, k_eff, dtype=dtype)
        indices = torch.empty(n_queries, k_eff, dtype=torch.long)
        widened = 0
        with torch.no_grad(), faiss_threads(self.num_threads):
            g_cpu = on_cpu(gallery)
            index = flat_index(as_faiss_matrix(g_cpu, self.metric), self.metric)
            g_norm = max_sq_norm(g_cpu)
            for start in range(0, n_queries, self.query_chunk):
                q_cpu = on_cpu(queries[start : start + self.query_chunk])
                q32 = as_faiss_matrix(q_cpu, self.metric)
                d, i, w = exact_rows(
                    index.search, q32, q_cpu, g_cpu, g_norm, self.metric, k_eff, self.tie_margin, dtype
                )
                distances[start : start + q32.shape[0]] = d
                indices[start : start + q32.shape[0]] = i
                widened += w
        self.last_logs = {"widened_rows": float(widened)}
        return distances.to(queries.device), indices.to(queries.device)
