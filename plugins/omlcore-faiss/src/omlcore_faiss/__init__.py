"""omlcore-faiss: faiss nearest-neighbour backends for omlcore (entry-point group ``omlcore.knn``).

- ``faiss`` (:class:`FaissKnn`): exact search with faiss's flat indexes;
- ``faiss_ivf`` (:class:`FaissIvfKnn`): approximate search with an inverted-file index, which can
  estimate the recall it reaches against exact search.

Both follow :class:`omlcore.protocols.KnnBackend`: torch tensors in and out, rows sorted by distance with
ties broken by the smaller gallery index. A config names them, e.g. ``{name: faiss, args: {metric: cosine}}``.
"""

from omlcore_faiss.flat import FaissKnn
from omlcore_faiss.ivf import FaissIvfKnn

__all__ = ["FaissIvfKnn", "FaissKnn", "__version__"]
__version__ = "0.1.0"
