"""Nox sessions for the omlcore monorepo.

Run everything CI runs with ``python3 -m nox`` (the default session list below). Sessions:

``lint``          ruff check + ruff format --check.
``typecheck``     mypy: the core package strictly (``[tool.mypy]`` in pyproject.toml), then the
                  ``src/`` packages of every plugin (same config, so strict too).
``tests_core``    the core alone (no plugin, no torch): ``pytest tests -m "not integration"``.
``tests_plugin``  one session per ``plugins/<folder>`` (session id = folder name): core + that plugin
                  (+ the repo plugins it depends on) only; ``pytest plugins/<folder>/tests``.
``tests_all``     core + every plugin (editable) + ``docs/examples/custom-loss`` (a real, non-editable
                  install) in ONE pip call, then ``omlcore plugins check`` and ``pytest tests plugins``.
``schemas``       core + every plugin; ``omlcore schema export schemas --distribution <plugin>...
                  --check`` (fails on drift). ``nox -s schemas -- --write`` regenerates ``schemas/``
                  instead (``-- --check`` is accepted and means the default). Not a default session:
                  tests_all checks the same (tests/integration/test_committed_schemas.py).
``build``         sdist + wheel for the core, every plugin and the docs example (``python -m build``,
                  the wheel is built from the sdist), then a fresh venv installs the wheels
                  (non-editable, core with the ``[all]`` extra) and runs ``omlcore plugins list`` and
                  ``omlcore plugins check`` from outside the source tree.
``docs``          everything installed as in tests_all; ``pytest tests/test_docs.py`` (runs the code
                  blocks of README.md and docs/*.md). Not a default session: tests_all runs
                  tests/test_docs.py already; ``nox -s docs`` is the quick loop while writing docs.

Arguments after ``--`` go to pytest (tests_*, docs), mypy (typecheck) or the schema command.
Plugins are discovered at import time by globbing ``plugins/*/pyproject.toml``; nothing is run.
Every session keeps its venv between runs (``reuse_venv=True``) and reinstalls into it (quick: pip
finds everything satisfied); a reused venv first uninstalls the ``omlcore-*`` plugins that are no
longer part of the session (renamed or removed plugins). ``nox --reuse-venv=never`` rebuilds all
venvs; ``nox -R`` reuses them and skips the installs. CI starts from a clean clone anyway.

Sharing one torch install
-------------------------
A torch install is ~5.5 GB, so no session venv gets its own. Instead:

1. The first session that needs torch runs, with its own interpreter,
   ``pip install --target .torch/<key>.tmp-<pid>/site torch==... torchvision==...``
   and atomically renames the folder to ``.torch/<key>/`` once pip succeeded (a ``shared-torch.json``
   inside marks it complete). ``<key>`` = interpreter cache tag + platform + a hash of the requested
   requirements, so changing ``TORCH_REQUIREMENTS`` (or ``OMLCORE_TORCH_REQUIREMENTS``) or the
   Python version yields a new folder; an existing complete folder is reused by every later session
   and nox run. A file lock (``.torch/.lock``) serialises concurrent nox runs.
2. Every session that needs torch gets a file ``_omlcore_shared_torch.pth`` in its venv's
   site-packages holding the absolute path of ``.torch/<key>/site``. Python's ``site`` module appends
   that path to ``sys.path`` (after the venv's own site-packages, so anything the venv installs
   itself wins), so ``import torch`` works and pip, which lists distributions along ``sys.path``,
   reports ``torch>=2.2`` as "already satisfied" and never downloads it again. pip also never
   modifies the shared folder: it lies outside the venv, and pip refuses to uninstall outside it.
   Nothing uses ``--system-site-packages``: the sessions see their venv + the shared folder only.
3. Every pip call of a session passes ``-c <session tmp>/torch-constraints.txt``. In torch sessions it
   pins the exact shared versions (``torch==2.14.1``...), so a requirement that the shared install
   does not satisfy fails loudly instead of pulling a second copy of torch into the venv. In
   sessions without torch it says ``torch<0``: a plugin that needs torch without declaring it (or a
   dependency dragging it in) fails the resolve instead of downloading 5.5 GB.

A plugin "needs torch" if its ``[project] dependencies`` name torch/torchvision (or lightning/timm,
which require torch), directly or through another repository plugin. tests_plugin(<p>) gets torch only
if <p> needs it, tests_core never; tests_all, schemas, build (its wheel venv) and docs get it whenever
any plugin (or the docs example) needs it; typecheck too, because mypy must see torch's types. Overhead
per torch session: one small .pth file and a constraints file; the shared folder (~5.5 GB) is installed
in ~1 minute, once. Clean up with ``rm -rf .torch`` (old keys are not pruned automatically).
``OMLCORE_TORCH_DIR`` moves the store (e.g. to share it between clones).

Disk
----
A full run keeps ~19 GB of venvs and temporary files besides the shared torch (the heaviest venvs,
with every plugin's dependencies, are ~1.4 GB each). ``OMLCORE_NOX_DISCARD_VENVS=1`` (set by
``.ci/run``, which starts from a clean clone and never reuses a venv) deletes each session's venv, and
the temporary folder inside it, as soon as the session ends, and logs the free space left: a CI run
then peaks at the shared torch plus one session's venv. pytest keeps only the ``tmp_path`` folders of
failed tests (``tmp_path_retention_policy`` in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

nox.needs_version = ">=2024.10"
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests_core",
    "tests_plugin",
    "tests_all",
    "build",
]

ROOT = Path(__file__).resolve().parent
PYPROJECT: dict[str, Any] = nox.project.load_toml(ROOT / "pyproject.toml")
EXAMPLE_DIR = ROOT / "docs" / "examples" / "custom-loss"

TORCH_REQUIREMENTS: tuple[str, ...] = tuple(
    os.environ.get("OMLCORE_TORCH_REQUIREMENTS", "torch==2.14.1 torchvision==0.29.1").split()
)
TORCH_DISTS = frozenset({"torch", "torchvision"})
# Third-party distributions that pull torch in themselves: a plugin depending on one of them needs the
# shared torch install too (otherwise the ``torch<0`` constraint of torch-free sessions fails its resolve).
TORCH_DEPENDENT = TORCH_DISTS | {"lightning", "pytorch-lightning", "timm"}
TORCH_STORE = Path(os.environ.get("OMLCORE_TORCH_DIR", str(ROOT / ".torch"))).resolve()
TORCH_PTH = "_omlcore_shared_torch.pth"
TORCH_MARKER = "shared-torch.json"
TORCH_INSTALL_GB = 6  # what pip needs for the CUDA build of torch 2.14 + torchvision (x86_64)
DISCARD_VENVS = os.environ.get("OMLCORE_NOX_DISCARD_VENVS", "") not in ("", "0")


# --------------------------------------------------------------------------------------------------
# Projects in the repository (discovered at import time, no subprocess)


@dataclass(frozen=True)
class Project:
    """A distribution that lives in this repository (a plugin or the docs example)."""

    path: Path
    name: str  # canonical distribution name
    requires: tuple[str, ...]  # canonical names of its [project] dependencies and its extras' requirements
    extras: tuple[str, ...] = ()  # its optional-dependency groups: sessions install them all

    @property
    def folder(self) -> str:
        return self.path.name

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def spec(self) -> str:
        """The pip argument: the folder, with every extra so optional features are tested too."""
        return f"{self.rel}[{','.join(self.extras)}]" if self.extras else self.rel

    def packages(self) -> list[str]:
        """Import packages under ``src/`` (relative paths), for mypy."""
        src = self.path / "src"
        return sorted(p.parent.relative_to(ROOT).as_posix() for p in src.glob("*/__init__.py"))


def _load_project(path: Path) -> Project:
    table = nox.project.load_toml(path / "pyproject.toml").get("project", {})
    optional: dict[str, list[str]] = table.get("optional-dependencies", {})
    # Sessions install every extra (``spec``), so the extras' requirements count as dependencies too.
    wanted = [*table.get("dependencies", []), *(r for reqs in optional.values() for r in reqs)]
    requires = tuple(dict.fromkeys(canonicalize_name(Requirement(r).name) for r in wanted))
    extras = tuple(sorted(optional))
    name = canonicalize_name(table.get("name", path.name))
    return Project(path=path, name=name, requires=requires, extras=extras)


PLUGINS: tuple[Project, ...] = tuple(_load_project(p.parent) for p in sorted(ROOT.glob("plugins/*/pyproject.toml")))
PLUGINS_BY_FOLDER = {p.folder: p for p in PLUGINS}
PLUGINS_BY_NAME = {p.name: p for p in PLUGINS}
EXAMPLE: Project | None = _load_project(EXAMPLE_DIR) if (EXAMPLE_DIR / "pyproject.toml").is_file() else None


def local_closure(projects: Iterable[Project]) -> list[Project]:
    """The given projects plus every repository plugin they depend on, transitively."""
    seen: dict[str, Project] = {}
    todo = list(projects)
    while todo:
        project = todo.pop()
        if project.name in seen:
            continue
        seen[project.name] = project
        todo.extend(PLUGINS_BY_NAME[n] for n in project.requires if n in PLUGINS_BY_NAME)
    return sorted(seen.values(), key=lambda p: p.rel)


def needs_torch(projects: Iterable[Project]) -> bool:
    return any(TORCH_DEPENDENT.intersection(p.requires) for p in local_closure(projects))


def dependency_group(name: str) -> list[str]:
    """Resolve a PEP 735 ``[dependency-groups]`` entry of the root pyproject.toml."""
    groups: dict[str, list[Any]] = PYPROJECT.get("dependency-groups", {})
    out: list[str] = []
    for item in groups[name]:
        out.extend(dependency_group(item["include-group"]) if isinstance(item, dict) else [item])
    return out


def editable(projects: Iterable[Project]) -> list[str]:
    return [arg for p in projects for arg in ("-e", p.spec)]


# --------------------------------------------------------------------------------------------------
# The shared torch install (see the module docstring)

_PROBE = """
import json, sys, sysconfig
from importlib import metadata
purelib = sysconfig.get_paths()["purelib"]
print("@@" + json.dumps({
    "tag": sys.implementation.cache_tag,
    "abi": getattr(sys, "abiflags", ""),
    "platform": sysconfig.get_platform(),
    "purelib": purelib,
    "dists": sorted({d.metadata["Name"] for d in metadata.distributions(path=[purelib])}),
}))
"""


def _probe(session: nox.Session, python: str) -> dict[str, Any] | None:
    """Interpreter facts of the session venv (or another venv's python); None if nox skips installs."""
    out = session.run_install(python, "-c", _PROBE, silent=True, log=False, external=python != "python")
    if not isinstance(out, str):
        return None
    line = next(line for line in out.splitlines() if line.startswith("@@"))
    result: dict[str, Any] = json.loads(line[2:])
    return result


@contextlib.contextmanager
def _store_lock() -> Iterator[None]:
    TORCH_STORE.mkdir(parents=True, exist_ok=True)
    with open(TORCH_STORE / ".lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock, nox runs its sessions one at a time anyway
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_torch_site(session: nox.Session, info: dict[str, Any], python: str = "python") -> Path:
    """Return ``.torch/<key>/site``, installing torch there first if no complete install exists."""
    facts = {"requirements": sorted(TORCH_REQUIREMENTS), **{k: info[k] for k in ("tag", "abi", "platform")}}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    key = f"{info['tag']}-{info['platform']}-{digest}"
    final = TORCH_STORE / key
    with _store_lock():
        if (final / TORCH_MARKER).is_file():
            session.log(f"shared torch: reusing {final}")
            return final / "site"
        free = _free_gb(TORCH_STORE)  # the lock above created the folder
        session.log(f"shared torch: installing {' '.join(TORCH_REQUIREMENTS)} into {final} (once; {free:.1f} GB free)")
        if free < TORCH_INSTALL_GB:
            session.warn(f"shared torch: needs ~{TORCH_INSTALL_GB} GB of disk and only {free:.1f} GB are free")
        # Holding the lock, any <key>.tmp-* folder is the leftover of an interrupted install; so is a
        # <key> folder without the marker.
        for leftover in [*TORCH_STORE.glob(f"{key}.tmp-*"), final]:
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = TORCH_STORE / f"{key}.tmp-{os.getpid()}"
        external = python != "python"
        started = time.monotonic()
        session.run_install(
            python,
            *("-m", "pip", "install", "--progress-bar=off", "--no-warn-script-location"),
            *("--target", str(tmp / "site"), *TORCH_REQUIREMENTS),
            silent=True,
            external=external,
        )
        modules = sorted({canonicalize_name(Requirement(r).name) for r in TORCH_REQUIREMENTS} & TORCH_DISTS)
        check = f"import {', '.join(modules)}; print('imports fine:', {', '.join(m + '.__version__' for m in modules)})"
        session.run_install(python, "-c", check, env={"PYTHONPATH": str(tmp / "site")}, external=external)
        versions = {
            canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=[str(tmp / "site")])
        }
        (tmp / TORCH_MARKER).write_text(json.dumps({**facts, "installed": versions}, indent=2) + "\n")
        tmp.rename(final)
        session.log(f"shared torch: installed in {time.monotonic() - started:.0f}s")
    return final / "site"


def _torch_pins(site: Path) -> list[str]:
    return sorted(
        f"{name}=={d.version}"
        for d in metadata.distributions(path=[str(site)])
        if (name := canonicalize_name(d.metadata["Name"])) in TORCH_DISTS
    )


def prepare_venv(session: nox.Session, projects: Sequence[Project], python: str = "python") -> list[str]:
    """Get a venv ready for installing ``projects`` (repository plugins / the docs example).

    Links the shared torch in (or out, see the module docstring) depending on whether ``projects`` need
    it, uninstalls ``omlcore-*`` plugins a reused venv kept from an earlier run that are not among
    ``projects`` (renamed/removed plugins, or another session's set), and returns pip's
    ``-c <constraints>`` arguments for every later install. ``python`` is the venv's interpreter: the
    session's by default, or the path of another venv's.
    """
    info = _probe(session, python)
    if info is None:  # `nox -R`: installs are skipped, the venv keeps its .pth from the last run
        return []
    external = python != "python"
    wanted = {p.name for p in projects}
    stale = [
        d for d in info["dists"] if canonicalize_name(d).startswith("omlcore-") and canonicalize_name(d) not in wanted
    ]
    if stale:
        session.run_install(python, "-m", "pip", "uninstall", "--yes", *stale, external=external)
    torch = needs_torch(projects)
    pth = Path(info["purelib"]) / TORCH_PTH
    if torch:
        site = shared_torch_site(session, info, python)
        pth.write_text(f"{site}\n")
        lines = ["# the shared torch install (noxfile.py); pip must not install another torch", *_torch_pins(site)]
    else:
        pth.unlink(missing_ok=True)
        lines = ["# this session runs without torch (noxfile.py); nothing may pull it in"]
        lines += [f"{name}<0" for name in sorted(TORCH_DISTS)]
    constraints = Path(session.create_tmp()) / f"torch-constraints-{'on' if torch else 'off'}.txt"
    constraints.write_text("\n".join(lines) + "\n")
    return ["-c", str(constraints)]


def install_everything(session: nox.Session) -> None:
    """Core + every plugin editable + the docs example (non-editable) + test deps, in ONE pip call.

    One resolver run over the local paths, so pip never looks for ``omlcore``/``omlcore-*`` on an index.
    """
    if EXAMPLE is None:
        session.warn(f"{EXAMPLE_DIR.relative_to(ROOT)} does not exist yet: not installing the docs example")
    example = [EXAMPLE] if EXAMPLE else []
    constraints = prepare_venv(session, [*PLUGINS, *example])
    session.install(*constraints, "-e", ".", *editable(PLUGINS), *(p.rel for p in example), *dependency_group("test"))


def _free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def discard_venv_after(func: Callable[..., None]) -> Callable[..., None]:
    """With ``OMLCORE_NOX_DISCARD_VENVS=1``, delete the session's venv (tmp/ included) when it ends.

    It runs whether the session passed or failed, so one failing session cannot starve the next ones
    of disk. Only a folder that holds a ``pyvenv.cfg`` is deleted; the shared torch store is not touched.
    """

    @functools.wraps(func)
    def wrapper(session: nox.Session, *args: Any, **kwargs: Any) -> None:
        try:
            func(session, *args, **kwargs)
        finally:
            location = getattr(session.virtualenv, "location", None)
            if DISCARD_VENVS and location and (Path(location) / "pyvenv.cfg").is_file():
                shutil.rmtree(location, ignore_errors=True)
                session.log(f"discarded the venv {location}; {_free_gb(ROOT):.1f} GB free")

    return wrapper


# --------------------------------------------------------------------------------------------------
# Sessions


@nox.session(reuse_venv=True)
@discard_venv_after
def lint(session: nox.Session) -> None:
    session.install(*dependency_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(reuse_venv=True)
@discard_venv_after
def typecheck(session: nox.Session) -> None:
    constraints = prepare_venv(session, PLUGINS)
    session.install(*constraints, "-e", ".", *editable(PLUGINS), *dependency_group("typecheck"))
    session.run("mypy", *session.posargs)  # the core: [tool.mypy] packages = ["omlcore"], strict
    targets = [pkg for p in PLUGINS for pkg in p.packages()]
    if targets:
        session.run("mypy", *session.posargs, *targets)
    else:
        session.log("typecheck: no plugin packages (plugins/*/src/*/__init__.py) found")


@nox.session(reuse_venv=True)
@discard_venv_after
def tests_core(session: nox.Session) -> None:
    constraints = prepare_venv(session, [])
    session.install(*constraints, "-e", ".", *dependency_group("test"))
    session.run("pytest", "tests", "-m", "not integration", *session.posargs)


@nox.session(reuse_venv=True)
@nox.parametrize("plugin", [p.folder for p in PLUGINS], ids=[p.folder for p in PLUGINS])
@discard_venv_after
def tests_plugin(session: nox.Session, plugin: str) -> None:
    projects = local_closure([PLUGINS_BY_FOLDER[plugin]])
    constraints = prepare_venv(session, projects)
    session.install(*constraints, "-e", ".", *editable(projects), *dependency_group("test"))
    session.run("pytest", f"plugins/{plugin}/tests", *session.posargs)


@nox.session(reuse_venv=True)
@discard_venv_after
def tests_all(session: nox.Session) -> None:
    install_everything(session)
    session.run("omlcore", "plugins", "check")
    session.run("pytest", "tests", *(["plugins"] if PLUGINS else []), *session.posargs)


@nox.session(reuse_venv=True)
@discard_venv_after
def schemas(session: nox.Session) -> None:
    """Check schemas/ against the code (default), or regenerate it with ``-- --write``."""
    write = "--write" in session.posargs
    rest = [a for a in session.posargs if a not in ("--write", "--check")]
    # Core + the repository plugins only, and only their plugins go into schemas/ (not e.g. the docs
    # example, were it installed): the same as tests/integration/test_committed_schemas.py checks.
    constraints = prepare_venv(session, PLUGINS)
    session.install(*constraints, "-e", ".", *editable(PLUGINS))
    only = [arg for p in PLUGINS for arg in ("--distribution", p.name)]
    session.run("omlcore", "schema", "export", "schemas", *only, *([] if write else ["--check"]), *rest)


@nox.session(reuse_venv=True)
@discard_venv_after
def build(session: nox.Session) -> None:
    session.install("build", "virtualenv")
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    projects = [*PLUGINS, *([EXAMPLE] if EXAMPLE else [])]
    if EXAMPLE is None:
        session.warn(f"{EXAMPLE_DIR.relative_to(ROOT)} does not exist yet: not building the example")
    # pip would look for an extra's plugin on the index if it is not one of the wheels built here
    extras: dict[str, list[str]] = PYPROJECT.get("project", {}).get("optional-dependencies", {})
    for extra, reqs in extras.items():
        for name in (canonicalize_name(Requirement(r).name) for r in reqs):
            if name.startswith("omlcore-") and name not in PLUGINS_BY_NAME:
                session.error(f"extra [{extra}] of omlcore names {name}, which is not a plugin in plugins/")
    core_wheel = _build_wheel(session, ROOT, dist / "omlcore")
    wheels = [_build_wheel(session, p.path, dist / p.folder) for p in projects]

    venv = tmp / "wheel-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "virtualenv", "--quiet", str(venv))
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = str(bindir / "python")
    constraints = prepare_venv(session, projects, python=python)
    core = f"{core_wheel}[all]" if "all" in extras else str(core_wheel)
    session.run(python, "-m", "pip", "install", *constraints, core, *map(str, wheels), external=True)
    with session.chdir(tmp):  # away from the source tree: only the installed wheels are importable
        session.run(
            python,
            "-c",
            "import omlcore, sys; f = omlcore.__file__ or ''; print('omlcore from', f); sys.exit("
            "'omlcore imported from the source tree, not the wheel' if 'site-packages' not in f else 0)",
            external=True,
        )
        session.run(str(bindir / "omlcore"), "plugins", "list", external=True)
        session.run(str(bindir / "omlcore"), "plugins", "check", external=True)


def _build_wheel(session: nox.Session, source: Path, outdir: Path) -> Path:
    """sdist, then a wheel built from that sdist (catches files missing from the sdist, no stale build/)."""
    session.run("python", "-m", "build", "--outdir", str(outdir), str(source))
    wheels = sorted(outdir.glob("*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {outdir}, found {[w.name for w in wheels]}")
    return wheels[0]


@nox.session(reuse_venv=True)
@discard_venv_after
def docs(session: nox.Session) -> None:
    install_everything(session)
    session.run("pytest", "tests/test_docs.py", *session.posargs)
