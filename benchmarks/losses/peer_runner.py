"""Peer side of the triplet benchmark: OML 4.0 and PML 2.9 losses + miners; run in the peer venv.

Usage: benchmarks/.venv-peers/bin/python peer_runner.py LIBRARY MODE CONFIG BATCH_SIZE [--repeat N ...]
with LIBRARY in {oml, pml}, MODE in {time, mem, value, profile}, CONFIG one of the keys below. Prints one
JSON line (see harness.py). Imports nothing from omlcore.

Configurations (margin 0.2 everywhere):

- ``oml``  ``all``: ``TripletLossWithMiner(margin, miner=AllTripletsMiner())``;
           ``hard``: ``TripletLossWithMiner(margin, miner=HardTripletsMiner())``. Euclidean distance on the
           features as given, mean over all mined triplets.
- ``pml``  ``all``: ``TripletMarginLoss(margin)`` on ``TripletMarginMiner(margin, type_of_triplets="all")``
           (only the triplets that violate the margin);
           ``hard``: the same with ``type_of_triplets="hard"`` (margin-violating triplets whose negative is
           closer than the positive: NOT batch-hard);
           ``all-nominer``: ``TripletMarginLoss(margin)`` alone (all triplets);
           ``batch-hard``: ``TripletMarginLoss(margin)`` on ``BatchHardMiner()`` (per anchor the farthest
           positive and the closest negative: the semantic counterpart of OML's HardTripletsMiner).
           PML's defaults: ``LpDistance`` L2-normalises the embeddings, ``AvgNonZeroReducer`` averages
           over the triplets with a positive loss only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Builder, Step, worker_main


def oml_builders() -> dict[str, Builder]:
    from oml.losses.triplet import TripletLossWithMiner
    from oml.miners.inbatch_all_tri import AllTripletsMiner
    from oml.miners.inbatch_hard_tri import HardTripletsMiner

    def all_(margin: float) -> Step:
        return TripletLossWithMiner(margin=margin, miner=AllTripletsMiner())  # type: ignore[no-any-return]

    def hard(margin: float) -> Step:
        return TripletLossWithMiner(margin=margin, miner=HardTripletsMiner())  # type: ignore[no-any-return]

    return {"all": all_, "hard": hard}


def pml_builders() -> dict[str, Builder]:
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner

    def with_miner(miner: object | None, margin: float) -> Step:
        loss_fn = TripletMarginLoss(margin=margin)

        def step(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            indices = None if miner is None else miner(features, labels)  # type: ignore[operator]
            return loss_fn(features, labels, indices)  # type: ignore[no-any-return]

        return step

    return {
        "all": lambda m: with_miner(TripletMarginMiner(margin=m, type_of_triplets="all"), m),
        "hard": lambda m: with_miner(TripletMarginMiner(margin=m, type_of_triplets="hard"), m),
        "all-nominer": lambda m: with_miner(None, m),
        "batch-hard": lambda m: with_miner(BatchHardMiner(), m),
    }


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("oml", "pml"):
        sys.exit("usage: peer_runner.py {oml,pml} MODE CONFIG BATCH_SIZE [options]")
    library = sys.argv[1]
    builders = oml_builders() if library == "oml" else pml_builders()
    worker_main(library, builders, sys.argv[2:])


if __name__ == "__main__":
    main()
