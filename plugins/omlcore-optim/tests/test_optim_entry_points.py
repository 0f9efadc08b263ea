"""The distribution's entry points: names, targets, resolution, the CLI check and the JSON Schemas."""

import re
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import omlcore_optim
import pytest
import torch

import omlcore
from omlcore.cli import main as omlcore_main
from omlcore.registry import EXTRA_HINTS, KINDS, Registry
from omlcore.schema_export import build_schemas

DIST = "omlcore-optim"
README = Path(__file__).resolve().parents[1] / "README.md"


def installed_names(kind: str) -> set[str]:
    group = KINDS[kind].group
    return {ep.name for ep in metadata.distribution(DIST).entry_points if ep.group == group}


OPTIMIZERS = sorted(installed_names("optimizer"))
SCHEDULERS = sorted(installed_names("scheduler"))

# Minimal args each scheduler needs (its required arguments, or what makes torch accept it).
SCHEDULER_ARGS: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine_annealing": {"T_max": 10},
    "cosine_annealing_warm_restarts": {"T_0": 5},
    "cyclic": {"base_lr": 0.01, "max_lr": 0.1},
    "exponential": {"gamma": 0.9},
    "lambda_warmup": {"warmup_steps": 3},
    "linear": {},
    "multi_step": {"milestones": [2, 4]},
    "one_cycle": {"max_lr": 0.1, "total_steps": 10},
    "polynomial": {},
    "reduce_on_plateau": {},
    "step": {"step_size": 3},
}


def test_version_matches_metadata() -> None:
    assert omlcore_optim.__version__ == metadata.version(DIST)


@pytest.mark.parametrize("kind", ["optimizer", "scheduler"])
def test_entry_points_match_the_core_hint_list(kind: str) -> None:
    hinted = {name for (k, name), extra in EXTRA_HINTS.items() if k == kind and extra == "optim"}
    assert installed_names(kind) == hinted


def test_scheduler_args_table_covers_every_scheduler() -> None:
    assert set(SCHEDULER_ARGS) == set(SCHEDULERS)


def test_entry_points_point_into_this_package() -> None:
    for ep in metadata.distribution(DIST).entry_points:
        if ep.group in (KINDS["optimizer"].group, KINDS["scheduler"].group):
            assert ep.value.startswith("omlcore_optim."), ep


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_builds_through_omlcore(name: str, installed_registry: Registry) -> None:
    entry = installed_registry.entry("optimizer", name)
    assert entry.distribution == DIST
    cls = omlcore.resolve("optimizer", name)
    assert issubclass(cls, torch.optim.Optimizer)
    assert cls.__module__ == "omlcore_optim.optimizers"
    model = torch.nn.Linear(3, 2)
    opt = omlcore.build("optimizer", {"name": name, "args": {"lr": 0.025}}, params=model.parameters())
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["lr"] == 0.025
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_accepts_parameter_groups(name: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    groups = [{"params": model[0].parameters(), "lr": 0.5}, {"params": model[1].parameters()}]
    opt = omlcore.build("optimizer", {"name": name, "args": {"lr": 0.25}}, params=groups)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_builds_through_omlcore(name: str, make_sgd: Any) -> None:
    cls = omlcore.resolve("scheduler", name)
    assert cls.__module__ == "omlcore_optim.schedulers"
    optimizer = make_sgd(lr=0.1, momentum=0.9)
    scheduler = omlcore.build("scheduler", {"name": name, "args": SCHEDULER_ARGS[name]}, optimizer=optimizer)
    assert isinstance(scheduler, cls)
    assert scheduler.optimizer is optimizer
    optimizer.step()
    scheduler.step(*([1.0] if name == "reduce_on_plateau" else []))
    state = scheduler.state_dict()
    assert isinstance(state, dict)
    scheduler.load_state_dict(state)


def test_plugins_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert omlcore_main(["plugins", "check"]) == 0
    out = capsys.readouterr().out
    for name in [*OPTIMIZERS, *SCHEDULERS]:
        assert re.search(rf"^ok\s+\w+\s+{name}\s+omlcore-optim 0\.1\.0$", out, re.M), name


def test_json_schemas_describe_every_component() -> None:
    schema = build_schemas(distributions=[DIST])["train.schema.json"]
    jsonschema.Draft202012Validator.check_schema(schema)
    for kind, names in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
        options = schema["$defs"][kind]["oneOf"]
        assert sorted(o["properties"]["name"]["const"] for o in options) == names

    def check(kind: str, spec: dict[str, Any]) -> None:
        jsonschema.validate(spec, {"$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"})

    check("optimizer", {"name": "adamw", "args": {"lr": 3e-4, "betas": [0.9, 0.95]}})
    check("scheduler", {"name": "lambda_warmup", "args": {"warmup_steps": 10, "total_steps": 100}})
    check("scheduler", {"name": "reduce_on_plateau"})
    for kind, bad in [
        ("optimizer", {"name": "adam", "args": {"lr": "fast"}}),
        ("optimizer", {"name": "adam", "args": {"betas": [0.9]}}),
        ("optimizer", {"name": "sgd", "args": {"capturable": True}}),
        ("scheduler", {"name": "step", "args": {}}),
        ("scheduler", {"name": "reduce_on_plateau", "args": {"mode": "lowest"}}),
    ]:
        with pytest.raises(jsonschema.ValidationError):
            check(kind, bad)


def test_readme_table_lists_every_name() -> None:
    text = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    assert listed == {*OPTIMIZERS, *SCHEDULERS}
