"""Label sets for the sampler tests (a module with a repository-unique name, importable from any test)."""

import numpy as np


def make_labels(counts: list[int], seed: int = 0) -> list[int]:
    """Label ``i`` repeated ``counts[i]`` times, shuffled."""
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    return [int(x) for x in labels]
