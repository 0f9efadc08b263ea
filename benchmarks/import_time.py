"""Start-up cost of the core: ``python -X importtime`` totals and wall time of cheap CLI commands.

Usage (from the repository root, in an environment with omlcore installed)::

    python benchmarks/import_time.py --repeat 7

Prints a Markdown table for docs/benchmarks.md: the median over ``--repeat`` runs of the cumulative
import time of each module (from ``-X importtime``, microseconds → milliseconds) and of the wall time
of each command, plus whether torch ended up imported. ``import torch`` is measured for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

IMPORTS = {
    "import omlcore": "import omlcore",
    "import omlcore.registry": "import omlcore.registry",
    "import omlcore.cli": "import omlcore.cli",
    "import torch (for scale)": "import torch",
}
COMMANDS = {
    "omlcore --help": [sys.executable, "-m", "omlcore", "--help"],
    "omlcore plugins list": [sys.executable, "-m", "omlcore", "plugins", "list"],
    "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
}


def top_level_imports(statement: str) -> dict[str, int]:
    """Top-level entries of ``-X importtime`` (name → cumulative microseconds) for a statement."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
    )
    found = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # one space after '|'; nested imports are indented further
            found[name.strip()] = int(cumulative)
    return found


def import_ms(statement: str) -> float:
    """Cumulative import time in ms of what the statement imports beyond interpreter start-up."""
    startup = top_level_imports("pass")
    return sum(us for name, us in top_level_imports(statement).items() if name not in startup) / 1000


def wall_s(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


def torch_loaded(command: list[str]) -> bool:
    code = (
        "import sys, runpy; sys.argv = ['omlcore', *sys.argv[1:]];\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    runpy.run_module('omlcore', run_name='__main__')\n"
    )
    probe = code + "print('torch' in sys.modules, file=sys.stderr)"
    out = subprocess.run([sys.executable, "-c", probe, *command[3:]], capture_output=True, text=True, check=False)
    return out.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for label, statement in IMPORTS.items():
        results[label] = statistics.median(import_ms(statement) for _ in range(args.repeat))
    walls = {label: statistics.median(wall_s(cmd) for _ in range(args.repeat)) for label, cmd in COMMANDS.items()}
    if args.json:
        print(json.dumps({"imports_ms": results, "wall_s": walls}, indent=2))
        return
    print("| what | median |")
    print("|---|---|")
    for label, ms in results.items():
        print(f"| `{label}` (-X importtime, cumulative) | {ms:.1f} ms |")
    for label, seconds in walls.items():
        suffix = "" if "pass" in label else f" (torch imported: {torch_loaded(COMMANDS[label])})"
        print(f"| `{label}` (wall){suffix} | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
