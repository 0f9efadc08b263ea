"""Phase-2 validation of ``args``: every problem is reported with its config path, before building."""

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import omlcore
from omlcore.errors import ConfigValidationError
from omlcore.registry import get_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def issues(kind: str, spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in get_registry().validate(kind, spec, path)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "adam", "args": {"lr": "abc"}}, [("optimizer.args.lr", "valid number")]),
        ({"name": "adam", "args": {"lrr": 0.1}}, [("optimizer.args.lrr", "extra inputs are not permitted")]),
        ({"name": "adam", "args": {"betas": [0.9]}}, [("optimizer.args.betas.1", "field required")]),
        ({"name": "adam", "args": {"betas": [0.9, "x"]}}, [("optimizer.args.betas.1", "valid number")]),
        ({"name": "adamw", "args": {"betas": 0.9}}, [("optimizer.args.betas", "valid tuple")]),
        ({"name": "sgd", "args": {"nesterov": "sometimes"}}, [("optimizer.args.nesterov", "valid boolean")]),
        ({"name": "rprop", "args": {"etas": [0.5, 1.2, 2.0]}}, [("optimizer.args.etas", "at most 2 items")]),
        (
            {"name": "adam", "args": {"params": [], "lr": 0.1}},
            [("optimizer.args.params", "passed by the pipeline at run time")],
        ),
        # torch accepts these, the config API does not (see the README)
        ({"name": "adam", "args": {"capturable": True}}, [("optimizer.args.capturable", "extra inputs")]),
        ({"name": "sgd", "args": {"differentiable": True}}, [("optimizer.args.differentiable", "extra inputs")]),
        ({"name": "adamm", "args": {}}, [("optimizer.name", "Did you mean 'adam'")]),
    ],
)
def test_optimizer_arg_errors(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = issues("optimizer", spec, "optimizer")
    assert [p for p, _ in found] == [p for p, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


def test_every_problem_is_reported_at_once() -> None:
    found = issues("optimizer", {"name": "adam", "args": {"lr": "abc", "foo": 1, "amsgrad": "x"}}, "optimizer")
    assert sorted(p for p, _ in found) == ["optimizer.args.amsgrad", "optimizer.args.foo", "optimizer.args.lr"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "step", "args": {}}, [("scheduling.scheduler.args.step_size", "field required")]),
        ({"name": "step", "args": {"step_size": 2.5}}, [("scheduling.scheduler.args.step_size", "valid integer")]),
        (
            {"name": "multi_step", "args": {"milestones": [3, "six"]}},
            [("scheduling.scheduler.args.milestones.1", "valid integer")],
        ),
        ({"name": "multi_step", "args": {"milestones": 5}}, [("scheduling.scheduler.args.milestones", "valid list")]),
        ({"name": "reduce_on_plateau", "args": {"mode": "lowest"}}, [("scheduling.scheduler.args.mode", "'min'")]),
        ({"name": "cyclic", "args": {"base_lr": 0.1, "max_lr": [1.0]}}, [("scheduling.scheduler.args.max_lr", "")]),
        (
            {"name": "one_cycle", "args": {"max_lr": 0.1, "anneal_strategy": "exp"}},
            [("scheduling.scheduler.args.anneal_strategy", "'cos' or 'linear'")],
        ),
        (
            {"name": "lambda_warmup", "args": {"warmup_steps": 5, "total_step": 10}},
            [("scheduling.scheduler.args.total_step", "extra inputs")],
        ),
        ({"name": "step", "args": {"step_size": 1, "last_epoch": 4}}, [("scheduling.scheduler.args.last_epoch", "")]),
        (
            {"name": "exponential", "args": {"gamma": 0.5, "optimizer": "adam"}},
            [("scheduling.scheduler.args.optimizer", "passed by the pipeline at run time")],
        ),
        (
            {"name": "cyclic", "args": {"base_lr": 0.1, "max_lr": 1.0, "scale_fn": "x"}},
            [("scheduling.scheduler.args.scale_fn", "")],
        ),
    ],
)
def test_scheduler_arg_errors(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = issues("scheduler", spec, "scheduling.scheduler")
    assert [p for p, _ in found] == [p for p, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


def test_values_are_coerced_like_yaml_users_expect(make_sgd: Any) -> None:
    # YAML 1.1 reads "1e-3" as a string; the registry's validation turns it into a float.
    model = torch.nn.Linear(2, 1)
    opt = omlcore.build("optimizer", {"name": "sgd", "args": {"lr": "1e-3", "momentum": 0}}, params=model.parameters())
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert isinstance(opt.param_groups[0]["lr"], float)
    sched = omlcore.build("scheduler", {"name": "multi_step", "args": {"milestones": ["2", 4]}}, optimizer=make_sgd())
    assert sorted(sched.milestones.elements()) == [2, 4]


def test_build_raises_one_error_listing_every_issue() -> None:
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ConfigValidationError) as info:
        omlcore.build("optimizer", {"name": "adam", "args": {"lr": "abc", "foo": 1}}, params=model.parameters())
    assert [i.path for i in info.value.issues] == ["optimizer.args.lr", "optimizer.args.foo"]


def test_readme_example_is_valid() -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert blocks, "README.md has no yaml example"
    for block in blocks:
        config = yaml.safe_load(block)
        assert issues("optimizer", config["optimizer"], "optimizer") == []
        scheduler = config["scheduling"]["scheduler"]
        assert issues("scheduler", scheduler, "scheduling.scheduler") == []


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert blocks, "README.md has no python example"
    namespace: dict[str, Any] = {}
    exec("\n".join(blocks), namespace)
    assert isinstance(namespace["optimizer"], torch.optim.AdamW)
    assert isinstance(namespace["scheduler"], torch.optim.lr_scheduler.StepLR)
