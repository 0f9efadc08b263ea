"""The entry points: one per usable PML loss and miner, each resolving to a typed wrapper; the CLI check."""

import inspect
import json
from importlib import metadata

import omlcore_pml
import pytest
from omlcore_pml import catalog
from pytorch_metric_learning import losses as pml_losses  # type: ignore[import-untyped]
from pytorch_metric_learning import miners as pml_miners  # type: ignore[import-untyped]

from omlcore.cli import main as omlcore_main
from omlcore.registry import KINDS, Registry

DIST = "omlcore-pml"


def installed(kind: str) -> dict[str, str]:
    group = KINDS[kind].group
    return {ep.name: ep.value for ep in metadata.distribution(DIST).entry_points if ep.group == group}


def pml_classes(module: object) -> set[str]:
    return {
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__.startswith("pytorch_metric_learning.")
    }


def test_version_matches_metadata() -> None:
    assert omlcore_pml.__version__ == metadata.version(DIST)


def test_every_pml_loss_is_offered_or_excluded() -> None:
    offered = pml_classes(pml_losses) - set(catalog.EXCLUDED_LOSSES)
    assert set(installed("loss")) == {catalog.config_name(n) for n in offered}
    assert set(catalog.EXCLUDED_LOSSES) <= pml_classes(pml_losses), "an exclusion names no PML class"


def test_every_pml_miner_is_offered_or_excluded() -> None:
    offered = pml_classes(pml_miners) - set(catalog.EXCLUDED_MINERS)
    assert set(catalog.TRIPLET_MINERS) | set(catalog.PAIR_MINERS) == offered
    assert set(installed("miner")) == {catalog.config_name(n) for n in catalog.TRIPLET_MINERS}
    assert set(installed("pair_miner")) == {catalog.config_name(n) for n in catalog.PAIR_MINERS}
    assert set(catalog.EXCLUDED_MINERS) <= pml_classes(pml_miners)


@pytest.mark.parametrize("kind", ["loss", "miner", "pair_miner"])
def test_targets_wrap_the_pml_class_of_their_name(kind: str, installed_registry: Registry) -> None:
    for name, value in installed(kind).items():
        obj = installed_registry.resolve(kind, name)
        assert value.endswith(":" + obj.__name__)
        assert catalog.config_name(obj.__name__) == name
        assert "kwargs" not in inspect.signature(obj).parameters
        am = installed_registry.args_model(kind, name)
        assert am.accepts is not None, f"{name} takes **kwargs"
        assert not am.unchecked, f"{name} has unchecked arguments {am.unchecked}"


def test_issue_example_names() -> None:
    assert "pml_multi_similarity" in installed("loss")
    assert "pml_triplet_margin_miner" in installed("miner")


def test_plugins_check_passes_for_every_pml_component(capsys: pytest.CaptureFixture[str]) -> None:
    omlcore_main(["plugins", "check", "--json"])
    rows = [r for r in json.loads(capsys.readouterr().out) if r["name"].startswith("pml_")]
    expected = len(installed("loss")) + len(installed("miner")) + len(installed("pair_miner"))
    assert len(rows) == expected
    assert [r for r in rows if not r["ok"]] == []
