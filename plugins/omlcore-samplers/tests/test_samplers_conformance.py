"""omlcore's BatchSampler conformance suite, run on each sampler through its entry point."""

from typing import Any

import pytest

from omlcore.registry import get_registry
from omlcore.testing.conformance import BatchSamplerConformance, ComponentFactory


class _Seeded(BatchSamplerConformance):
    seed_arg = "seed"

    def test_reproducible_for_same_seed_and_epoch(
        self, make_component: ComponentFactory, runtime_args: dict[str, Any], labels: list[int]
    ) -> None:
        # The suite scrambles torch's global RNG too, so it needs torch; this plugin does not depend on
        # torch (test_samplers_epochs_ddp.py checks the same without it).
        pytest.importorskip("torch")
        super().test_reproducible_for_same_seed_and_epoch(make_component, runtime_args, labels)


class TestBalanceConformance(_Seeded):
    kind_name = "balance"
    args = {"n_labels": 3, "n_instances": 2}


class _WithCategories(_Seeded):
    @pytest.fixture
    def runtime_args(self, labels: list[int]) -> dict[str, Any]:
        return {"labels": labels, "label2category": {label: label % 2 for label in set(labels)}}


class TestCategoryBalanceConformance(_WithCategories):
    kind_name = "category_balance"
    args = {"n_categories": 2, "n_labels": 2, "n_instances": 3}


class TestDistinctCategoryBalanceConformance(_WithCategories):
    kind_name = "distinct_category_balance"
    args = {"n_categories": 2, "n_labels": 3, "n_instances": 2, "epoch_size": 5}


def test_entry_points_are_the_three_samplers() -> None:
    from importlib import metadata

    names = {ep.name for ep in metadata.distribution("omlcore-samplers").entry_points if ep.group == "omlcore.samplers"}
    assert names == {"balance", "category_balance", "distinct_category_balance"}
    for name in names:
        assert get_registry().entry("sampler", name).distribution == "omlcore-samplers"
