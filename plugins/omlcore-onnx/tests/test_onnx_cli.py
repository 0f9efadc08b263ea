"""``omlcore export onnx``: SPEC forms, exit statuses, printed report, and files only on success."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from omlcore_onnx import hooks
from onnx_tiny_models import DriftingNet, FixedSizeNet, GemConvNet, MlpExtractor, UndeclaredSizeNet

from omlcore.cli import main
from omlcore.testing import PluginSandbox


@pytest.fixture
def sandbox(omlcore_sandbox: PluginSandbox) -> PluginSandbox:
    """Only the tiny extractors and this plugin's command are installed."""
    omlcore_sandbox.add("extractor", "gem_net", GemConvNet, distribution="tiny-models")
    omlcore_sandbox.add("extractor", "mlp", MlpExtractor, distribution="tiny-models")
    omlcore_sandbox.add("extractor", "fixed", FixedSizeNet, distribution="tiny-models")
    omlcore_sandbox.add("extractor", "drifting", DriftingNet, distribution="tiny-models")
    omlcore_sandbox.add_hook_plugin("omlcore-onnx", value="omlcore_onnx.hooks", distribution="omlcore-onnx")
    return omlcore_sandbox


def export(*argv: object) -> int:
    return main(["export", "onnx", *map(str, argv)])


def test_bare_name_with_declared_size(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gem.onnx"
    assert export("--extractor", "gem_net", "--out", out) == 0
    printed = capsys.readouterr().out
    assert out.is_file()
    assert "input float32 (batch, 3, 32, 32) -> embeddings float32 (batch, 8)" in printed
    assert "batch 1: max abs diff" in printed
    assert "batch 3: max abs diff" in printed
    assert "result: PASSED" in printed


def test_yaml_mapping_with_args_and_im_size(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gem.onnx"
    spec = "{name: gem_net, args: {channels: 4, normalise_features: false}}"
    assert export("--extractor", spec, "--out", out, "--im-size", 24, "--exporter", "torchscript") == 0
    printed = capsys.readouterr().out
    assert "(batch, 3, 24, 24) -> embeddings float32 (batch, 4)" in printed
    assert "TorchScript exporter" in printed


def test_yaml_file_spec_static_batch(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "extractor.yaml"
    spec.write_text("name: mlp\nargs:\n  in_dim: 6\n  out_dim: 3\n")
    out = tmp_path / "mlp.onnx"
    code = export("--extractor", spec, "--out", out, "--no-dynamic-batch", "--batch-size", 5, "--opset", 18)
    assert code == 0
    printed = capsys.readouterr().out
    assert "input float32 (5, 6) -> embeddings float32 (5, 3)" in printed
    assert "opset 18" in printed
    assert "batch 5: max abs diff" in printed
    assert "batch 1:" not in printed


def test_input_shape_option_and_no_check(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mlp.onnx"
    assert export("--extractor", "{name: mlp, args: {in_dim: 9}}", "--out", out, "--input-shape", 9, "--no-check") == 0
    assert "check: skipped" in capsys.readouterr().out
    assert out.is_file()


def test_unknown_name_lists_installed_ones(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export("--extractor", "gem_nett", "--out", tmp_path / "x.onnx") == 2
    err = capsys.readouterr().err
    assert "--extractor.name" in err
    assert "gem_net" in err
    assert "Did you mean" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{name: gem_net, args: {chanels: 4}}", "--extractor.args.chanels"),
        ("{name: gem_net, args: {channels: many}}", "--extractor.args.channels"),
        ("{name: gem_net, args: [1, 2]", "neither a registered name, a YAML mapping"),
        ("missing.yaml", "does not exist"),
        ("[gem_net]", "expected a name or a mapping"),
    ],
)
def test_bad_spec_is_exit_2_with_the_option_path(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, expected: str
) -> None:
    assert export("--extractor", spec, "--out", tmp_path / "x.onnx") == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_for_a_fixed_size_model(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export("--extractor", "fixed", "--out", tmp_path / "x.onnx", "--im-size", 20) == 2
    err = capsys.readouterr().err
    assert "only accepts inputs of shape (3, 12, 12)" in err
    assert "--im-size 12" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_or_unusable_size_for_a_model_declaring_none(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.add("extractor", "undeclared", UndeclaredSizeNet, distribution="tiny-models")
    assert export("--extractor", "undeclared", "--out", tmp_path / "x.onnx") == 2
    assert "declares no input size" in capsys.readouterr().err
    assert export("--extractor", "undeclared", "--out", tmp_path / "x.onnx", "--im-size", 16) == 2
    err = capsys.readouterr().err
    assert "failed on a random input of shape (2, 3, 16, 16)" in err
    assert "--im-size or --input-shape" in err
    assert list(tmp_path.iterdir()) == []
    assert export("--extractor", "undeclared", "--out", tmp_path / "x.onnx", "--im-size", 12) == 0


def test_mismatch_is_exit_1_without_a_file(
    sandbox: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "drift.onnx"
    assert export("--extractor", "drifting", "--out", out) == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out
    assert "result: FAILED" in captured.out
    assert "differs from torch" in captured.err
    assert "not kept" in captured.err
    assert list(tmp_path.iterdir()) == []
    assert export("--extractor", "drifting", "--out", out, "--keep-on-mismatch") == 1
    assert out.is_file()


def test_bad_option_values_are_usage_errors(sandbox: PluginSandbox, tmp_path: Path) -> None:
    for argv in (
        ["--im-size", "0"],
        ["--input-shape", "3,a,4"],
        ["--atol", "-1"],
        ["--im-size", "4", "--input-shape", "3,4,4"],
        ["--exporter", "tf"],
    ):
        with pytest.raises(SystemExit) as info:
            export("--extractor", "gem_net", "--out", tmp_path / "x.onnx", *argv)
        assert info.value.code == 2, argv
    assert export("--extractor", "gem_net", "--out", tmp_path / "x.onnx", "--batch-size", 1) == 2
    assert export("--extractor", "gem_net", "--out", tmp_path / "none" / "x.onnx") == 2
    assert list(tmp_path.iterdir()) == []


def test_export_group_is_shared_with_other_formats() -> None:
    """A plugin that adds another ``omlcore export`` format first does not break ``onnx``, and vice versa."""
    parser = argparse.ArgumentParser(prog="omlcore")
    sub = parser.add_subparsers(dest="command")
    export_parser = sub.add_parser("export")
    formats = export_parser.add_subparsers(dest="export_format", required=True)
    formats.add_parser("torchscript")
    hooks.omlcore_add_commands(subparsers=sub)
    assert set(formats.choices) == {"torchscript", "onnx"}
    args = parser.parse_args(["export", "onnx", "--extractor", "x", "--out", "y.onnx", "--im-size", "8"])
    assert args.im_size == 8
    assert args.dynamic_batch
    assert args.check
    assert args.atol == 1e-4


def test_hooks_module_does_not_import_torch() -> None:
    code = "import sys, omlcore_onnx.hooks, omlcore_onnx; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
