"""omlcore-reranking: re-ranking of retrieval results for omlcore (OML's pairwise post-processing, STIR).

- :mod:`omlcore_reranking.postprocessors` (group ``omlcore.postprocessors``): ``pairwise_embeddings``,
  ``pairwise_images``, ``constant_thresholding``, ``adaptive_thresholding``, plus :func:`merge_reranked`.
- :mod:`omlcore_reranking.models` (group ``omlcore.pairwise_models``): ``concat_siamese``,
  ``linear_siamese``, ``trivial_distance_siamese``.
- :mod:`omlcore_reranking.metrics`: :func:`reranked_retrieval_metrics` and :func:`rerank_result`, the
  metrics of omlcore-metrics after a postprocessor.
- :mod:`omlcore_reranking.cache`: :class:`EmbeddingsCache`, keyed by everything that changes the embeddings.
- :mod:`omlcore_reranking.training`: mining pairs per batch and the BCE loss on "is negative".

The names load lazily, so importing the package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "PairwiseEmbeddingsReranker": "omlcore_reranking.postprocessors",
    "PairwiseImagesReranker": "omlcore_reranking.postprocessors",
    "ConstantThresholding": "omlcore_reranking.postprocessors",
    "AdaptiveThresholding": "omlcore_reranking.postprocessors",
    "TopKPostprocessor": "omlcore_reranking.postprocessors",
    "merge_reranked": "omlcore_reranking.postprocessors",
    "ConcatSiamese": "omlcore_reranking.models",
    "LinearSiamese": "omlcore_reranking.models",
    "TrivialDistanceSiamese": "omlcore_reranking.models",
    "reranked_retrieval_metrics": "omlcore_reranking.metrics",
    "rerank_result": "omlcore_reranking.metrics",
    "EmbeddingsCache": "omlcore_reranking.cache",
    "embeddings_cache_key": "omlcore_reranking.cache",
    "pairwise_bce_loss": "omlcore_reranking.training",
    "EmbeddingItems": "omlcore_reranking.training",
    "WithEmbeddings": "omlcore_reranking.training",
    "InputSizeError": "omlcore_reranking.errors",
    "RerankingError": "omlcore_reranking.errors",
    "StaleEmbeddingsCacheError": "omlcore_reranking.errors",
    "WeightsFileError": "omlcore_reranking.errors",
}
__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from omlcore_reranking.cache import EmbeddingsCache as EmbeddingsCache
    from omlcore_reranking.cache import embeddings_cache_key as embeddings_cache_key
    from omlcore_reranking.errors import InputSizeError as InputSizeError
    from omlcore_reranking.errors import RerankingError as RerankingError
    from omlcore_reranking.errors import StaleEmbeddingsCacheError as StaleEmbeddingsCacheError
    from omlcore_reranking.errors import WeightsFileError as WeightsFileError
    from omlcore_reranking.metrics import rerank_result as rerank_result
    from omlcore_reranking.metrics import reranked_retrieval_metrics as reranked_retrieval_metrics
    from omlcore_reranking.models import ConcatSiamese as ConcatSiamese
    from omlcore_reranking.models import LinearSiamese as LinearSiamese
    from omlcore_reranking.models import TrivialDistanceSiamese as TrivialDistanceSiamese
    from omlcore_reranking.postprocessors import AdaptiveThresholding as AdaptiveThresholding
    from omlcore_reranking.postprocessors import ConstantThresholding as ConstantThresholding
    from omlcore_reranking.postprocessors import PairwiseEmbeddingsReranker as PairwiseEmbeddingsReranker
    from omlcore_reranking.postprocessors import PairwiseImagesReranker as PairwiseImagesReranker
    from omlcore_reranking.postprocessors import TopKPostprocessor as TopKPostprocessor
    from omlcore_reranking.postprocessors import merge_reranked as merge_reranked
    from omlcore_reranking.training import EmbeddingItems as EmbeddingItems
    from omlcore_reranking.training import WithEmbeddings as WithEmbeddings
    from omlcore_reranking.training import pairwise_bce_loss as pairwise_bce_loss


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omlcore_reranking' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
