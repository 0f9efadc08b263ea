"""`omlcore data check|mock|convert`, the plugin listing, and the import-light hook."""

import subprocess
import sys
from pathlib import Path

import pytest

from omlcore.cli import main


def test_check_valid_mock(mock_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(mock_root / "df_with_bboxes.csv"), "--images", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "24 row(s), 0 error(s), 0 warning(s)" in out
    assert out.strip().endswith("OK")


def test_check_invalid_exits_2_with_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "df.csv"
    csv.write_text("label,path,split,is_query,is_gallery\n0,a.png,train,,\n0,b.png,trian,,\n")
    assert main(["data", "check", str(csv)]) == 2
    out = capsys.readouterr().out
    assert "column 'split': 'trian' is not a split" in out
    assert "(line 3)" in out
    assert "column 'path': file does not exist" in out
    assert "(lines 2, 3)" in out
    assert "INVALID" in out
    assert main(["data", "check", str(csv), "--no-paths"]) == 2
    assert "file does not exist" not in capsys.readouterr().out


def test_check_warnings_pass_unless_strict(mock_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "df.csv"
    csv.write_text(f"label,path,split,is_query,is_gallery\n5,{mock_root}/images/hash_1.png,validation,True,False\n")
    assert main(["data", "check", str(csv)]) == 0
    assert "warning: column 'label': query has no gallery item" in capsys.readouterr().out
    assert main(["data", "check", str(csv), "--strict"]) == 2


def test_check_root_option(mock_root: Path, tmp_path: Path) -> None:
    csv = tmp_path / "elsewhere.csv"
    csv.write_text((mock_root / "df.csv").read_text())
    assert main(["data", "check", str(csv), "--quiet"]) == 2
    assert main(["data", "check", str(csv), "--root", str(mock_root), "--quiet"]) == 0


def test_mock_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "mock", str(tmp_path / "m")]) == 0
    assert "24 images (12 train, 12 validation)" in capsys.readouterr().out
    assert len(list((tmp_path / "m" / "images").glob("*.png"))) == 24


def test_convert_bad_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "convert", "sop", "--src", str(tmp_path), "--dst", str(tmp_path / "out")]) == 2
    assert "missing Ebay_train.txt, Ebay_test.txt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plugins_list_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("norm_resize_torch", "augs_hypvit_torch", "omlcore-images"):
        assert name in out
    assert main(["plugins", "check"]) == 0


def test_help_imports_no_heavy_module_in_a_subprocess() -> None:
    code = (
        "import sys; from omlcore.cli import main\n"
        "try:\n    main(['data', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'PIL', 'torchvision') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "check" in out
    assert "convert" in out
    assert "HEAVY []" in out


def test_subprocess_check_exit_code(tmp_path: Path) -> None:
    csv = tmp_path / "df.csv"
    csv.write_bytes(b"label,path,split,is_query,is_gallery\n0,caf\xe9.png,train,,\n")
    run = subprocess.run(
        [sys.executable, "-m", "omlcore", "data", "check", str(csv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "not UTF-8" in run.stdout
    assert "(line 2)" in run.stdout
