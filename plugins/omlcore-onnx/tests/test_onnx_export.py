"""export_onnx on tiny extractors: the file runs in onnxruntime like torch, and failures leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omlcore_onnx import ExportReport, InputShapeError, OnnxExportError, OnnxMismatchError, export_onnx
from omlcore_onnx.export import declared_input_shape
from onnx_tiny_models import (
    DriftingNet,
    FixedSizeNet,
    FlatOutputNet,
    GemConvNet,
    MlpExtractor,
    PlainExtractor,
    UndeclaredSizeNet,
    UnexportableNet,
)

from omlcore.errors import ConfigError
from omlcore.testing.conformance import ExtractorConformance


def _run(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _torch(extractor: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    extractor.eval()
    with torch.no_grad():
        return extractor.extract(x).numpy()


class TestGemConvNetIsAnExtractor(ExtractorConformance):
    """The tiny models really are extractors (so the exporter is tested on valid input)."""

    @pytest.fixture
    def make_component(self):  # type: ignore[no-untyped-def]
        return lambda **kwargs: GemConvNet(**kwargs)


class TestMlpIsAnExtractor(ExtractorConformance):
    input_shape = (16,)

    @pytest.fixture
    def make_component(self):  # type: ignore[no-untyped-def]
        return lambda **kwargs: MlpExtractor(**kwargs)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_conv_gem_net_matches_torch_at_any_batch(tmp_path: Path, exporter: str) -> None:
    torch.manual_seed(0)
    net = GemConvNet()
    path = tmp_path / "gem.onnx"
    report = export_onnx(net, path, exporter=exporter)  # type: ignore[arg-type]

    assert isinstance(report, ExportReport)
    assert report.path == path
    assert report.kept
    assert path.is_file()
    assert report.exporter == exporter
    assert report.input_shape == (3, 32, 32)
    assert report.output_dim == 8
    assert [c.batch_size for c in report.checks] == [1, 3]
    assert report.passed
    assert report.max_abs_diff is not None
    assert report.max_abs_diff <= 1e-4
    assert report.size_bytes == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gem.onnx"]  # no temporary left behind
    # the graph really has a free batch dimension: a batch size never checked still matches torch
    x = torch.randn(7, 3, 32, 32)
    np.testing.assert_allclose(_run(path, x), _torch(net, x), atol=1e-5, rtol=1e-4)


def test_export_uses_eval_mode_and_restores_the_training_flag(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = GemConvNet().train()
    report = export_onnx(net, tmp_path / "gem.onnx")
    assert net.training
    assert net.body[1].training
    assert report.passed
    x = torch.randn(4, 3, 32, 32)
    eval_out = _torch(net, x)  # the batch-norm running statistics, not the batch's
    net.train()
    with torch.no_grad():
        train_out = net.extract(x).numpy()
    onnx_out = _run(tmp_path / "gem.onnx", x)
    np.testing.assert_allclose(onnx_out, eval_out, atol=1e-5)
    assert np.abs(onnx_out - train_out).max() > 1e-3


def test_mlp_with_dropout_uses_its_declared_vector_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mlp = MlpExtractor(in_dim=16, out_dim=5)
    assert declared_input_shape(mlp) == ((16,), False)
    report = export_onnx(mlp, tmp_path / "mlp.onnx")
    assert report.input_shape == (16,)
    assert report.output_dim == 5
    assert report.passed
    x = torch.randn(6, 16)
    np.testing.assert_allclose(_run(tmp_path / "mlp.onnx", x), _torch(mlp, x), atol=1e-5)


def test_static_batch_graph_only_takes_its_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "static.onnx"
    report = export_onnx(MlpExtractor(), path, dynamic_batch=False, batch_size=4)
    assert [c.batch_size for c in report.checks] == [4]
    assert report.passed
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 16]
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        _run(path, torch.randn(3, 16))


def test_dynamic_batch_input_is_symbolic(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    export_onnx(MlpExtractor(), path)
    (graph_input,) = onnx.load(str(path)).graph.input
    first = graph_input.type.tensor_type.shape.dim[0]
    assert graph_input.name == "input"
    assert first.dim_param
    assert not first.dim_value
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["embeddings"]


def test_an_extractor_that_is_not_a_module(tmp_path: Path) -> None:
    plain = PlainExtractor()
    report = export_onnx(plain, tmp_path / "plain.onnx")
    assert report.passed
    assert report.output_dim == 3
    x = torch.randn(2, 5)
    np.testing.assert_allclose(_run(tmp_path / "plain.onnx", x), plain.extract(x).numpy(), atol=1e-6)


def test_opset_and_no_check(tmp_path: Path) -> None:
    report = export_onnx(MlpExtractor(), tmp_path / "m.onnx", opset=17, exporter="torchscript", check=False)
    assert report.opset == 17
    assert not report.checked
    assert report.max_abs_diff is None
    assert "skipped" in report.summary()
    assert {(o.domain or "", o.version) for o in onnx.load(str(tmp_path / "m.onnx")).opset_import} >= {("", 17)}


def test_mismatch_raises_and_keeps_no_file(tmp_path: Path) -> None:
    with pytest.raises(OnnxMismatchError, match="differs from torch") as info:
        export_onnx(DriftingNet(), tmp_path / "drift.onnx")
    report = info.value.report
    assert not report.passed
    assert not report.kept
    assert any(not c.passed for c in report.checks)
    assert report.max_abs_diff is not None
    assert report.max_abs_diff > 1e-4
    assert "MISMATCH" in report.summary()
    assert "FAILED" in report.summary()
    assert list(tmp_path.iterdir()) == []


def test_mismatch_with_keep_on_mismatch_keeps_the_file(tmp_path: Path) -> None:
    with pytest.raises(OnnxMismatchError, match="kept at") as info:
        export_onnx(DriftingNet(), tmp_path / "drift.onnx", keep_on_mismatch=True)
    assert info.value.report.kept
    assert [p.name for p in tmp_path.iterdir()] == ["drift.onnx"]


def test_export_failure_leaves_the_previous_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model")
    with pytest.raises(OnnxExportError, match="airy_ai") as info:
        export_onnx(UnexportableNet(), path)
    assert "both ONNX exporters failed" in str(info.value)
    assert path.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_dynamo_only_failure_names_the_reason(tmp_path: Path) -> None:
    with pytest.raises(OnnxExportError, match="torch.export-based ONNX exporter failed.*airy_ai"):
        export_onnx(UnexportableNet(), tmp_path / "x.onnx", exporter="dynamo")
    assert list(tmp_path.iterdir()) == []


def test_output_that_is_not_b_by_d_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OnnxExportError, match=r"returned a tensor of shape \(\).*\(batch, D\)"):
        export_onnx(FlatOutputNet(), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_no_declared_size_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(InputShapeError, match="declares no input size.*--im-size"):
        export_onnx(UndeclaredSizeNet(), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_fixed_size_refuses_another_size_before_exporting(tmp_path: Path) -> None:
    net = FixedSizeNet(im_size=12)
    assert declared_input_shape(net) == ((3, 12, 12), True)
    with pytest.raises(InputShapeError, match=r"only accepts inputs of shape \(3, 12, 12\).*--im-size 12"):
        export_onnx(net, tmp_path / "x.onnx", input_shape=(3, 16, 16))
    assert export_onnx(net, tmp_path / "ok.onnx").input_shape == (3, 12, 12)


def test_a_size_the_model_cannot_take_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputShapeError, match=r"failed on a random input of shape \(2, 3, 16, 16\).*--im-size"):
        export_onnx(UndeclaredSizeNet(im_size=12), tmp_path / "x.onnx", input_shape=(3, 16, 16))
    with pytest.raises(InputShapeError, match=r"declares the input shape \(16,\)"):
        export_onnx(MlpExtractor(in_dim=16), tmp_path / "x.onnx", input_shape=(8,))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(), (3, 0, 4), (3, -1), (3.0, 4)])
def test_malformed_input_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputShapeError, match="positive sizes"):
        export_onnx(MlpExtractor(), tmp_path / "x.onnx", input_shape=shape)


def test_missing_folder_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        export_onnx(MlpExtractor(), tmp_path / "no" / "x.onnx")
    with pytest.raises(ValueError, match="batch_size=1"):
        export_onnx(MlpExtractor(), tmp_path / "x.onnx", batch_size=1)
    with pytest.raises(ValueError, match="tolerances"):
        export_onnx(MlpExtractor(), tmp_path / "x.onnx", atol=-1.0)
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(MlpExtractor(), tmp_path / "x.onnx", exporter="tf")  # type: ignore[arg-type]
    with pytest.raises(OnnxExportError, match="not an Extractor"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx", input_shape=(2,))
    assert list(tmp_path.iterdir()) == []


def test_an_opset_below_18_uses_the_torchscript_exporter_in_auto_mode(tmp_path: Path) -> None:
    report = export_onnx(MlpExtractor(), tmp_path / "m.onnx", opset=16)
    assert report.exporter == "torchscript"
    assert report.opset == 16
    assert any("opset 16" in note for note in report.notes)
    assert "note: used the TorchScript exporter: opset 16" in report.summary()


def test_weights_on_several_devices_are_refused(tmp_path: Path) -> None:
    net = MlpExtractor()
    net.net[0].to("meta")
    with pytest.raises(OnnxExportError, match="several devices"):
        export_onnx(net, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_extractor_is_exported_from_cpu_and_moved_back(tmp_path: Path) -> None:
    net = GemConvNet().cuda()
    report = export_onnx(net, tmp_path / "gem.onnx")
    assert report.passed
    assert next(net.parameters()).device.type == "cuda"
