"""``distributed`` on 2 CPU processes (gloo) gives the gradients of one process on the whole batch."""

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omlcore_losses import ArcFaceLoss, DistributedLoss, SupConLoss, TripletLoss
from omlcore_losses.distributed import gather_with_grad

WORLD = 2


def problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    x = torch.randn(12, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 2, 0])
    return model, x, y


def make_losses() -> dict[str, torch.nn.Module]:
    torch.manual_seed(1)
    return {"triplet": TripletLoss(margin=0.5), "supcon": SupConLoss(), "arcface": ArcFaceLoss(4, 3, s=8.0)}


# Rank 0 gets 7 rows, rank 1 gets 5: unequal shards exercise the padding.
SPLIT = [7, 5]


def grads(model: torch.nn.Module, loss: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in [*model.parameters(), *loss.parameters()] if p.grad is not None]


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model, x, y = problem()
        start = sum(SPLIT[:rank])
        xs, ys = x[start : start + SPLIT[rank]], y[start : start + SPLIT[rank]]
        results = {}
        for name, inner in make_losses().items():
            loss = DistributedLoss(inner)
            model.zero_grad()
            value = loss(model(xs), ys)
            value.backward()
            # what DDP does: average the gradients of every parameter over the ranks
            averaged = []
            for g in grads(model, inner):
                dist.all_reduce(g)
                averaged.append(g / WORLD)
            results[name] = (value.detach(), averaged, dict(loss.last_logs))
            inner.zero_grad()
        gathered, labels = gather_with_grad(xs, ys)
        results["gather"] = (gathered, [labels], {})
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_match_one_process_on_the_concatenated_batch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    model, x, y = problem()
    for name, loss in make_losses().items():
        model.zero_grad()
        value = loss(model(x), y)
        value.backward()
        expected = grads(model, loss)
        for rank in ranks:
            got_value, got_grads, logs = rank[name]
            torch.testing.assert_close(got_value, value.detach(), msg=f"{name}: loss value")
            assert len(got_grads) == len(expected)
            for g, e in zip(got_grads, expected, strict=True):
                torch.testing.assert_close(g, e, msg=f"{name}: gradients differ from single-process")
            assert logs["world_size"] == 2.0
    for rank in ranks:
        gathered, (labels,), _ = rank["gather"]
        torch.testing.assert_close(gathered, x)
        assert torch.equal(labels, y)


def test_single_process_is_a_pass_through() -> None:
    x, y = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    inner = SupConLoss()
    torch.testing.assert_close(DistributedLoss(inner)(x, y), inner(x, y))
