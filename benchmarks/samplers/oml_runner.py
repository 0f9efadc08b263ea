"""Time OML 4.0's ``BalanceSampler`` on a saved label array; run by bench_balance.py in the peer venv.

Usage: benchmarks/.venv-peers/bin/python oml_runner.py LABELS.npy N_LABELS N_INSTANCES
Prints one JSON line: {"construct_s", "epoch_s", "batches", "oml_version"}. Imports nothing from omlcore.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata

import numpy as np
from oml.samplers.balance import BalanceSampler


def main() -> None:
    path, n_labels, n_instances = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    labels = np.load(path).tolist()
    np.random.seed(0)  # OML draws from numpy's global RNG
    start = time.perf_counter()
    sampler = BalanceSampler(labels, n_labels=n_labels, n_instances=n_instances)
    built = time.perf_counter()
    batches = list(sampler)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "construct_s": built - start,
                "epoch_s": done - built,
                "batches": len(batches),
                "oml_version": metadata.version("open-metric-learning"),
            }
        )
    )


if __name__ == "__main__":
    main()
