"""``faiss`` and omlcore-metrics' ``torch`` backend return the same rows and the same distance bits."""

import pytest
import torch
from omlcore_faiss import FaissKnn

omlcore_metrics_knn = pytest.importorskip("omlcore_metrics.knn")


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_faiss_and_torch_backends_agree_bit_for_bit(metric: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    gallery = torch.randn(2500, 24, generator=g).to(dtype)
    gallery[100:200] = gallery[:100]  # exact ties between copies
    gallery[300:400] = gallery[:100] * 1.000001  # near-ties (cosine: exact ties of directions up to rounding)
    queries = torch.cat([gallery[:20], torch.randn(30, 24, generator=g).to(dtype)])
    for k in (1, 5, 40):
        fd, fi = FaissKnn(metric).search(queries, gallery, k)  # type: ignore[arg-type]
        td, ti = omlcore_metrics_knn.TorchKnn(metric, gallery_chunk=1000).search(queries, gallery, k)
        assert torch.equal(fi, ti), (metric, k)
        assert torch.equal(fd, td), (metric, k)
