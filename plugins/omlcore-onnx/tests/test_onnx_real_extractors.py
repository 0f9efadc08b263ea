"""The project's own extractors (omlcore-extractors, random weights, small inputs) exported and matched."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from omlcore_onnx import export_onnx

from omlcore.cli import main
from omlcore.registry import Registry, build, use_registry

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("omlcore_extractors") is None,
    reason="omlcore-extractors is not installed (pip install -e plugins/omlcore-extractors)",
)


@pytest.fixture(autouse=True)
def installed_registry() -> Iterator[Registry]:
    """The installed distributions' extractors and commands, whatever OMLCORE_DISABLE_PLUGINS says."""
    registry = Registry(disabled=())
    with use_registry(registry):
        yield registry


def _matches_at_another_batch(path: Path, extractor: torch.nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(7))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    extractor.eval()
    with torch.no_grad():
        expected = extractor.extract(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_resnet18_with_gem_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "resnet18.onnx"
    spec = "{name: resnet, args: {arch: resnet18, weights: null, gem_p: 3.0, normalise_features: true}}"
    assert main(["export", "onnx", "--extractor", spec, "--out", str(out), "--im-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "input float32 (batch, 3, 64, 64) -> embeddings float32 (batch, 512)" in printed
    assert "result: PASSED" in printed
    assert out.is_file()


def test_small_vit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit = build("extractor", {"name": "vit", "args": {"arch": "vits16", "weights": None}})
    report = export_onnx(vit, tmp_path / "vit.onnx", input_shape=(3, 32, 32))
    assert report.passed
    assert report.output_dim == 384
    _matches_at_another_batch(tmp_path / "vit.onnx", vit, (3, 32, 32))


def test_efficientnet_lite0(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build("extractor", {"name": "efficientnet_lite0", "args": {"weights": None}})
    report = export_onnx(net, tmp_path / "lite0.onnx", input_shape=(3, 64, 64))
    assert report.passed
    assert report.output_dim == net.feat_dim
    _matches_at_another_batch(tmp_path / "lite0.onnx", net, (3, 64, 64))


def test_fixed_size_clip_refuses_another_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = "{name: vit_clip, args: {arch: vitb32_224, weights: null}}"
    assert main(["export", "onnx", "--extractor", spec, "--out", str(tmp_path / "c.onnx"), "--im-size", "200"]) == 2
    err = capsys.readouterr().err
    assert "224" in err
    assert "--im-size 224" in err
    assert list(tmp_path.iterdir()) == []
