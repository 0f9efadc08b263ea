"""The ``omlcore`` command line: exit codes, one-paragraph errors, plugin listing and checking."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import MarginLoss, Optim, PairMiner, ToyExtractor
from test_config import TRAIN

from omlcore import __version__, hookimpl
from omlcore.cli import main
from omlcore.testing import PluginSandbox


@pytest.fixture
def plugins(omlcore_sandbox: PluginSandbox) -> PluginSandbox:
    omlcore_sandbox.add("loss", "margin", MarginLoss, distribution="omlcore-losses", version="0.3.0")
    omlcore_sandbox.add("miner", "pairs", PairMiner, distribution="omlcore-miners", version="0.3.0")
    omlcore_sandbox.add("optimizer", "toy_sgd", Optim, distribution="omlcore-optim", version="0.1.0")
    omlcore_sandbox.add("extractor", "toy_extractor", ToyExtractor, distribution="acme", version="2")
    return omlcore_sandbox


@pytest.fixture
def train_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(TRAIN))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"omlcore {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("plugins", "check", "schema"):
        assert command in out
    assert run(capsys)[0] == 0  # no command: help, success


def test_plugins_list_table_and_json(plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION"]
    assert ["loss", "margin", "omlcore-losses", "0.3.0"] in [line.split() for line in lines]
    code, out, _ = run(capsys, "plugins", "list", "--kind", "miner", "--json")
    assert json.loads(out) == [
        {
            "kind": "miner",
            "name": "pairs",
            "distribution": "omlcore-miners",
            "version": "0.3.0",
            "value": "<fake pairs>",
            "conflict": False,
        }
    ]


def test_plugins_list_marks_conflicts(plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    plugins.add("loss", "margin", MarginLoss, value="b:C", distribution="other", version="1")
    out = run(capsys, "plugins", "list", "--kind", "loss")[1]
    assert out.count("margin (CONFLICT)") == 2


def test_plugins_check_ok_then_broken(plugins: PluginSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "check")
    assert code == 0, out
    assert "4 plugin(s) checked, 0 broken." in out
    plugins.add("loss", "broken", error=ImportError("cannot import name 'x'"), distribution="acme-broken")
    plugins.add("miner", "pairs", PairMiner, value="dup:Miner", distribution="dup-miners")
    code, out, _ = run(capsys, "plugins", "check")
    assert code == 1
    assert ["FAIL", "loss", "broken", "acme-broken", "0.0.0"] in [line.split() for line in out.splitlines()]
    assert "cannot import name 'x'" in out
    assert "PluginConflictError" in out
    assert "2 broken" in out
    payload = json.loads(run(capsys, "plugins", "check", "--json")[1])
    assert {p["name"] for p in payload if not p["ok"]} == {"broken", "pairs"}


def test_check_valid_config(plugins: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", str(train_yaml), "trainer.max_epochs=3")
    assert (code, err) == (0, "")
    assert "valid train config (structure and plugins checked)" in out


def test_check_prints_resolved_config(
    plugins: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "check", str(train_yaml), "trainer.max_epochs=3", "--print")
    assert code == 0
    resolved = yaml.safe_load(out.split("\n" + str(train_yaml))[0])
    assert resolved["trainer"]["max_epochs"] == 3
    assert resolved["metrics"]["cmc_top_k"] == [1, 5]


def test_check_invalid_config_exit_2_with_paths(
    plugins: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", str(train_yaml), "loss.args.margn=0.1", "trainer.max_epochs=0")
    assert code == 2
    assert out == ""
    assert "trainer.max_epochs: input should be greater than 0" in err
    # phase 2 runs only once the structure is valid
    code, _, err = run(capsys, "check", str(train_yaml), "loss.args.margn=0.1")
    assert code == 2
    assert "  loss.args.margn: extra inputs are not permitted" in err
    assert "Traceback" not in err


def test_check_structure_only(
    omlcore_sandbox: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "check", str(train_yaml))[0] == 2
    code, out, _ = run(capsys, "check", str(train_yaml), "--structure-only")
    assert code == 0
    assert "(structure checked)" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("- a\n- b\n", "must hold a mapping"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_bad_files_give_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    path = tmp_path / "cfg.yaml"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert err.startswith("omlcore: error: ")
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    code, _, err = run(capsys, "--debug", "check", str(path))
    assert code == 2
    assert "Traceback (most recent call last)" in err


def test_bad_override_exit_2(plugins: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", str(train_yaml), "trainer.max_epochs")
    assert code == 2
    assert "has no '='" in err


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_plugins_add_subcommands(omlcore_sandbox: PluginSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    class Hello:
        @hookimpl
        def omlcore_add_commands(self, subparsers: Any) -> None:
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("who")
            parser.set_defaults(func=lambda args: print(f"hello {args.who}") or 3)

    omlcore_sandbox.add_hook_plugin("hello-plugin", Hello())
    assert run(capsys, "hello", "world")[:2] == (3, "hello world\n")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello" in capsys.readouterr().out


def test_schema_export_and_check(plugins: PluginSandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "schemas"
    code, _, _ = run(capsys, "schema", "export", str(target))
    assert code == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "predict.schema.json",
        "train.schema.json",
        "validate.schema.json",
    ]
    assert run(capsys, "schema", "export", str(target), "--check")[0] == 0
    plugins.add("loss", "another", MarginLoss, distribution="omlcore-losses")
    code, _, err = run(capsys, "schema", "export", str(target), "--check")
    assert code == 1
    assert "out of date: train.schema.json" in err
    assert "omlcore schema export" in err


def test_console_script_runs_as_module() -> None:
    out = subprocess.run([sys.executable, "-m", "omlcore", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"omlcore {__version__}"


def test_argparse_is_the_parser() -> None:
    from omlcore.cli import build_parser

    assert isinstance(build_parser(), argparse.ArgumentParser)


def test_overrides_before_and_after_options(
    omlcore_sandbox: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "check", str(train_yaml), "--structure-only", "trainer.max_epochs=7", "--print")
    assert code == 0
    assert "max_epochs: 7" in out
    with pytest.raises(SystemExit) as info:
        main(["check", str(train_yaml), "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_debug_shows_a_broken_plugins_traceback(
    plugins: PluginSandbox, train_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins.add("loss", "fragile", error=ImportError("libfoo.so: cannot open shared object file"))
    code, _, err = run(capsys, "check", str(train_yaml), "loss.name=fragile")
    assert code == 2
    assert "loss.name: The loss 'fragile' from fake-plugin 0.0.0 failed to load" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "--debug", "check", str(train_yaml), "loss.name=fragile")
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "ImportError: libfoo.so: cannot open shared object file" in err
