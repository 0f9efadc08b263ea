"""omlcore's conformance suites on a representative subset of the wrapped PML losses and miners."""

from typing import ClassVar

import pytest

from omlcore.testing import LossConformance, MinerConformance

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


class TestMultiSimilarity(LossConformance):
    kind_name = "pml_multi_similarity"


class TestTripletMargin(LossConformance):
    kind_name = "pml_triplet_margin"
    args: ClassVar = {"margin": 0.2}


class TestTripletMarginWithMiner(LossConformance):
    kind_name = "pml_triplet_margin"
    args: ClassVar = {"margin": 0.2, "miner": {"name": "pml_batch_hard_miner"}}


class TestContrastive(LossConformance):
    kind_name = "pml_contrastive"


class TestArcFace(LossConformance):
    kind_name = "pml_arcface"
    args: ClassVar = {"num_classes": 4, "embedding_size": 8}


class TestTripletMarginMiner(MinerConformance):
    kind_name = "pml_triplet_margin_miner"


class TestBatchHardMiner(MinerConformance):
    kind_name = "pml_batch_hard_miner"
