"""EmbeddingMetrics on 2 CPU processes (gloo) equals one process over the whole dataset, with a
distributed sampler's padding (a sample repeated on the second rank) counted once; also with a
postprocessor reading items by dataset index."""

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omlcore_metrics.accumulator import EmbeddingMetrics

WORLD = 2
N = 23  # odd: the sampler pads rank 1 with a repeat of sample 0
ARGS: dict[str, Any] = {"cmc_top_k": (1, 5), "precision_top_k": (5,), "map_top_k": (5,), "fmr_vals": (0.1,)}


def dataset() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N) % 6
    emb = 2.0 * torch.randn(6, 8, generator=g)[labels] + torch.randn(N, 8, generator=g)
    return {
        "embeddings": emb,
        "labels": labels,
        "is_query": torch.arange(N) % 3 == 0,
        "is_gallery": torch.ones(N, dtype=torch.bool),
        "categories": ["low" if int(x) < 3 else "high" for x in labels],
        "paths": [f"p{i}.png" for i in range(N)],
        "idx": torch.arange(N),
    }


def shard(rank: int) -> list[int]:
    """What torch's DistributedSampler (shuffle=False) gives a rank: interleaved, padded from the start."""
    per_rank = -(-N // WORLD)
    padded = list(range(N)) + list(range(per_rank * WORLD - N))
    return padded[rank : per_rank * WORLD : WORLD]


def take(data: dict[str, Any], index: list[int]) -> dict[str, Any]:
    t = torch.tensor(index)
    return {k: v[t] if isinstance(v, torch.Tensor) else [v[i] for i in index] for k, v in data.items()}


class LabelOracle:
    """A postprocessor reading items: true positives of each row's top 3 first, by the items' labels."""

    top_n = 3
    reads = "items"

    def process(self, distances: Any, retrieved: Any, query_ids: Any, items: Any) -> tuple[Any, Any]:
        new_r = retrieved.clone()
        for q in range(retrieved.shape[0]):
            top = [int(r) for r in retrieved[q, :3] if int(r) >= 0]
            wanted = items[int(query_ids[q])]
            ordered = [r for r in top if items[r] == wanted] + [r for r in top if items[r] != wanted]
            new_r[q, : len(ordered)] = torch.tensor(ordered, dtype=torch.long)
        return distances.clone(), new_r


def oracle_items() -> list[int]:
    """The postprocessor's dataset: item ``i`` is the label of sample ``i``."""
    return (torch.arange(N) % 6).tolist()


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        data = dataset()
        metric = EmbeddingMetrics(extra_keys=("paths",), **ARGS)
        metric.setup(num_samples=N)
        mine = shard(rank)
        for start in range(0, len(mine), 4):
            batch = take(data, mine[start : start + 4])
            metric.update_data(batch, indices=batch.pop("idx"))
        flat = metric.compute()
        reranked = EmbeddingMetrics(**ARGS, postprocessor=LabelOracle(), postprocessor_dataset=oracle_items())
        for start in range(0, len(mine), 4):
            batch = take(data, mine[start : start + 4])
            reranked.update_data(batch, indices=batch.pop("idx"))
        flat_reranked = reranked.compute()
        no_idx = EmbeddingMetrics(**ARGS)
        batch = take(data, mine)
        del batch["idx"]
        no_idx.update(batch)
        try:
            no_idx.compute()
            error = ""
        except RuntimeError as exc:
            error = str(exc)
        torch.save(
            {"flat": flat, "reranked": flat_reranked, "paths": metric.storage["paths"], "error": error},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_match_one_process() -> None:
    assert sorted(shard(0) + shard(1)) == sorted([*range(N), 0])  # the padding repeats sample 0
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    single = EmbeddingMetrics(**ARGS)
    single.setup(num_samples=N)
    single.update(dataset())
    expected = single.compute()
    single_reranked = EmbeddingMetrics(**ARGS, postprocessor=LabelOracle(), postprocessor_dataset=oracle_items())
    single_reranked.update(dataset())
    expected_reranked = single_reranked.compute()
    assert expected_reranked["OVERALL/cmc/1"] > expected["OVERALL/cmc/1"], "the oracle must have something to lift"
    for got in ranks:
        assert got["flat"] == pytest.approx(expected, abs=1e-6)
        assert got["reranked"] == pytest.approx(expected_reranked, abs=1e-6)
        assert got["paths"] == [f"p{i}.png" for i in range(N)]  # gathered, de-duplicated, in dataset order
        assert "must carry dataset indices" in got["error"]
