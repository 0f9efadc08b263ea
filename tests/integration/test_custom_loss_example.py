"""The plugin-author example ``docs/examples/custom-loss`` (distribution ``mylab-losses``), installed for real.

``nox -s tests_all`` installs the example NON-editable (``pip install docs/examples/custom-loss``) in the
same pip call as the core and the repository's plugins; these tests check what its users see: the name
listed with its distribution, configs naming it validated with their paths, the loss built and
trained. They fail (not skip) when the example is missing, saying how to install it: the
``integration`` marker already keeps them out of the core-only session.

Each test runs against a fresh :class:`~omlcore.registry.Registry` over the installed entry points
(not the ``omlcore_sandbox`` fixture, which would hide every installed plugin). Components of plugins
that are not written yet (the ``resnet`` extractor, the ``balance`` sampler; ``adam`` if omlcore-optim is
missing) are registered in-process as stand-ins on that registry, only when no installed plugin provides
them, and vanish with it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import omlcore
from omlcore.cli import main
from omlcore.registry import Registry, use_registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "custom-loss"
TRAIN_YAML = EXAMPLE / "train.yaml"
DIST = "mylab-losses"
INSTALL = f"python -m pip install {EXAMPLE.relative_to(REPO).as_posix()}"


@pytest.fixture(scope="module", autouse=True)
def example_distribution() -> metadata.Distribution:
    """The installed ``mylab-losses``; every test of this module fails with install instructions without it."""
    try:
        return metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        pass
    pytest.fail(
        f"The docs example {DIST!r} is not installed in this environment ({sys.prefix}). These integration "
        f"tests need it installed for real, as `nox -s tests_all` does: run `{INSTALL}` from the repository "
        f"root (not -e: the tests check it is a regular install), or run `python3 -m nox -s tests_all`.",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def registry() -> Iterator[Registry]:
    """A registry over the installed entry points, none disabled, active for one test."""
    reg = Registry(disabled=())
    with use_registry(reg):
        yield reg


def child_env() -> dict[str, str]:
    """The environment of CLI subprocesses: this interpreter's, with no plugin disabled."""
    env = dict(os.environ)
    env.pop("OMLCORE_DISABLE_PLUGINS", None)
    env.pop("OMLCORE_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


# -- stand-ins for the components of train.yaml that other plugins will provide --------------------


class StandInExtractor:
    """Takes the place of the ``resnet`` extractor plugin; only its signature matters to ``check``."""

    feat_dim = 512

    def __init__(
        self,
        arch: str = "resnet18",
        weights: str | None = None,
        normalise_features: bool = False,
        gem_p: float | None = None,
    ) -> None:
        self.arch = arch

    def extract(self, x: Any) -> Any:
        return x


class StandInSampler:
    """Takes the place of the ``balance`` P x K sampler plugin (``labels`` is a run-time argument)."""

    def __init__(self, labels: list[int], n_labels: int, n_instances: int) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StandInAdam:
    """Takes the place of omlcore-optim's ``adam`` when that plugin is not installed."""

    param_groups: list[dict[str, Any]] = []

    def __init__(self, params: Any, *, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        pass

    def step(self, closure: Any = None) -> None:
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class AllTripletsMiner:
    """Every valid (anchor, positive, negative) triplet of the batch; a miner for the nested-spec tests."""

    def __init__(self, max_triplets: int | None = None) -> None:
        self.max_triplets = max_triplets
        self.calls = 0

    def sample(self, features: Any, labels: Any) -> tuple[Any, Any, Any]:
        import torch

        self.calls += 1
        rows = range(len(labels))
        found = [
            (a, p, n)
            for a, p, n in itertools.product(rows, rows, rows)
            if a != p and labels[a] == labels[p] and labels[a] != labels[n]
        ][: self.max_triplets]
        columns = list(zip(*found, strict=True)) or [(), (), ()]
        a, p, n = (torch.tensor(c, dtype=torch.long) for c in columns)
        return a, p, n


MINER = "mylab_test_all_triplets"  # a name no real plugin uses, so the stand-in shadows nothing


@pytest.fixture
def train_stand_ins(registry: Registry) -> list[str]:
    """Register stand-ins for train.yaml's extractor, sampler and optimizer where none is installed."""
    provided = []
    for kind, name, obj in (
        ("extractor", "resnet", StandInExtractor),
        ("sampler", "balance", StandInSampler),
        ("optimizer", "adam", StandInAdam),
    ):
        if name not in registry.available(kind):
            registry.register(kind, name, obj)
            provided.append(f"{kind}:{name}")
    return provided


@pytest.fixture
def miner(registry: Registry) -> str:
    registry.register("miner", MINER, AllTripletsMiner)
    return MINER


# -- installed for real ---------------------------------------------------------------------------


def test_installed_as_a_regular_not_editable_distribution(example_distribution: metadata.Distribution) -> None:
    raw = example_distribution.read_text("direct_url.json")
    if raw is not None:  # present when pip installed from a local folder or URL
        editable = json.loads(raw).get("dir_info", {}).get("editable", False)
        assert not editable, f"{DIST} is an editable install; the tests_all session installs it with `{INSTALL}`"

    import mylab_losses.focal

    module_file = Path(mylab_losses.focal.__file__).resolve()
    assert EXAMPLE not in module_file.parents, f"mylab_losses is imported from the source tree: {module_file}"
    files = {str(f) for f in example_distribution.files or ()}
    assert "mylab_losses/focal.py" in files
    assert Path(str(example_distribution.locate_file("mylab_losses/focal.py"))).resolve() == module_file


def test_entry_point_metadata(example_distribution: metadata.Distribution) -> None:
    eps = [ep for ep in example_distribution.entry_points if ep.group == "omlcore.losses"]
    assert [(ep.name, ep.value) for ep in eps] == [("focal_triplet", "mylab_losses.focal:FocalTripletLoss")]
    requires = " ".join(example_distribution.requires or ())
    assert "omlcore" in requires
    assert "torch" in requires


# -- omlcore plugins list -------------------------------------------------------------------------


def test_listed_by_plugins_list(
    capsys: pytest.CaptureFixture[str], example_distribution: metadata.Distribution
) -> None:
    assert main(["plugins", "list", "--kind", "loss", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "focal_triplet"]
    assert rows == [
        {
            "kind": "loss",
            "name": "focal_triplet",
            "distribution": DIST,
            "version": example_distribution.version,
            "value": "mylab_losses.focal:FocalTripletLoss",
            "conflict": False,
        }
    ]

    assert main(["plugins", "list"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["loss", "focal_triplet", DIST, example_distribution.version] in table


def test_listed_by_the_cli_in_a_subprocess_without_importing_it(
    tmp_path: Path, example_distribution: metadata.Distribution
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "omlcore", "plugins", "list"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert ["loss", "focal_triplet", DIST, example_distribution.version] in [
        line.split() for line in out.stdout.splitlines()
    ], out.stdout

    probe = (
        "import sys\nfrom omlcore.cli import main\nrc = main(['plugins', 'list', '--kind', 'loss'])\n"
        "print('IMPORTED:', sorted(m for m in sys.modules if m.split('.')[0] == 'mylab_losses'))\nsys.exit(rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "IMPORTED: []" in out.stdout, "listing must read metadata only, not import the plugin"


# -- omlcore check --------------------------------------------------------------------------------


@pytest.mark.usefixtures("train_stand_ins")
def test_check_accepts_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(TRAIN_YAML)]) == 0, capsys.readouterr().err
    assert "valid train config (structure and plugins checked)" in capsys.readouterr().out

    config = omlcore.load_config(TRAIN_YAML)
    assert config.loss.name == "focal_triplet"  # type: ignore[attr-defined]
    assert config.loss.args == {"margin": 0.3}  # type: ignore[attr-defined]


@pytest.mark.usefixtures("train_stand_ins", "miner")
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["loss.args.margn=0.1"], ["loss.args.margn: extra inputs are not permitted"]),
        (["loss.args.margin=abc"], ["loss.args.margin: input should be a valid number"]),
        (["loss.args.reduction=avg"], ["loss.args.reduction: input should be 'mean' or 'sum'"]),
        (["loss.name=focal_tripplet"], ["loss.name: No loss named 'focal_tripplet'", "Did you mean 'focal_triplet'"]),
        (["loss.args.miner={name: no_such_miner}"], ["loss.args.miner.name: No miner named 'no_such_miner'"]),
        ([f"loss.args.miner={{name: {MINER}, args: {{max_triplet: 5}}}}"], ["loss.args.miner.args.max_triplet"]),
        (
            ["loss.args.margn=0.1", "loss.args.gamma=[1]"],
            ["2 problem(s)", "loss.args.margn", "loss.args.gamma: input should be a valid number"],
        ),
    ],
    ids=["misspelled-arg", "wrong-type", "bad-literal", "unknown-name", "unknown-miner", "bad-miner-arg", "all-found"],
)
def test_check_reports_bad_loss_args_with_their_path(
    capsys: pytest.CaptureFixture[str], overrides: list[str], expected: list[str]
) -> None:
    assert main(["check", str(TRAIN_YAML), *overrides]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err


@pytest.mark.usefixtures("train_stand_ins", "miner")
def test_check_accepts_a_nested_miner(capsys: pytest.CaptureFixture[str]) -> None:
    override = f"loss.args.miner={{name: {MINER}, args: {{max_triplets: 100}}}}"
    assert main(["check", str(TRAIN_YAML), override, "loss.args.gamma=0.5"]) == 0, capsys.readouterr().err


def test_the_loss_slot_validates_alone(registry: Registry) -> None:
    """Without any stand-in: the loss slot of the example config, checked on its own."""
    spec = omlcore.load_config(TRAIN_YAML, check_plugins=False).loss  # type: ignore[attr-defined]
    assert registry.validate("loss", spec, "loss") == []
    issues = registry.validate("loss", {"name": "focal_triplet", "args": {"margn": 0.1, "margin": "abc"}}, "loss")
    assert sorted(i.path for i in issues) == ["loss.args.margin", "loss.args.margn"]


# -- omlcore.build --------------------------------------------------------------------------------


def test_build_returns_a_loss_that_trains() -> None:
    import torch
    from mylab_losses.focal import FocalTripletLoss

    from omlcore.protocols import Loss

    loss_fn = omlcore.build("loss", {"name": "focal_triplet", "args": {"margin": 0.3, "gamma": 1.0}})
    assert type(loss_fn) is FocalTripletLoss
    assert isinstance(loss_fn, torch.nn.Module)
    assert isinstance(loss_fn, Loss)
    assert (loss_fn.margin, loss_fn.gamma, loss_fn.miner) == (0.3, 1.0, None)

    # a linear embedding of four noisy clusters, trained by the loss alone
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(8)
    inputs = torch.randn(4, 10, generator=gen)[labels] + 0.8 * torch.randn(32, 10, generator=gen)
    model = torch.nn.Linear(10, 4)
    torch.nn.init.normal_(model.weight, generator=gen)
    history = []
    for _ in range(60):
        loss = loss_fn(model(inputs), labels)
        assert loss.shape == ()
        assert loss.requires_grad
        loss.backward()
        assert model.weight.grad is not None
        assert torch.isfinite(model.weight.grad).all()
        with torch.no_grad():  # plain gradient descent; the loss is what is under test, not an optimizer
            for param in model.parameters():
                assert param.grad is not None
                param -= 0.05 * param.grad
                param.grad = None
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history
    assert set(loss_fn.last_logs) == {"triplets", "active_fraction", "mean_weight"}
    assert loss_fn.last_logs["triplets"] == 32.0


@pytest.mark.usefixtures("miner")
def test_build_with_a_nested_miner() -> None:
    import torch

    spec = {"name": "focal_triplet", "args": {"miner": {"name": MINER, "args": {"max_triplets": 10}}}}
    loss_fn = omlcore.build("loss", spec)
    assert isinstance(loss_fn.miner, AllTripletsMiner)
    assert loss_fn.miner.max_triplets == 10

    features = torch.randn(6, 3, requires_grad=True)
    loss_fn(features, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert loss_fn.miner.calls == 1
    assert loss_fn.last_logs["triplets"] == 10.0
    assert features.grad is not None


@pytest.mark.usefixtures("miner")
@pytest.mark.parametrize(
    ("miner_spec", "path", "text"),
    [
        ({"name": "no_such_miner"}, "loss.args.miner.name", "No miner named 'no_such_miner'"),
        ({"name": MINER, "args": {"max_triplets": "many"}}, "loss.args.miner.args.max_triplets", "valid integer"),
        ({"nam": MINER}, "loss.args.miner", "expected a mapping {name: <miner name>, args: {...}}"),
    ],
    ids=["unknown-name", "bad-arg", "not-a-spec"],
)
def test_build_rejects_a_bad_nested_miner(miner_spec: dict[str, Any], path: str, text: str) -> None:
    with pytest.raises(omlcore.ConfigValidationError) as info:
        omlcore.build("loss", {"name": "focal_triplet", "args": {"miner": miner_spec}})
    issues = {i.path: i.message for i in info.value.issues}
    assert path in issues, issues
    assert text in issues[path]


# -- the example's own test suite -----------------------------------------------------------------


def test_the_example_test_suite_passes_against_the_installed_package(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
