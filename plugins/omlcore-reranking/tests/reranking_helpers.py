"""Small models and data shared by the re-ranking tests (a helper module, not collected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class TinyConvExtractor(nn.Module):
    """An image extractor that takes any height and width: one strided conv, global average pooling."""

    def __init__(self, feat_dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.feat_dim = feat_dim
        self.conv = nn.Conv2d(3, feat_dim, kernel_size=4, stride=4)

    def extract(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x).mean(dim=(2, 3))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.extract(x)


def counting_images_reranker(**kwargs: Any) -> Any:
    """``pairwise_images`` that appends how many queries each ``process`` call gets to
    ``$OMLCORE_TEST_COUNTS/<pid>.txt`` (one file per process), when that variable is set."""
    import os

    from omlcore_reranking import PairwiseImagesReranker

    class Counting(PairwiseImagesReranker):
        def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> Any:
            folder = os.environ.get("OMLCORE_TEST_COUNTS")
            if folder:
                with (Path(folder) / f"{os.getpid()}.txt").open("a") as f:
                    f.write(f"{query_ids.numel()}\n")
            return super().process(distances, retrieved, query_ids, dataset)

    return Counting(**kwargs)


class PositionalConvExtractor(TinyConvExtractor):
    """Like :class:`TinyConvExtractor`, but rows are weighted by their height position before pooling, so
    stacking ``x1`` over ``x2`` differs from ``x2`` over ``x1``."""

    def extract(self, x: Tensor) -> Tensor:
        maps = self.conv(x)
        ramp = torch.linspace(0.0, 1.0, maps.shape[2], device=x.device)[None, None, :, None]
        out: Tensor = (maps * ramp).mean(dim=(2, 3))
        return out


class SquareOnlyExtractor(TinyConvExtractor):
    """Like :class:`TinyConvExtractor` but refuses non-square inputs (as fixed-size models do)."""

    def extract(self, x: Tensor) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise RuntimeError(f"input must be square, got {tuple(x.shape[-2:])}")
        return super().extract(x)


class CountingModel(nn.Module):
    """L2 between embeddings that counts the pairs it scored."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs = 0
        self.calls = 0

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.linalg.vector_norm(x1 - x2, dim=1)

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        self.pairs += x1.shape[0]
        self.calls += 1
        return self.forward(x1, x2)


class LabelOracle(nn.Module):
    """Scores a pair 0 if its two inputs (labels, as a float column) are equal, else 1."""

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return (x1 != x2).any(dim=1).float()

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.forward(x1, x2)


class ConstantModel(nn.Module):
    """Gives every pair the same score."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.value = value

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.full((x1.shape[0],), self.value)

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.forward(x1, x2)


def integer_embeddings(n: int, dim: int, seed: int, low: int = -3, high: int = 4) -> Tensor:
    """Integer-valued float32 embeddings: every L2 distance is computed exactly by any formula."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, dim), generator=g).float()


def pipeline_config(root: Path, tmp: Path, **over: Any) -> dict[str, Any]:
    """A ``train_postprocessor`` config over the mock dataset at ``root`` (tiny models, 2 epochs on the CPU,
    run folder ``tmp/logs/run``, cache ``tmp/cache``); ``over`` replaces top-level sections. Needs the
    extractor ``tiny_conv`` (:class:`TinyConvExtractor`) registered."""
    resize = {"name": "norm_resize_torch", "args": {"im_size": 32}}
    cfg: dict[str, Any] = {
        "pipeline": "train_postprocessor",
        "run": {"logs_root": str(tmp / "logs"), "logs_folder": "run"},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1},
        "data": {"dataset_root": str(root)},
        "embeddings_cache": {"folder": str(tmp / "cache")},
        "extractor": {"name": "tiny_conv", "args": {"feat_dim": 8}},
        "transforms_extraction": resize,
        "transforms_train": resize,
        "transforms_val": resize,
        "sampler": {"name": "balance", "args": {"n_labels": 2, "n_instances": 3}},
        "pair_miner": {"name": "pairs", "args": {"hard_mining": True}},
        "pairwise_model": {
            "name": "concat_siamese",
            "args": {"extractor": {"name": "tiny_conv", "args": {"feat_dim": 8}}, "mlp_hidden_dims": [8]},
        },
        "optimizer": {"name": "adam", "args": {"lr": 0.01}},
        "postprocessor": {"name": "pairwise_images", "args": {"top_n": 3, "batch_size": 8}},
        "metrics": {"cmc_top_k": [1, 3], "precision_top_k": [], "map_top_k": [3], "pcf_variance": []},
    }
    cfg.update(over)
    return cfg


class FailingLogger:
    """An experiment logger that cannot start (as a backend without credentials), after writing into the
    run folder it was given; ``FailingLogger.started`` counts the attempts."""

    started: ClassVar[int] = 0

    def __init__(self, run_dir: Path | None = None) -> None:
        FailingLogger.started += 1
        if run_dir is not None:
            (run_dir / "failing_logger").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("failing logger: no credentials (set FAILING_TOKEN)")

    def log_params(self, params: dict[str, Any]) -> None:
        """Never reached."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Never reached."""

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        """Never reached."""

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        """Never reached."""

    def lightning_logger(self) -> Any:
        return None

    def finish(self, status: str = "success") -> None:
        """Never reached."""
