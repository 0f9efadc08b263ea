"""The core stays import-light: no torch, Lightning, timm or logger SDK for the CLI's cheap paths."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = [
    "torch",
    "torchvision",
    "lightning",
    "pytorch_lightning",
    "timm",
    "numpy",
    "pandas",
    "wandb",
    "mlflow",
    "neptune",
    "clearml",
    "tensorboard",
    "albumentations",
    "faiss",
]


def imported_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    return {name.split(".")[0] for name in json.loads(last)}


@pytest.mark.parametrize(
    "code",
    [
        "import omlcore",
        "import omlcore; omlcore.available('loss')",
        "import omlcore.protocols, omlcore.schemas, omlcore.errors, omlcore.hookspecs",
        "import omlcore.testing, omlcore.testing.pytest_plugin",
        """
        import contextlib, io
        from omlcore.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["--help"])
        """,
        """
        import contextlib, io
        from omlcore.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["plugins", "list"]) == 0
        """,
        # every installed logger plugin's module: the SDK is imported only when a logger is built
        """
        from importlib.metadata import entry_points
        for ep in entry_points(group="omlcore.loggers"):
            ep.load()
        """,
    ],
    ids=["import", "available", "modules", "testing", "help", "plugins-list", "logger-plugins"],
)
def test_no_heavy_imports(code: str) -> None:
    heavy = imported_after(code) & set(HEAVY)
    assert not heavy, f"importing pulled in {sorted(heavy)}"


def test_plain_import_does_not_even_load_pydantic() -> None:
    assert "pydantic" not in imported_after("import omlcore; omlcore.__version__")
