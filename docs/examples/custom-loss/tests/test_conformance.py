"""omlcore's conformance suite for losses, run on ``focal_triplet`` built as a config would build it.

``LossConformance`` checks the :class:`omlcore.protocols.Loss` contract: a finite scalar of the input's
dtype, gradients that reach the features, ``last_logs`` as ``str -> float``, determinism, the smallest
useful batch, inputs left unchanged, and that the name resolves and ``args`` pass omlcore's validation.
Subclassing it runs all of those checks on this package's loss.
"""

from __future__ import annotations

from omlcore.testing.conformance import LossConformance


class TestFocalTripletConformance(LossConformance):
    kind_name = "focal_triplet"  # the entry-point name in "omlcore.losses"
    args = {"margin": 0.3, "gamma": 1.0}  # the config's "args"


class TestFocalTripletSumConformance(LossConformance):
    kind_name = "focal_triplet"
    args = {"reduction": "sum", "temperature": 0.5}
