"""Weight loading rules and the errors of bad weights, bad archs and bad inputs."""

import argparse
import hashlib
import os
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omlcore_extractors import (
    EfficientNetLite0Extractor,
    ExtractorWithMLP,
    ResnetExtractor,
    ViTCLIPExtractor,
    ViTExtractor,
    from_pretrained,
)
from omlcore_extractors.errors import InputSizeError, UnknownArchError, WeightsError
from omlcore_extractors.unicom import ViTUnicomExtractor
from omlcore_extractors.weights import read_state_dict

import omlcore
from omlcore.errors import ComponentBuildError


class _RunsCode:
    """Pickles as a call of os.system: loading the file with pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": ResnetExtractor(arch="resnet18").state_dict(), "x": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match=r"Refused to load .*could run code \(posix\.system|system\)"):
        ResnetExtractor(weights=path, arch="resnet18")
    assert not marker.exists()


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(WeightsError, match=r"torch\.nn\.modules\.linear\.Linear"):
        read_state_dict(path)


def test_training_metadata_next_to_the_tensors_is_read_inertly(tmp_path: Path) -> None:
    """Lightning's hyper-parameters, callback state with paths and numpy numbers: not code, so the file
    loads; the objects are replaced by inert stand-ins (their classes are never imported)."""
    hparams: object = argparse.Namespace(lr=0.1)
    try:
        from lightning.fabric.utilities.data import AttributeDict

        hparams = AttributeDict(lr=0.1)
    except ImportError:
        pass
    source = ResnetExtractor(arch="resnet18")
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
        "hyper_parameters": hparams,
        "callbacks": {"ModelCheckpoint": {"dirpath": pathlib.Path("/tmp/x"), "kth_value": np.float64(0.3)}},
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    model = ResnetExtractor(weights=path, arch="resnet18")
    assert torch.equal(model.model.conv1.weight, source.model.conv1.weight)


def test_strict_loading_reports_missing_unexpected_and_mismatched_keys(tmp_path: Path) -> None:
    sd = ResnetExtractor(arch="resnet18").state_dict()
    del sd["model.layer4.1.bn2.running_var"]
    sd["model.layer9.weight"] = torch.zeros(3)
    sd["model.conv1.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "edited.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        ResnetExtractor(weights=path, arch="resnet18")
    message = str(info.value)
    assert "1 missing key(s) (in the extractor, not in the file): model.layer4.1.bn2.running_var" in message
    assert "1 unexpected key(s) (in the file, not in the extractor): model.layer9.weight" in message
    assert "model.conv1.weight: file [64, 3, 5, 5] vs extractor [64, 3, 7, 7]" in message
    model = ResnetExtractor(arch="resnet18")
    report = model.load_weights(path, strict=False)
    assert not report.ok
    assert torch.equal(model.model.layer4[1].bn2.weight, sd["model.layer4.1.bn2.weight"])


def test_a_checkpoint_of_another_arch_names_the_arch_it_fits(tmp_path: Path) -> None:
    path = tmp_path / "vits8.pth"
    torch.save(ViTExtractor(arch="vits8").model.state_dict(), path)
    with pytest.raises(WeightsError, match=r"do not fit vit\(arch='vits16'.*\n(.|\n)*fits arch='vits8'"):
        ViTExtractor(weights=path, arch="vits16")
    path18 = tmp_path / "resnet18.pth"
    torch.save(ResnetExtractor(arch="resnet18", remove_fc=False).model.state_dict(), path18)
    with pytest.raises(WeightsError, match=r"fits arch='resnet18'"):
        ResnetExtractor(weights=path18, arch="resnet34")


def test_a_checkpoint_of_another_model_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "lite.pth"
    torch.save(EfficientNetLite0Extractor().state_dict(), path)
    with pytest.raises(WeightsError, match=r"No key of .* names a parameter of this extractor"):
        ViTExtractor(weights=path, arch="vits16")


def test_broken_and_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(ResnetExtractor(arch="resnet18").state_dict(), good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"Cannot read .*cut\.pth.*truncated"):
        ResnetExtractor(weights=cut, arch="resnet18")
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(WeightsError, match="No state dict found"):
        ResnetExtractor(weights=listed, arch="resnet18")
    with pytest.raises(WeightsError, match=r"neither a zoo key nor an existing file.*Zoo keys of 'resnet':"):
        ResnetExtractor(weights=tmp_path / "nowhere.pth", arch="resnet18")


def test_safetensors_files_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = ResnetExtractor(arch="resnet18")
    path = tmp_path / "w.safetensors"
    save_file(source.model.state_dict(), str(path))
    model = ResnetExtractor(weights=path, arch="resnet18")
    assert torch.equal(model.model.conv1.weight, source.model.conv1.weight)


def test_oml_extractor_with_mlp_checkpoint_loads(tmp_path: Path) -> None:
    backbone = ResnetExtractor(arch="resnet18")
    source = ExtractorWithMLP(backbone, [32])
    path = tmp_path / "mlp.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)
    model = ExtractorWithMLP(ResnetExtractor(arch="resnet18"), [32], weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # the same file feeds a plain backbone: the head is left out
    plain = ResnetExtractor(weights=path, arch="resnet18")
    assert plain.load_report is not None
    assert plain.load_report.prefix == "model.extractor."
    assert "model.projection.0.weight" in plain.load_report.ignored


def test_unknown_archs_list_the_known_ones() -> None:
    with pytest.raises(UnknownArchError, match=r"Unknown arch 'vits17'.*Did you mean 'vits16'.*Known: vits8, vits16"):
        ViTExtractor(arch="vits17")  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"input should be 'resnet18', 'resnet34'"):
        omlcore.build("extractor", {"name": "resnet", "args": {"arch": "resnet19"}})


def test_models_with_a_fixed_input_size_say_so() -> None:
    with torch.device("meta"):  # the size is checked before any computation: no need for real weights
        clip = ViTCLIPExtractor(arch="vitl14_336")
        unicom = ViTUnicomExtractor(arch="vitb32_unicom")
        with pytest.raises(InputSizeError, match=r"takes 336x336 images, got 224x224"):
            clip(torch.zeros(1, 3, 224, 224))
        with pytest.raises(InputSizeError, match=r"takes 224x224 images, got 256x256"):
            unicom(torch.zeros(1, 3, 256, 256))


def test_freeze_and_unfreeze() -> None:
    model = ResnetExtractor(arch="resnet18")
    model.freeze()
    assert model.is_frozen
    assert not any(p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())
    head = ExtractorWithMLP(ResnetExtractor(arch="resnet18"), [8], train_backbone=True)
    head.freeze()
    assert not any(p.requires_grad for p in head.extractor.parameters())
    assert all(p.requires_grad for p in head.projection.parameters())
    x = torch.randn(2, 3, 32, 32)
    head(x).sum().backward()
    assert all(p.grad is None for p in head.extractor.parameters())
    head.unfreeze()
    head(x).sum().backward()
    assert head.extractor.model.conv1.weight.grad is not None


# ---- the zoo --------------------------------------------------------------------------------------------
@pytest.fixture
def local_zoo_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A zoo entry whose file is served by a local mirror folder (no network), with a fresh cache."""
    from omlcore_extractors import zoo
    from omlcore_extractors.hub import Checksum

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    source = ResnetExtractor(arch="resnet18", gem_p=2.0)
    torch.save(source.model.state_dict(), mirror / "tiny_resnet18.pth")
    digest = hashlib.sha256((mirror / "tiny_resnet18.pth").read_bytes()).hexdigest()
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", str(mirror))
    monkeypatch.setenv("OMLCORE_CACHE_DIR", str(tmp_path / "cache"))
    entry = zoo.ZooEntry(
        key="tiny_resnet18_test",
        extractor="resnet",
        init_args={"arch": "resnet18", "gem_p": 2.0, "remove_fc": True, "normalise_features": True},
        fname="tiny_resnet18.pth",
        urls=("http://127.0.0.1:9/unreachable.pth",),
        checksums=(Checksum("sha256", digest, "test"),),
        transform={"name": "norm_resize_torch", "args": {"im_size": 32}},
        architecture="ResNet-18",
        publisher="tests",
        layout="torchvision_resnet",
    )
    zoo.register(entry)
    yield entry.key
    zoo.unregister(entry.key)


def test_from_pretrained_builds_the_published_extractor(local_zoo_key: str) -> None:
    model = from_pretrained(local_zoo_key)
    assert isinstance(model, ResnetExtractor)
    assert model.normalise_features
    assert model.gem_p == 2.0
    assert model.weights_path is not None
    assert model.weights_path.name == "tiny_resnet18.pth"
    same = ResnetExtractor.from_pretrained(local_zoo_key, normalise_features=False)
    assert not same.normalise_features
    with pytest.raises(WeightsError, match="is for the extractor 'resnet', not 'vit'"):
        ViTExtractor.from_pretrained(local_zoo_key)


def test_zoo_keys_are_checked_before_anything_is_fetched(local_zoo_key: str) -> None:
    with pytest.raises(WeightsError, match=r"holds weights for resnet\(arch='resnet18'\), but arch='resnet34'"):
        ResnetExtractor(weights=local_zoo_key, arch="resnet34")
    with pytest.raises(ComponentBuildError, match="holds weights for the extractor 'resnet'"):
        omlcore.build("extractor", {"name": "vit", "args": {"weights": local_zoo_key}})
