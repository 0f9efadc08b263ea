"""Config-level checks (the registry, before building) and data-dependent checks (at build time)."""

from typing import Any

import pytest
from omlcore_samplers import BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler
from samplers_testdata import make_labels

from omlcore.errors import ComponentBuildError
from omlcore.registry import get_registry


def issues(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in get_registry().validate("sampler", spec, "sampler")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"name": "balance", "args": {"n_labels": 8, "n_instances": 1}},
            [("sampler.args.n_instances", "greater than 1")],
        ),
        ({"name": "balance", "args": {"n_labels": 1, "n_instances": 4}}, [("sampler.args.n_labels", "greater than 1")]),
        ({"name": "balance", "args": {"n_labels": "x", "n_instances": 4}}, [("sampler.args.n_labels", "integer")]),
        ({"name": "balance", "args": {"n_labels": 8}}, [("sampler.args.n_instances", "required")]),
        (
            {"name": "balance", "args": {"n_labels": 8, "n_instances": 4, "seed": -1}},
            [("sampler.args.seed", "greater than or equal to 0")],
        ),
        (
            {"name": "balance", "args": {"n_labels": 8, "n_instances": 4, "n_instance": 4}},
            [("sampler.args.n_instance", "")],
        ),
        (
            {"name": "balance", "args": {"n_labels": 8, "n_instances": 4, "labels": [1, 1]}},
            [("sampler.args.labels", "passed by the pipeline at run time")],
        ),
        (
            {"name": "category_balance", "args": {"n_categories": 0, "n_labels": 2, "n_instances": 2}},
            [("sampler.args.n_categories", "greater than or equal to 1")],
        ),
        (
            {"name": "distinct_category_balance", "args": {"n_categories": 2, "n_labels": 2, "n_instances": 2}},
            [("sampler.args.epoch_size", "required")],
        ),
        (
            {
                "name": "distinct_category_balance",
                "args": {"n_categories": 2, "n_labels": 2, "n_instances": 2, "epoch_size": 0},
            },
            [("sampler.args.epoch_size", "greater than or equal to 1")],
        ),
        ({"name": "balanse", "args": {}}, [("sampler.name", "Did you mean 'balance'")]),
    ],
)
def test_config_errors_are_caught_before_building(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = issues(spec)
    assert [p for p, _ in found] == [p for p, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


def test_valid_configs_pass_and_strings_are_coerced() -> None:
    assert issues({"name": "balance", "args": {"n_labels": "8", "n_instances": 4, "seed": 3}}) == []
    spec = {"name": "category_balance", "args": {"n_categories": 2, "n_labels": 3, "n_instances": 2}}
    assert issues(spec) == []


def test_build_through_the_registry_with_runtime_args() -> None:
    labels = make_labels([2, 3, 4, 5])
    sampler = get_registry().build(
        "sampler", {"name": "balance", "args": {"n_labels": "2", "n_instances": 2}}, labels=labels
    )
    assert isinstance(sampler, BalanceSampler)
    assert len(sampler) == 2
    l2c = {0: "a", 1: "a", 2: "b", 3: "b"}
    spec = {"name": "category_balance", "args": {"n_categories": 2, "n_labels": 2, "n_instances": 2}}
    built = get_registry().build("sampler", spec, labels=labels, label2category=l2c)
    assert isinstance(built, CategoryBalanceSampler)


@pytest.mark.parametrize(
    ("counts", "args", "message"),
    [
        ([2, 1, 3, 1], {"n_labels": 2, "n_instances": 2}, "2 of 4 labels have fewer than 2 samples (labels 1, 3)"),
        ([2, 2, 2], {"n_labels": 4, "n_instances": 2}, "n_labels=4 but the data has only 3 distinct labels"),
    ],
)
def test_data_errors_name_counts_and_labels(counts: list[int], args: dict[str, Any], message: str) -> None:
    with pytest.raises(ComponentBuildError) as caught:
        get_registry().build("sampler", {"name": "balance", "args": args}, labels=make_labels(counts))
    assert message in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)


def test_many_offending_labels_are_summarised() -> None:
    with pytest.raises(ValueError, match=r"12 of 14 labels .* \(labels 2, 3, 4, 5, 6 and 7 more\)"):
        BalanceSampler(make_labels([2, 2] + [1] * 12), 2, 2)


def test_direct_construction_checks_arguments_too() -> None:
    labels = make_labels([2, 2, 2])
    with pytest.raises(ValueError, match="n_instances must be >= 2, got 1"):
        BalanceSampler(labels, 2, 1)
    with pytest.raises(TypeError, match="n_labels must be an int, got float 2.5"):
        BalanceSampler(labels, 2.5, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="labels must be ints"):
        BalanceSampler(["a", "b"], 2, 2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="labels is empty"):
        BalanceSampler([], 2, 2)


def test_category_data_errors() -> None:
    labels = make_labels([2] * 6)
    with pytest.raises(ValueError, match=r"no category for 2 of the 6 labels \(labels 4, 5\)"):
        CategoryBalanceSampler(labels, {0: "a", 1: "a", 2: "b", 3: "b"}, 1, 2, 2)
    l2c = {i: "ab"[i % 2] for i in range(6)}
    with pytest.raises(ValueError, match=r"n_categories=3 but the labels fall into only 2 categories \(a, b\)"):
        CategoryBalanceSampler(labels, l2c, 3, 2, 2)
    with pytest.raises(ValueError, match=r"2 of 2 categories have fewer than n_labels=4 labels: 'a' \(3\), 'b' \(3\)"):
        DistinctCategoryBalanceSampler(labels, l2c, 1, 4, 2, epoch_size=3)
    with pytest.raises(TypeError, match="label2category must be a mapping"):
        CategoryBalanceSampler(labels, [("a", 1)], 1, 2, 2)  # type: ignore[arg-type]
    # entries for labels that are not in the data are ignored (OML raises)
    assert len(CategoryBalanceSampler(labels, {**l2c, 99: "c"}, 2, 2, 2)) == 3
