"""``omlcore train-postprocessor`` on 2 CPU processes (DDP, gloo) against 1 process: the same extractor
metrics from one embeddings cache, half the steps and half the validation queries per process, and re-ranked
metrics that are exactly those of the trained weights re-ranking in a single process. :class:`QueryShards`
(how the validation queries are shared) on threads standing for processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omlcore_lightning", reason="omlcore-lightning (the [pipelines] extra) is not installed")
pytest.importorskip("omlcore_images", reason="omlcore-images is not installed")

import torch
import yaml
from omlcore_reranking.pipeline import train_postprocessor
from reranking_helpers import TinyConvExtractor, counting_images_reranker, pipeline_config

ENTRY = Path(__file__).resolve().parent / "reranking_entry.py"


@pytest.fixture
def tiny(installed_registry: Any) -> None:
    installed_registry.register("extractor", "tiny_conv", TinyConvExtractor)
    installed_registry.register("postprocessor", "counting_pairwise_images", counting_images_reranker)


def test_two_processes_give_the_metrics_of_one(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPU cores for 2 processes")
    sampler = {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}}
    cfg = pipeline_config(mock_root, tmp_path, sampler=sampler, trainer={"max_epochs": 1, "accelerator": "cpu"})
    cfg["postprocessor"]["name"] = "counting_pairwise_images"
    cfg["run"]["logs_folder"] = "two"
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(cfg))
    counts = tmp_path / "counts"
    counts.mkdir()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMLCORE_TEST_COUNTS": str(counts)}
    for name in ("OMLCORE_RUN_DIR", "RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(ENTRY), "train-postprocessor", str(path), "trainer.devices=2", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "logs" / "two"
    assert done.stdout.count("run folder:") == 1  # only the first process reports
    two = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in two] == [None, 0]

    cfg["run"]["logs_folder"] = "one"
    one = train_postprocessor(cfg, ["trainer.devices=1"], verbose=False)
    assert one.cache_hits == {"train": True, "validation": True}  # the 2-process run's cache, complete
    assert not list((tmp_path / "cache").glob("*.tmp"))
    assert two[0] == one.history[0]  # the extractor's metrics
    assert 2 * two[1]["step"] == one.history[1]["step"]  # each process took half of the batches

    # the 2-process validation equals re-ranking with its trained weights in this (single) process
    from omlcore_images.datasets import get_retrieval_images_datasets
    from omlcore_reranking.lightning_parts import RerankValidation
    from omlcore_reranking.pipeline import load_train_postprocessor_config

    from omlcore.registry import build

    loaded = load_train_postprocessor_config(yaml.safe_load((run / "config.yaml").read_text()))
    _, val = get_retrieval_images_datasets(mock_root, None, build("transform", loaded.transforms_val))
    assert val is not None
    n_queries = int(torch.as_tensor(val.is_query).sum())
    per_process = sorted(int(f.read_text()) for f in counts.glob("*.txt"))  # one validation, one call each
    assert per_process == [n_queries // 2, n_queries - n_queries // 2]  # each re-ranked half of the queries
    emb = torch.load(tmp_path / "cache" / "validation.pt", weights_only=False)["embeddings"]
    model = build("pairwise_model", loaded.pairwise_model)
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    validation = RerankValidation(loaded.postprocessor, emb, val, loaded.metrics)
    expected = validation.rerank_metrics(model, torch.device("cpu"))
    assert {k: two[1][k] for k in expected} == expected


def test_more_devices_than_the_machine_has_are_refused_up_front(mock_root: Path, tmp_path: Path, tiny: None) -> None:
    from omlcore.errors import ConfigValidationError

    too_many = (os.cpu_count() or 1) + 1
    cfg = pipeline_config(mock_root, tmp_path)
    with pytest.raises(ConfigValidationError, match=rf"trainer.devices: asks for {too_many} cpu device"):
        train_postprocessor(cfg, ["trainer.accelerator=cpu", f"trainer.devices={too_many}"], verbose=False)
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "cache").exists()


class _ThreadGather:
    """``all_gather`` between threads that stand for DDP processes (each calls it in the same order)."""

    def __init__(self, world_size: int) -> None:
        import threading

        self.barrier = threading.Barrier(world_size, timeout=60)
        self.slots: list[torch.Tensor | None] = [None] * world_size

    def for_rank(self, rank: int) -> Any:
        def gather(t: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = t.clone()
            self.barrier.wait()
            out = torch.stack([s for s in self.slots if s is not None])
            self.barrier.wait()  # nobody overwrites a slot before everyone has read them all
            return out

        return gather


class _Seen:
    """A postprocessor that records the query rows it was handed, and fails on ``fail_on``."""

    def __init__(self, inner: Any, fail_on: int | None = None) -> None:
        self.inner, self.fail_on = inner, fail_on
        self.top_n, self.reads = inner.top_n, inner.reads
        self.queries: list[int] = []

    def process(self, d: torch.Tensor, r: torch.Tensor, q: torch.Tensor, dataset: Any) -> Any:
        self.queries += q.tolist()
        if self.fail_on is not None and self.fail_on in self.queries:
            raise ValueError(f"cannot re-rank query {self.fail_on}")
        return self.inner.process(d, r, q, dataset)


def _sharded(world: int, topk: tuple[torch.Tensor, ...], inner: Any, fail_on: int | None = None) -> list[Any]:
    """Run :class:`QueryShards` on ``world`` threads; each one's (result or exception, queries handed over)."""
    from concurrent.futures import ThreadPoolExecutor

    from omlcore_reranking.lightning_parts import QueryShards

    gather = _ThreadGather(world)
    seen = [_Seen(inner, fail_on) for _ in range(world)]

    def run(rank: int) -> Any:
        try:
            return QueryShards(seen[rank], rank, world, gather.for_rank(rank)).process(*topk)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(world) as pool:
        outs = list(pool.map(run, range(world)))
    return [(out, s.queries) for out, s in zip(outs, seen, strict=True)]


def _topk(n_queries: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(n_queries + 9, 4, generator=gen)
    queries, gallery = torch.arange(n_queries), torch.arange(n_queries, n_queries + 9)
    dist = torch.cdist(emb[queries], emb[gallery])
    d, pos = dist.topk(5, dim=1, largest=False)
    return d, gallery[pos], queries, emb


@pytest.mark.parametrize(("world", "n_queries"), [(2, 7), (3, 2), (2, 1)])
def test_query_shards_re_rank_a_share_each_and_return_the_whole_result(world: int, n_queries: int) -> None:
    from omlcore_reranking import LinearSiamese, PairwiseEmbeddingsReranker

    torch.manual_seed(1)
    inner = PairwiseEmbeddingsReranker(top_n=4, pairwise_model=LinearSiamese(4, identity_init=False))
    topk = _topk(n_queries)
    whole_d, whole_r = inner.process(*topk)
    assert not torch.equal(whole_r, topk[1])  # the model does re-order: the test sees misplaced shards
    runs = _sharded(world, topk, inner)
    per = -(-n_queries // world)
    for rank, (out, queries) in enumerate(runs):
        assert queries == list(range(n_queries))[rank * per : (rank + 1) * per]
        d, r = out
        assert torch.equal(r, whole_r)
        torch.testing.assert_close(d, whole_d)


def test_query_shards_fail_on_every_process_when_one_fails() -> None:
    from omlcore_reranking import LinearSiamese, PairwiseEmbeddingsReranker, RerankingError

    inner = PairwiseEmbeddingsReranker(top_n=4, pairwise_model=LinearSiamese(4))
    (first, _), (second, _) = _sharded(2, _topk(6), inner, fail_on=4)  # query 4 is the second process's
    assert isinstance(second, ValueError)
    assert "cannot re-rank query 4" in str(second)
    assert isinstance(first, RerankingError)
    assert "process(es) [1]" in str(first)
