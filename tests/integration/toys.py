"""Small, correct reference implementations of every omlcore protocol.

They exist to prove the conformance kit (``tests/integration/test_conformance_kit.py``): each one is
written from the protocol's docstring only and passes its suite, and deliberately broken variants of
them must fail it. They are short rather than fast. :func:`install` offers them in a
:class:`~omlcore.testing.PluginSandbox` under the names in :data:`ENTRY_POINTS`, as if a distribution
``omlcore-toys`` declared them.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omlcore.registry import Registry
from omlcore.testing import PluginSandbox

# ---- losses ---------------------------------------------------------------------------------------------


class ContrastiveLoss(nn.Module):
    """Pairwise contrastive loss: ``d**2`` for positive pairs, ``max(0, margin - d)**2`` for negative ones,
    averaged over all pairs ``i < j`` of the batch."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin
        self.last_logs: dict[str, float] = {}

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        n = features.shape[0]
        first, second = torch.triu_indices(n, n, offset=1, device=features.device)
        # eps keeps the gradient of sqrt finite for identical rows
        distances = ((features[first] - features[second]).pow(2).sum(dim=1) + 1e-12).sqrt()
        same = labels[first] == labels[second]
        positive = distances[same].pow(2)
        negative = (self.margin - distances[~same]).clamp(min=0).pow(2)
        self.last_logs = {
            "positive_pairs": float(same.sum()),
            "active_negative_fraction": float((negative > 0).float().mean()) if negative.numel() else 0.0,
        }
        return torch.cat([positive, negative]).mean()


class CentroidLoss(nn.Module):
    """Cross-entropy over negative squared distances to learnable class centres (a loss with parameters)."""

    def __init__(self, num_classes: int, feat_dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.centres = nn.Parameter(torch.randn(num_classes, feat_dim, generator=generator))
        self.last_logs: dict[str, float] = {}

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        logits = -(features[:, None, :] - self.centres[None, :, :].to(features.dtype)).pow(2).sum(dim=2)
        self.last_logs = {"accuracy": float((logits.argmax(dim=1) == labels).float().mean())}
        return F.cross_entropy(logits, labels)


# ---- miner ----------------------------------------------------------------------------------------------


class AllTripletsMiner:
    """Every ``(anchor, positive, negative)`` of the batch that satisfies the label constraints."""

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = labels.shape[0]
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(n, dtype=torch.bool, device=labels.device)
        valid = positive[:, :, None] & ~same[:, None, :]
        anchors, positives, negatives = valid.nonzero(as_tuple=True)
        return anchors.to(features.device), positives.to(features.device), negatives.to(features.device)


class AllPairsMiner:
    """Every ordered pair ``(i, j)``, ``i != j``, of the batch, flagged negative when the labels differ."""

    def sample(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = labels.shape[0]
        ids1, ids2 = (~torch.eye(n, dtype=torch.bool, device=labels.device)).nonzero(as_tuple=True)
        return ids1, ids2, labels[ids1] != labels[ids2]


# ---- pairwise model -------------------------------------------------------------------------------------


class DifferenceSiamese(nn.Module):
    """Scores a pair by a linear layer over ``|f(x1) - f(x2)|``, ``f`` a flattening linear map."""

    def __init__(self, in_features: int, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed = nn.Linear(in_features, hidden)
        self.head = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(hidden, in_features, generator=generator) / in_features**0.5)
            self.head.weight.copy_(torch.randn(1, hidden, generator=generator))

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        gap = (self.embed(x1.flatten(start_dim=1)) - self.embed(x2.flatten(start_dim=1))).abs()
        logits: Tensor = self.head(gap).squeeze(1)
        return logits

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.sigmoid(self.forward(x1, x2))


# ---- extractor ------------------------------------------------------------------------------------------


class LinearExtractor(nn.Module):
    """Flattens each item and applies one linear layer with seeded initial weights."""

    def __init__(self, in_features: int, feat_dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.linear = nn.Linear(in_features, feat_dim)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(feat_dim, in_features, generator=generator) / in_features**0.5)
            self.linear.bias.copy_(torch.randn(feat_dim, generator=generator) * 0.1)

    def extract(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(x.flatten(start_dim=1))
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.extract(x)


# ---- sampler --------------------------------------------------------------------------------------------


class PKSampler:
    """P labels x K items per batch; labels with fewer than K items are sampled with replacement.

    One pass yields ``number of labels // n_labels`` batches; the labels are shuffled per pass from
    ``seed`` and the epoch set by :meth:`set_epoch` (like ``DistributedSampler``), never from a global RNG.
    """

    def __init__(self, labels: Iterable[int], n_labels: int = 2, n_instances: int = 2, seed: int = 0) -> None:
        self._by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self._by_label.setdefault(int(label), []).append(index)
        if n_labels > len(self._by_label):
            raise ValueError(f"n_labels={n_labels} but the dataset has {len(self._by_label)} labels")
        self.n_labels = n_labels
        self.n_instances = n_instances
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next pass yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._by_label) // self.n_labels

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = sorted(self._by_label)
        rng.shuffle(order)
        for b in range(len(self)):
            batch: list[int] = []
            for label in order[b * self.n_labels : (b + 1) * self.n_labels]:
                items = self._by_label[label]
                if len(items) >= self.n_instances:
                    batch += rng.sample(items, self.n_instances)
                else:
                    batch += [rng.choice(items) for _ in range(self.n_instances)]
            yield batch


# ---- kNN ------------------------------------------------------------------------------------------------


def pairwise_distances(queries: Tensor, gallery: Tensor, metric: str) -> Tensor:
    """``(Q, G)`` distances: Euclidean, ``1 - cosine`` or ``-dot``, computed row by row exactly."""
    if metric == "l2":
        return torch.cdist(queries, gallery, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "cosine":
        return 1.0 - F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T
    if metric == "dot":
        return -(queries @ gallery.T)
    raise ValueError(f"unknown metric {metric!r}")


class BruteForceKnn:
    """Exhaustive search over query chunks; a stable sort over index-ordered columns breaks ties by index."""

    def __init__(self, metric: str = "l2", query_chunk: int = 4) -> None:
        if metric not in ("l2", "cosine", "dot"):
            raise ValueError(f"metric must be 'l2', 'cosine' or 'dot', got {metric!r}")
        self.metric = metric
        self.query_chunk = query_chunk

    def search(self, queries: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
        k = min(k, gallery.shape[0])
        distances, indices = [], []
        for start in range(0, queries.shape[0], self.query_chunk):
            chunk = pairwise_distances(queries[start : start + self.query_chunk], gallery, self.metric)
            ranked = torch.sort(chunk, dim=1, stable=True)
            distances.append(ranked.values[:, :k])
            indices.append(ranked.indices[:, :k])
        if not distances:
            return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
        return torch.cat(distances), torch.cat(indices)


# ---- metric ---------------------------------------------------------------------------------------------


class CmcMetric:
    """CMC@k (is a gallery item of the query's label among its k nearest?) with Euclidean distances.

    Items are put back in dataset order by ``idx`` (duplicates dropped) before computing, and ties are
    broken by gallery order, so the result does not depend on how the items were batched. An item that
    is both query and gallery is not retrieved for itself.
    """

    keys = ("embeddings", "labels", "is_query", "is_gallery", "idx")

    def __init__(self, top_k: Sequence[int] = (1, 5)) -> None:
        self.top_k = tuple(top_k)
        self._batches: list[dict[str, Tensor]] = []

    def update(self, batch: Mapping[str, Any]) -> None:
        self._batches.append({k: batch[k].detach().cpu().clone() for k in self.keys if k in batch})

    def reset(self) -> None:
        self._batches = []

    def _gathered(self) -> dict[str, Tensor]:
        if not self._batches:
            raise RuntimeError("CmcMetric.compute() called before update()")
        data = {k: torch.cat([b[k] for b in self._batches]) for k in self._batches[0]}
        if "idx" not in data:
            return data
        idx, order = torch.sort(data["idx"], stable=True)
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]
        return {k: v[order][keep] for k, v in data.items()}

    def compute(self) -> dict[str, float]:
        data = self._gathered()
        queries = data["is_query"].nonzero().flatten()
        gallery = data["is_gallery"].nonzero().flatten()
        embeddings, labels = data["embeddings"], data["labels"]
        distances = pairwise_distances(embeddings[queries], embeddings[gallery], "l2")
        distances[queries[:, None] == gallery[None, :]] = float("inf")
        ranked = torch.sort(distances, dim=1, stable=True).indices
        hits = labels[gallery][ranked] == labels[queries][:, None]
        return {f"OVERALL/cmc/{k}": float(hits[:, :k].any(dim=1).float().mean()) for k in self.top_k}


# ---- postprocessors -------------------------------------------------------------------------------------


class IdentityPostprocessor:
    """Keeps the retrieval result as it is."""

    reads = "nothing"

    def __init__(self, top_n: int = 5) -> None:
        self.top_n = top_n

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        return distances, retrieved


class ParityRerankPostprocessor:
    """Re-ranks the first ``top_n`` items by ``distance + penalty * (gallery index is odd)``.

    The items move, the sorted distance values of those columns stay where they were, so every row
    stays sorted and the columns after ``top_n`` are untouched.
    """

    reads = "nothing"

    def __init__(self, top_n: int = 3, penalty: float = 0.5) -> None:
        self.top_n = top_n
        self.penalty = penalty

    def process(self, distances: Tensor, retrieved: Tensor, query_ids: Tensor, dataset: Any) -> tuple[Tensor, Tensor]:
        n = min(self.top_n, distances.shape[1])
        scores = distances[:, :n] + self.penalty * (retrieved[:, :n] % 2).to(distances.dtype)
        order = torch.sort(scores, dim=1, stable=True).indices
        new_retrieved = retrieved.clone()
        new_retrieved[:, :n] = torch.gather(retrieved[:, :n], 1, order)
        return distances.clone(), new_retrieved


# ---- loggers --------------------------------------------------------------------------------------------


def _lightning_adapter(target: Any) -> Any:
    """A ``lightning.pytorch.loggers.Logger`` forwarding metrics and hyper-parameters to ``target``."""
    try:
        from lightning.pytorch.loggers import Logger
    except ImportError as exc:
        raise ImportError('the toy loggers need lightning for lightning_logger(): pip install "lightning"') from exc

    class Adapter(Logger):
        @property
        def name(self) -> str:
            return "toy"

        @property
        def version(self) -> str:
            return "0"

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            target.log_metrics(dict(metrics), step)

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            target.log_params(dict(params) if isinstance(params, Mapping) else vars(params))

    return Adapter()


class InMemoryLogger:
    """Keeps everything in attributes; the read-back is direct."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.figures: list[tuple[str, int, Any]] = []
        self.artifacts: dict[str, bytes] = {}
        self.status: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append((step, float(value)))

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        self.figures.append((title, step, figure))

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        path = Path(path)
        self.artifacts[name or path.name] = path.read_bytes()

    def lightning_logger(self) -> Any:
        return _lightning_adapter(self)

    def finish(self, status: str = "success") -> None:
        self.status = status


class JsonlFileLogger:
    """Writes a run directory: ``params.json``, ``metrics.jsonl`` (one line per metric and step),
    ``figures/*.png``, ``artifacts/`` and ``status.json``; :func:`read_run` reads it back."""

    def __init__(self, save_dir: str, run_name: str = "run") -> None:
        self.run_dir = Path(save_dir) / run_name
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        path = self.run_dir / "params.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        plain = (str, int, float, bool, type(None))
        stored.update({k: v if isinstance(v, plain) else str(v) for k, v in params.items()})
        path.write_text(json.dumps(stored, indent=1, sort_keys=True))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        with (self.run_dir / "metrics.jsonl").open("a") as out:
            for name, value in metrics.items():
                out.write(json.dumps({"name": name, "step": step, "value": float(value)}) + "\n")

    def log_figure(self, figure: Any, title: str, step: int) -> None:
        folder = self.run_dir / "figures"
        folder.mkdir(exist_ok=True)
        figure.savefig(folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', title)}-{step}.png")

    def log_artifact(self, path: str | Path, name: str | None = None) -> None:
        folder = self.run_dir / "artifacts"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(path, folder / (name or Path(path).name))

    def lightning_logger(self) -> Any:
        return _lightning_adapter(self)

    def finish(self, status: str = "success") -> None:
        (self.run_dir / "status.json").write_text(json.dumps({"status": status}))


def read_run(run_dir: Path) -> dict[str, Any]:
    """What a :class:`JsonlFileLogger` wrote: ``params``, ``metrics`` (name -> [(step, value)]),
    ``artifacts`` (names) and ``status``."""
    metrics: dict[str, list[tuple[int | None, float]]] = {}
    metrics_file = run_dir / "metrics.jsonl"
    for line in metrics_file.read_text().splitlines() if metrics_file.exists() else []:
        record = json.loads(line)
        metrics.setdefault(record["name"], []).append((record["step"], record["value"]))
    params_file, status_file = run_dir / "params.json", run_dir / "status.json"
    artifacts = run_dir / "artifacts"
    return {
        "params": json.loads(params_file.read_text()) if params_file.exists() else {},
        "metrics": metrics,
        "artifacts": sorted(p.name for p in artifacts.iterdir()) if artifacts.exists() else [],
        "status": json.loads(status_file.read_text())["status"] if status_file.exists() else None,
    }


# ---- transforms -----------------------------------------------------------------------------------------


class ResizeNormalize:
    """``(H, W, C)`` uint8 image (tensor or array) -> float ``(C, size, size)``: scale to [0, 1], resize
    bilinearly, then ``(x - mean) / std``."""

    def __init__(self, size: int, mean: float, std: float) -> None:
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, sample: Any) -> Tensor:
        image = torch.as_tensor(sample).permute(2, 0, 1).to(torch.float32) / 255.0
        resized = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        return (resized - self.mean) / self.std


class RandomFlip:
    """Flips the output of ``inner`` left-right with probability ``p`` (torch's global RNG): training only."""

    def __init__(self, inner: Callable[[Any], Tensor], p: float) -> None:
        self.inner, self.p = inner, p

    def __call__(self, sample: Any) -> Tensor:
        out = self.inner(sample)
        return out.flip(-1) if float(torch.rand(())) < self.p else out


def make_eval_transform(size: int = 8, mean: float = 0.5, std: float = 0.25) -> ResizeNormalize:
    """Evaluation transform factory (deterministic)."""
    return ResizeNormalize(size, mean, std)


def make_train_transform(size: int = 8, flip_p: float = 0.5) -> RandomFlip:
    """Training transform factory: the evaluation transform plus a random horizontal flip."""
    return RandomFlip(ResizeNormalize(size, 0.5, 0.25), flip_p)


# ---- optimizer and scheduler ----------------------------------------------------------------------------


class MomentumSGD(torch.optim.Optimizer):
    """``v = momentum * v + grad; w -= lr * v``, with the velocity in the optimizer state."""

    def __init__(self, params: Any, lr: float = 0.05, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                velocity = state.get("velocity")
                velocity = p.grad.clone() if velocity is None else velocity.mul_(group["momentum"]).add_(p.grad)
                state["velocity"] = velocity
                p.add_(velocity, alpha=-group["lr"])
        return loss


class LinearWarmup:
    """Raises each group's lr linearly to its base value: after ``t`` steps,
    ``base * min(1, (t + 1) / (warmup_steps + 1))``. Not a torch scheduler subclass, on purpose."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 4) -> None:
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        factor = min(1.0, (self.last_step + 1) / (self.warmup_steps + 1))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def step(self, *args: Any, **kwargs: Any) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs), "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_step = int(state_dict["last_step"])
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self.warmup_steps = int(state_dict["warmup_steps"])
        self._apply()


# ---- registration ---------------------------------------------------------------------------------------

ENTRY_POINTS: dict[tuple[str, str], Any] = {
    ("pairwise_model", "toy_difference_siamese"): DifferenceSiamese,
    ("loss", "toy_contrastive"): ContrastiveLoss,
    ("loss", "toy_centroid"): CentroidLoss,
    ("miner", "toy_all_triplets"): AllTripletsMiner,
    ("pair_miner", "toy_all_pairs"): AllPairsMiner,
    ("extractor", "toy_linear"): LinearExtractor,
    ("sampler", "toy_pk"): PKSampler,
    ("knn", "toy_brute_force"): BruteForceKnn,
    ("metric", "toy_cmc"): CmcMetric,
    ("postprocessor", "toy_identity"): IdentityPostprocessor,
    ("postprocessor", "toy_parity_rerank"): ParityRerankPostprocessor,
    ("logger", "toy_memory"): InMemoryLogger,
    ("logger", "toy_jsonl"): JsonlFileLogger,
    ("transform", "toy_eval"): make_eval_transform,
    ("transform", "toy_train"): make_train_transform,
    ("optimizer", "toy_momentum_sgd"): MomentumSGD,
    ("optimizer", "torch_adam"): torch.optim.Adam,
    ("scheduler", "toy_linear_warmup"): LinearWarmup,
    ("scheduler", "torch_step"): torch.optim.lr_scheduler.StepLR,
    ("scheduler", "torch_plateau"): torch.optim.lr_scheduler.ReduceLROnPlateau,
}
"""``(kind, entry-point name) -> object`` offered by :func:`install`."""


def install(sandbox: PluginSandbox, distribution: str = "omlcore-toys") -> Registry:
    """Declare every toy in ``sandbox`` as an entry point of ``distribution``; the sandbox's registry."""
    for (kind, name), obj in ENTRY_POINTS.items():
        sandbox.add(kind, name, obj, distribution=distribution, version="0.1.0")
    return sandbox.registry
