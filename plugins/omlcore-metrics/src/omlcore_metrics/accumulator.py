"""A retrieval metric that accumulates validation outputs batch by batch, also across DDP processes.

:class:`EmbeddingMetrics` offers two interfaces over one state:

- OML's lifecycle: ``setup(num_samples)``, ``update_data(batch[, indices])``, ``compute_metrics()``, then
  ``.metrics`` (reduced, nested ``{"OVERALL": {"cmc": {1: v}}}``) and ``.metrics_unreduced`` (one value
  per query), plus the visual helpers ``get_worst_queries_ids`` and ``get_plot_for_queries``;
- omlcore's :class:`~omlcore.protocols.RetrievalMetric`: ``update(batch)``, ``compute()`` (flat names such
  as ``"OVERALL/cmc/1"`` to floats) and ``reset()``.

Under ``torch.distributed`` every process sees only its shard; ``compute`` gathers the shards from all
processes, drops repeated dataset indices (a distributed sampler pads its shards by repeating samples)
and sorts by index, so each process computes the same metrics as one process over the whole dataset.

With a ``postprocessor`` (a re-ranker such as omlcore-reranking's ``pairwise_embeddings``), every query's
top-k is post-processed before the per-query metrics are computed; see
:mod:`omlcore_metrics.postprocessing` for what changes and what does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from omlcore.protocols import RetrievalPostprocessor
from omlcore_metrics.functional import (
    OVERALL,
    MetricKey,
    MetricsResult,
    NoPositivePolicy,
    _knn_metric,
    _resolve_backend,
    retrieval_metrics,
)
from omlcore_metrics.postprocessing import postprocessed_retrieval_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from omlcore_metrics.report import ReportData

__all__ = ["EmbeddingMetrics", "flatten_metrics"]

_BBOX_KEYS = ("x1", "y1", "x2", "y2")


def flatten_metrics(nested: Mapping[str, Mapping[str, Mapping[Any, float]]]) -> dict[str, float]:
    """``{"OVERALL": {"cmc": {1: v}}}`` -> ``{"OVERALL/cmc/1": float(v)}``."""
    return {
        f"{category}/{metric}/{key}": float(value)
        for category, per_metric in nested.items()
        for metric, per_key in per_metric.items()
        for key, value in per_key.items()
    }


class _SampleRows:
    """Row ``r`` is item ``indices[r]`` of ``dataset``: a dataset indexed by sample index, seen by row."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, row: int) -> Any:
        return self.dataset[self.indices[int(row)]]


def _is_distributed() -> bool:
    return bool(torch.distributed.is_available() and torch.distributed.is_initialized())


class EmbeddingMetrics:
    """Accumulates embeddings, labels and query/gallery flags; computes exact retrieval metrics.

    Args:
        embeddings_key, labels_key, is_query_key, is_gallery_key: batch keys of the required values.
        categories_key: batch key of each item's category (per-category metrics are added when the
            batches carry it); ``"category"``, the CSV column's name, also finds the datasets' batch
            key ``"categories"``. None: no per-category metrics.
        sequence_key: batch key of sequence ids; gallery items of a query's sequence are ignored for it.
            Used when the batches carry it; None: never.
        indices_key: batch key of the dataset index of each item (restores dataset order, drops
            repeated items under DDP). Batches without it get consecutive indices in arrival order.
        extra_keys: more batch keys to keep (e.g. ``"paths"`` and ``"x1".."y2"`` for the figures).
        cmc_top_k, precision_top_k, map_top_k, fmr_vals, pcf_variance: OML's metrics; recall_top_k,
            mrr_top_k, ndcg_top_k, map_at_r, r_precision: the peers' (see docs/metrics.md).
        no_positive: queries without a positive are ``"skip"``-ped, scored as a ``"miss"`` or
            ``"raise"`` (OML raised).
        return_only_overall_category: skip per-category metrics.
        metrics_to_exclude_from_visualization, visualize_only_overall_category, log_images: what
            :meth:`visualize` draws (``log_images`` is read by pipelines).
        backend: name of the kNN backend (group ``omlcore.knn``).
        sync_ddp: gather from every process when ``torch.distributed`` is initialised.
        verbose: print the metrics after ``compute_metrics`` (on rank 0 only).
        postprocessor: a :class:`~omlcore.protocols.RetrievalPostprocessor` applied to every query's
            top-k before the per-query metrics (the search goes at least ``top_n`` deep). The metrics
            reported are those asked for; ``fnmr@fmr`` and ``pcf`` do not depend on it. Under DDP every
            process applies it to all queries (the storage is gathered on every process).
        postprocessor_dataset: for a postprocessor whose ``reads`` is ``"items"`` (e.g. images):
            a map-style dataset indexed by the *dataset index* of each item (``update_data``'s
            ``indices`` or the batch's ``indices_key``), usually the validation dataset itself, possibly
            with other transforms. Unused otherwise; a postprocessor reading ``"embeddings"`` gets the
            gathered embeddings.
    """

    def __init__(
        self,
        embeddings_key: str = "embeddings",
        labels_key: str = "labels",
        is_query_key: str = "is_query",
        is_gallery_key: str = "is_gallery",
        categories_key: str | None = "categories",
        sequence_key: str | None = "sequence",
        indices_key: str = "idx",
        extra_keys: Sequence[str] = (),
        cmc_top_k: Sequence[int] = (5,),
        precision_top_k: Sequence[int] = (5,),
        map_top_k: Sequence[int] = (5,),
        fmr_vals: Sequence[float] = (),
        pcf_variance: Sequence[float] = (0.5,),
        return_only_overall_category: bool = False,
        metrics_to_exclude_from_visualization: Sequence[str] = (),
        visualize_only_overall_category: bool = True,
        log_images: bool = False,
        recall_top_k: Sequence[int] = (),
        mrr_top_k: Sequence[int] = (),
        ndcg_top_k: Sequence[int] = (),
        map_at_r: bool = False,
        r_precision: bool = False,
        no_positive: NoPositivePolicy = "skip",
        backend: str = "torch",
        sync_ddp: bool = True,
        verbose: bool = False,
        postprocessor: RetrievalPostprocessor | None = None,
        postprocessor_dataset: Any = None,
    ) -> None:
        named_ks = (
            ("cmc_top_k", cmc_top_k),
            ("precision_top_k", precision_top_k),
            ("map_top_k", map_top_k),
            ("recall_top_k", recall_top_k),
            ("mrr_top_k", mrr_top_k),
            ("ndcg_top_k", ndcg_top_k),
        )
        for name, ks in named_ks:
            for k in ks:
                if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
                    raise ValueError(f"{name}: every k must be a positive integer, got {k!r}")
        for v in fmr_vals:
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"fmr_vals: every rate must lie in [0, 1], got {v!r}")
        for v in pcf_variance:
            if not 0.0 < float(v) <= 1.0:
                raise ValueError(f"pcf_variance: every level must lie in (0, 1], got {v!r}")
        if not (any(ks for _, ks in named_ks) or fmr_vals or pcf_variance or map_at_r or r_precision):
            raise ValueError("no metric asked for: every list of k values and of rates is empty")
        if no_positive not in ("skip", "miss", "raise"):
            raise ValueError(f"no_positive must be 'skip', 'miss' or 'raise', got {no_positive!r}")
        self.embeddings_key = embeddings_key
        self.labels_key = labels_key
        self.is_query_key = is_query_key
        self.is_gallery_key = is_gallery_key
        self.categories_key = categories_key
        self.sequence_key = sequence_key
        self.indices_key = indices_key
        self.extra_keys = tuple(extra_keys)
        self.cmc_top_k = tuple(cmc_top_k)
        self.precision_top_k = tuple(precision_top_k)
        self.map_top_k = tuple(map_top_k)
        self.fmr_vals = tuple(float(v) for v in fmr_vals)
        self.pcf_variance = tuple(float(v) for v in pcf_variance)
        self.recall_top_k = tuple(recall_top_k)
        self.mrr_top_k = tuple(mrr_top_k)
        self.ndcg_top_k = tuple(ndcg_top_k)
        self.map_at_r = map_at_r
        self.r_precision = r_precision
        self.no_positive: NoPositivePolicy = no_positive
        self.return_only_overall_category = return_only_overall_category
        self.metrics_to_exclude_from_visualization = tuple(metrics_to_exclude_from_visualization)
        self.visualize_only_overall_category = visualize_only_overall_category
        self.log_images = log_images
        if postprocessor is not None and not callable(getattr(postprocessor, "process", None)):
            raise TypeError(f"postprocessor must have process(...), got {type(postprocessor).__name__}")
        reads = getattr(postprocessor, "reads", None)
        if postprocessor is None and postprocessor_dataset is not None:
            raise ValueError("postprocessor_dataset is given without a postprocessor: pass both or neither")
        if reads == "items" and postprocessor_dataset is None:
            raise ValueError(
                f"the postprocessor {type(postprocessor).__name__} reads dataset items (e.g. images): pass "
                f"postprocessor_dataset, indexed by the dataset index of each item"
            )
        if postprocessor_dataset is not None and reads == "items":
            for attr in ("__getitem__", "__len__"):
                if not hasattr(postprocessor_dataset, attr):
                    raise TypeError(
                        f"postprocessor_dataset must be a map-style dataset (with {attr}), got "
                        f"{type(postprocessor_dataset).__name__}"
                    )
        self.postprocessor = postprocessor
        self.postprocessor_dataset = postprocessor_dataset
        self.backend = backend
        self.sync_ddp = sync_ddp
        self.verbose = verbose
        self.num_samples: int | None = None
        self.metrics: dict[str, dict[str, dict[MetricKey, float]]] | None = None
        self.metrics_unreduced: dict[str, dict[str, dict[MetricKey, Tensor]]] | None = None
        self.result: MetricsResult | None = None
        self.distance: str | None = None  # the backend's metric, set by compute_metrics
        self.storage: dict[str, Any] = {}
        self._chunks: dict[str, list[Any]] = {}
        self._seen = 0
        self._has_indices: bool | None = None
        self._optional: dict[str, bool] = {}

    # ---- lifecycle ------------------------------------------------------------------------------------

    def setup(self, num_samples: int | None = None) -> None:
        """Start a new accumulation; ``num_samples`` (the dataset size, all processes together) makes
        :meth:`compute_metrics` refuse to run before exactly that many distinct samples arrived."""
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples = num_samples
        self._chunks = {}
        self._seen = 0
        self._has_indices = None
        self._optional = {}
        self.storage = {}
        self.metrics = None
        self.metrics_unreduced = None
        self.result = None

    def reset(self) -> None:
        """Forget everything accumulated (keeps ``num_samples`` from :meth:`setup`)."""
        self.setup(self.num_samples)

    def update(self, batch: Mapping[str, Any]) -> None:
        """The :class:`~omlcore.protocols.RetrievalMetric` spelling of :meth:`update_data`."""
        self.update_data(batch)

    def update_data(self, batch: Mapping[str, Any], indices: Sequence[int] | Tensor | None = None) -> None:
        """Take one batch; ``indices`` (dataset indices of its items) override ``batch[indices_key]``."""
        for key in (self.embeddings_key, self.labels_key, self.is_query_key, self.is_gallery_key):
            if key not in batch:
                raise KeyError(f"the batch lacks {key!r} (it has: {', '.join(map(str, batch))})")
        emb = torch.as_tensor(batch[self.embeddings_key]).detach()
        if emb.ndim != 2:
            raise ValueError(f"{self.embeddings_key!r} has shape {tuple(emb.shape)}, expected (batch, dim)")
        n = emb.shape[0]
        values: dict[str, Any] = {"embeddings": emb.to("cpu", copy=True)}
        values["labels"] = self._vector(batch[self.labels_key], self.labels_key, n)
        values["is_query"] = self._vector(batch[self.is_query_key], self.is_query_key, n).bool()
        values["is_gallery"] = self._vector(batch[self.is_gallery_key], self.is_gallery_key, n).bool()
        if indices is None and self.indices_key in batch:
            indices = batch[self.indices_key]
        has = indices is not None
        if self._has_indices is not None and has != self._has_indices:
            raise ValueError(f"some batches carry dataset indices ({self.indices_key!r}) and some do not")
        self._has_indices = has
        if indices is not None:
            values["idx"] = self._vector(indices, self.indices_key, n).long()
        else:
            values["idx"] = torch.arange(self._seen, self._seen + n)
        optional: tuple[tuple[str, str | None], ...] = (
            ("categories", self._categories_key(batch)),
            ("sequence", self._sequence_key(batch)),
        )
        for name, opt_key in optional:
            present = opt_key is not None
            if self._optional.setdefault(name, present) != present:
                raise ValueError(f"some batches carry {name} and some do not")
            if opt_key is not None:
                values[name] = self._items(batch[opt_key], opt_key, n)
        for key in self.extra_keys:
            if key not in batch:
                raise KeyError(f"the batch lacks the extra key {key!r}")
            values[key] = self._items(batch[key], key, n)
        for key, value in values.items():
            self._chunks.setdefault(key, []).append(value)
        self._seen += n
        self.metrics = self.metrics_unreduced = self.result = None

    def _categories_key(self, batch: Mapping[str, Any]) -> str | None:
        if self.categories_key is None:
            return None
        if self.categories_key in batch:
            return self.categories_key
        if self.categories_key == "category" and "categories" in batch:
            return "categories"
        return None

    def _sequence_key(self, batch: Mapping[str, Any]) -> str | None:
        return self.sequence_key if self.sequence_key is not None and self.sequence_key in batch else None

    @staticmethod
    def _vector(value: Any, key: str, n: int) -> Tensor:
        t = torch.as_tensor(value).detach().to("cpu", copy=True).reshape(-1)
        if t.shape[0] != n:
            raise ValueError(f"{key!r} has {t.shape[0]} entries for {n} embeddings")
        return t

    @staticmethod
    def _items(value: Any, key: str, n: int) -> list[Any]:
        if isinstance(value, Tensor):
            items: list[Any] = value.detach().cpu().tolist()
        elif isinstance(value, np.ndarray):
            items = value.tolist()
        else:
            items = list(value)
        if len(items) != n:
            raise ValueError(f"{key!r} has {len(items)} entries for {n} embeddings")
        return items

    # ---- gathering ------------------------------------------------------------------------------------

    def _local_storage(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, chunks in self._chunks.items():
            out[key] = torch.cat(chunks) if isinstance(chunks[0], Tensor) else [x for c in chunks for x in c]
        return out

    def sync(self) -> dict[str, Any]:
        """Everything accumulated by every process, one entry per distinct dataset index, sorted by it.

        Without ``torch.distributed`` (or with ``sync_ddp=False``) only this process's items. Every
        process must call it (it is a collective operation when distributed).
        """
        local = self._local_storage()
        if self.sync_ddp and _is_distributed() and torch.distributed.get_world_size() > 1:
            if self._has_indices is False:
                raise RuntimeError(
                    f"under torch.distributed the batches must carry dataset indices ({self.indices_key!r}) "
                    f"or update_data(batch, indices) must get them: without them repeated samples cannot be "
                    f"recognised"
                )
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, local)
            parts = [g for g in gathered if g]
            if not parts:
                return {}
            keys = parts[0].keys()
            for g in parts[1:]:
                if g.keys() != keys:
                    raise RuntimeError(f"processes accumulated different keys: {sorted(keys)} vs {sorted(g.keys())}")
            local = {
                k: torch.cat([g[k] for g in parts])
                if isinstance(parts[0][k], Tensor)
                else [x for g in parts for x in g[k]]
                for k in keys
            }
        if not local:
            return {}
        idx = local["idx"]
        order = torch.argsort(idx, stable=True)
        sorted_idx = idx[order]
        first = torch.ones_like(sorted_idx, dtype=torch.bool)
        first[1:] = sorted_idx[1:] != sorted_idx[:-1]
        keep = order[first]
        out: dict[str, Any] = {}
        keep_list = keep.tolist()
        for key, value in local.items():
            out[key] = value[keep] if isinstance(value, Tensor) else [value[i] for i in keep_list]
        return out

    # ---- computing ------------------------------------------------------------------------------------

    def compute_metrics(self) -> dict[str, dict[str, dict[MetricKey, float]]]:
        """Gather, check and compute; returns and stores ``.metrics`` (also ``.metrics_unreduced``)."""
        storage = self.sync()
        if not storage:
            raise RuntimeError("no data: call update_data() with at least one batch before computing metrics")
        n = int(storage["idx"].numel())
        if self.num_samples is not None and n != self.num_samples:
            raise RuntimeError(
                f"expected {self.num_samples} distinct samples (setup(num_samples)), but {n} arrived"
                + (" over all processes" if _is_distributed() else "")
            )
        self.storage = storage
        categories = None if self.return_only_overall_category else storage.get("categories")
        sequence = storage.get("sequence")
        if sequence is not None:  # the datasets write -1 for "no sequence"
            sequence = [None if isinstance(s, int) and s < 0 else s for s in sequence]
        knn = _resolve_backend(self.backend)
        self.distance = _knn_metric(knn)
        arrays = (storage["embeddings"], storage["labels"], storage["is_query"], storage["is_gallery"])
        kwargs: dict[str, Any] = dict(
            categories=categories,
            sequence=sequence,
            cmc_top_k=self.cmc_top_k,
            precision_top_k=self.precision_top_k,
            map_top_k=self.map_top_k,
            fmr_vals=self.fmr_vals,
            pcf_variance=self.pcf_variance,
            recall_top_k=self.recall_top_k,
            mrr_top_k=self.mrr_top_k,
            ndcg_top_k=self.ndcg_top_k,
            map_at_r=self.map_at_r,
            r_precision=self.r_precision,
            sample_ids=storage["idx"],
            no_positive=self.no_positive,
            backend=knn,
        )
        if self.postprocessor is None:
            self.result = retrieval_metrics(*arrays, **kwargs)
        else:
            self.result = postprocessed_retrieval_metrics(
                *arrays, self.postprocessor, dataset=self._postprocessor_rows(storage), **kwargs
            )
        self.metrics = self.result.reduced
        self.metrics_unreduced = self.result.unreduced
        if self.verbose and (not _is_distributed() or torch.distributed.get_rank() == 0):
            print("\n".join(f"{k}: {v:.4f}" for k, v in flatten_metrics(self.metrics).items()))
        return self.metrics

    def _postprocessor_rows(self, storage: Mapping[str, Any]) -> Any:
        """What the postprocessor reads, indexed by storage row (the gathered, index-sorted items)."""
        if getattr(self.postprocessor, "reads", None) != "items":
            return storage["embeddings"]
        dataset = self.postprocessor_dataset
        idx: Tensor = storage["idx"]
        size = len(dataset)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= size):
            bad = idx[(idx < 0) | (idx >= size)][:5].tolist()
            raise ValueError(
                f"postprocessor_dataset has {size} items but the metric got dataset indices {bad}: it must be "
                f"the dataset the indices ({self.indices_key!r}) refer to"
            )
        return _SampleRows(dataset, idx.tolist())

    def compute(self) -> dict[str, float]:
        """The :class:`~omlcore.protocols.RetrievalMetric` result: flat names (``"OVERALL/cmc/1"``) to floats."""
        return flatten_metrics(self.compute_metrics())

    # ---- figures --------------------------------------------------------------------------------------

    def _computed(self) -> MetricsResult:
        if self.result is None:
            raise RuntimeError("compute_metrics() (or compute()) has not run since the last update")
        return self.result

    def report_data(self, root: str | None = None, paths_key: str = "paths") -> ReportData:
        """What the figures need, from the gathered storage: labels, sequences, embeddings and, when
        kept as extra keys, ``paths`` and the boxes ``x1, y1, x2, y2``."""
        from pathlib import Path

        from omlcore_metrics.report import ReportData

        self._computed()
        st = self.storage
        paths = [str(p) for p in st[paths_key]] if paths_key in st else None
        bboxes = None
        if all(k in st for k in _BBOX_KEYS):
            bboxes = []
            for x1, y1, x2, y2 in zip(*(st[k] for k in _BBOX_KEYS), strict=True):
                vals = (x1, y1, x2, y2)
                ok = all(isinstance(v, (int, float)) and v == v and v >= 0 for v in vals) and x1 < x2 and y1 < y2
                bboxes.append((int(x1), int(y1), int(x2), int(y2)) if ok else None)
        sequence = st.get("sequence")
        if sequence is not None:
            sequence = [None if isinstance(s, int) and s < 0 else s for s in sequence]
        # the distance of the backend that computed the metrics (missed ground truths are drawn with it)
        knn_metric = self.distance or _knn_metric(_resolve_backend(self.backend))
        return ReportData(
            labels=st["labels"].tolist(),
            paths=paths,
            bboxes=bboxes,
            root=Path(root) if root is not None else None,
            sequence=sequence,
            embeddings=st["embeddings"],
            distance=knn_metric,
        )

    def ready_to_visualize(self) -> bool:
        """True when the batches' image paths are kept (``"paths"`` in ``extra_keys``)."""
        return "paths" in self.extra_keys

    def get_worst_queries_ids(self, metric_name: str, n_queries: int, group: str = OVERALL) -> list[int]:
        """Positions (into the gathered queries) of the ``n_queries`` worst queries by ``metric_name``
        (``"cmc/1"``, ``"OVERALL/cmc/1"`` or ``"cmc@1"``)."""
        from omlcore_metrics.report import worst_queries

        return worst_queries(self._computed(), metric_name, n_queries, group)

    def get_plot_for_queries(
        self, query_ids: Sequence[int], n_instances: int = 5, n_gt: int = 2, root: str | None = None
    ) -> Figure:
        """The figure of the queries at positions ``query_ids``: results, distances, missed ground truths."""
        from omlcore_metrics.report import plot_queries

        return plot_queries(self._computed(), self.report_data(root), query_ids, n_instances=n_instances, n_gt=n_gt)

    def get_plot_for_worst_queries(
        self, metric_name: str, n_queries: int = 5, n_instances: int = 5, n_gt: int = 2, root: str | None = None
    ) -> Figure:
        """The figure of the ``n_queries`` worst queries by ``metric_name``."""
        from omlcore_metrics.report import plot_worst_queries

        return plot_worst_queries(
            self._computed(), self.report_data(root), metric_name, n_queries=n_queries, n_instances=n_instances,
            n_gt=n_gt,
        )  # fmt: skip

    def visualize(
        self, n_queries: int = 5, n_instances: int = 5, root: str | None = None
    ) -> tuple[list[Figure], list[str]]:
        """One figure of the worst queries per per-query metric (except those in
        ``metrics_to_exclude_from_visualization``), with titles such as ``"OVERALL/cmc/1"``; per category
        too unless ``visualize_only_overall_category``."""
        from omlcore_metrics.report import worst_query_figures

        return worst_query_figures(
            self._computed(),
            self.report_data(root),
            only_overall=self.visualize_only_overall_category,
            exclude=self.metrics_to_exclude_from_visualization,
            n_queries=n_queries,
            n_instances=n_instances,
        )
