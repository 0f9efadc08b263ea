"""The distribution: entry points, config validation with paths, the CLI check, light imports, the README."""

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import omlcore_albumentations
import pytest

import omlcore
from omlcore.cli import main as omlcore_main
from omlcore.registry import EXTRA_HINTS, KINDS, Registry

DIST = "omlcore-albumentations"
NAMES = ["augs_albu", "norm_albu", "norm_resize_albu", "norm_resize_albu_clip"]
README = Path(__file__).resolve().parents[1] / "README.md"


def installed_names() -> set[str]:
    group = KINDS["transform"].group
    return {ep.name for ep in metadata.distribution(DIST).entry_points if ep.group == group}


def test_version_matches_metadata() -> None:
    assert omlcore_albumentations.__version__ == metadata.version(DIST)


def test_entry_points_are_the_four_oml_names() -> None:
    assert installed_names() == set(NAMES)
    assert set(NAMES) <= set(omlcore.available("transform"))
    for ep in metadata.distribution(DIST).entry_points:
        assert ep.value == f"omlcore_albumentations.transforms:{ep.name}", ep


def test_entry_points_match_the_core_hint_list() -> None:
    hinted = {name for (kind, name), extra in EXTRA_HINTS.items() if kind == "transform" and extra == "albumentations"}
    assert installed_names() == hinted


@pytest.mark.parametrize("name", NAMES)
def test_resolves_to_this_package(name: str, installed_registry: Registry) -> None:
    assert installed_registry.entry("transform", name).distribution == DIST
    assert omlcore.resolve("transform", name) is getattr(omlcore_albumentations, name)


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"name": "augs_albu", "args": {"im_size": "big"}}, "transforms_train.args.im_size", "valid integer"),
        ({"name": "norm_resize_albu", "args": {"im_size": 0}}, "transforms_train.args.im_size", "greater than 0"),
        ({"name": "norm_albu", "args": {"std": [0, 1, 1]}}, "transforms_train.args.std.0", "greater than 0"),
        ({"name": "norm_albu", "args": {"mean": [0.5, 0.5]}}, "transforms_train.args.mean.2", "required"),
        ({"name": "augs_albu", "args": {"imsize": 64}}, "transforms_train.args.imsize", "did you mean 'im_size'"),
        ({"name": "norm_resize_albu_clip", "args": {"std": [1, 1, 1]}}, "transforms_train.args.std", "not permitted"),
        ({"name": "augs_albu", "args": {"seed": "x"}}, "transforms_train.args.seed", "valid integer"),
        ({"name": "aug_albu", "args": {}}, "transforms_train.name", "Did you mean 'augs_albu'"),
    ],
)
def test_bad_args_are_reported_with_their_config_path(spec: dict[str, Any], path: str, message: str) -> None:
    issues = omlcore.registry.get_registry().validate("transform", spec, "transforms_train")
    assert [i.path for i in issues] == [path]
    assert message in issues[0].message


def test_good_args_pass_validation() -> None:
    registry = omlcore.registry.get_registry()
    spec = {"name": "augs_albu", "args": {"im_size": "64", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "seed": 1}}
    assert registry.validate("transform", spec, "transforms_train") == []


def test_build_rejects_bad_args_before_calling_the_factory() -> None:
    with pytest.raises(omlcore.errors.ConfigValidationError, match=r"im_size"):
        omlcore.build("transform", {"name": "norm_resize_albu", "args": {"im_size": -1}})


def test_plugins_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert omlcore_main(["plugins", "check"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert re.search(rf"^ok\s+transform\s+{name}\s+omlcore-albumentations 0\.1\.0$", out, re.M), name


def test_importing_the_package_and_resolving_stays_light() -> None:
    code = (
        "import sys, omlcore, omlcore_albumentations\n"
        "from omlcore.registry import Registry\n"
        "Registry(disabled=()).resolve('transform', 'augs_albu')\n"
        "heavy = [m for m in ('albumentations', 'cv2', 'torch', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_table_lists_every_name() -> None:
    text = README.read_text(encoding="utf-8")
    assert set(re.findall(r"^\| `(\w+)` \|", text, re.M)) == set(NAMES)
