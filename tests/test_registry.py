"""The registry: listing without imports, resolving, building with validated args, and its errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from fakes import EnsembleLoss, ForgetsLogs, MarginLoss, NotALoss, Optim, PairMiner, Tensorish

import omlcore
from omlcore.errors import (
    ConfigValidationError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
    PluginTypeError,
    UnknownKindError,
)
from omlcore.registry import KINDS, Registry, kind_of, normalize_dist
from omlcore.schemas import ComponentSpec
from omlcore.testing import PluginSandbox


@pytest.fixture
def sandbox(omlcore_sandbox: PluginSandbox) -> PluginSandbox:
    omlcore_sandbox.add("loss", "margin", MarginLoss, distribution="omlcore-losses", version="0.3")
    omlcore_sandbox.add("loss", "ensemble", EnsembleLoss, distribution="omlcore-losses", version="0.3")
    omlcore_sandbox.add("miner", "pairs", PairMiner, distribution="omlcore-miners", version="0.3")
    omlcore_sandbox.add("optimizer", "toy_sgd", Optim, distribution="omlcore-optim")
    return omlcore_sandbox


def test_kinds_have_distinct_groups_and_protocols() -> None:
    assert len({k.group for k in KINDS.values()}) == len(KINDS)
    assert all(k.group.startswith("omlcore.") for k in KINDS.values())
    assert kind_of("omlcore.losses") is KINDS["loss"]
    with pytest.raises(UnknownKindError, match="Unknown component kind 'losss'.*Did you mean 'loss'"):
        kind_of("losss")


def test_available_lists_sorted_names(sandbox: PluginSandbox) -> None:
    assert omlcore.available("loss") == ["ensemble", "margin"]
    assert omlcore.available("omlcore.miners") == ["pairs"]
    assert omlcore.available("extractor") == []


def test_build_validates_and_coerces_args(sandbox: PluginSandbox) -> None:
    loss = omlcore.build("loss", {"name": "margin", "args": {"margin": "0.25"}})
    assert isinstance(loss, MarginLoss)
    assert loss.margin == 0.25
    assert loss.reduction == "mean"


def test_build_accepts_component_spec(sandbox: PluginSandbox) -> None:
    loss = omlcore.build("loss", ComponentSpec(name="margin", args={"reduction": "sum"}))
    assert loss.reduction == "sum"


def test_nested_component_built_from_annotation(sandbox: PluginSandbox) -> None:
    loss = omlcore.build("loss", {"name": "margin", "args": {"miner": {"name": "pairs", "args": {"k": "7"}}}})
    assert isinstance(loss.miner, PairMiner)
    assert loss.miner.k == 7


def test_nested_accepts_ready_object(sandbox: PluginSandbox) -> None:
    miner = PairMiner(2)
    loss = omlcore.build("loss", {"name": "margin", "args": {"miner": miner}})
    assert loss.miner is miner


def test_nested_list_and_var_kwargs(sandbox: PluginSandbox) -> None:
    loss = omlcore.build(
        "loss",
        {
            "name": "ensemble",
            "args": {"parts": [{"name": "margin"}, {"name": "margin", "args": {"margin": 1}}], "tag": "x"},
        },
    )
    assert [p.margin for p in loss.parts] == [0.1, 1.0]
    assert loss.extra == {"tag": "x"}


def test_validate_reports_every_problem_with_paths(sandbox: PluginSandbox) -> None:
    issues = sandbox.registry.validate(
        "loss",
        {"name": "margin", "args": {"margn": 1, "margin": "abc", "miner": {"name": "pair", "args": {"k": 1}}}},
        "loss",
    )
    by_path = {i.path: i.message for i in issues}
    assert by_path["loss.args.margn"] == "extra inputs are not permitted; did you mean 'margin'?"
    assert "valid number" in by_path["loss.args.margin"]
    assert "'abc'" in by_path["loss.args.margin"]
    assert "Did you mean 'pairs'" in by_path["loss.args.miner.name"]
    assert len(issues) == 3


def test_validate_nested_args_and_list_items(sandbox: PluginSandbox) -> None:
    issues = sandbox.registry.validate(
        "loss",
        {"name": "ensemble", "args": {"parts": [{"name": "margin"}, {"name": "margin", "args": {"x": 1}}]}},
        "criterion",
    )
    assert [str(i) for i in issues] == [
        "criterion.args.parts.1.args.x: extra inputs are not permitted; accepted: margin, miner, reduction"
    ]


def test_nested_value_of_wrong_shape(sandbox: PluginSandbox) -> None:
    issues = sandbox.registry.validate("loss", {"name": "margin", "args": {"miner": 3}}, "loss")
    assert issues[0].path == "loss.args.miner"
    assert "Miner" in issues[0].message


def test_missing_required_arg(sandbox: PluginSandbox) -> None:
    issues = sandbox.registry.validate("loss", {"name": "ensemble"}, "loss")
    assert [str(i) for i in issues] == ["loss.args.parts: field required"]


def test_build_raises_with_all_issues(sandbox: PluginSandbox) -> None:
    with pytest.raises(ConfigValidationError) as info:
        omlcore.build("loss", {"name": "margin", "args": {"margn": 1, "reduction": 5}})
    assert {i.path for i in info.value.issues} == {"loss.args.margn", "loss.args.reduction"}
    assert "loss 'margin'" in str(info.value)


def test_runtime_args_are_not_config_args(sandbox: PluginSandbox) -> None:
    assert sandbox.registry.validate("optimizer", {"name": "toy_sgd", "args": {"lr": 0.5}}) == []
    opt = omlcore.build("optimizer", {"name": "toy_sgd", "args": {"lr": 0.5}}, params=iter([1, 2]))
    assert opt.params == [1, 2]
    assert opt.lr == 0.5
    issues = sandbox.registry.validate("optimizer", {"name": "toy_sgd", "args": {"params": []}}, "optimizer")
    assert [i.path for i in issues] == ["optimizer.args.params"]
    assert "run time" in issues[0].message


def test_not_found_error_names_everything(sandbox: PluginSandbox) -> None:
    with pytest.raises(PluginNotFoundError) as info:
        omlcore.resolve("loss", "marginn")
    msg = str(info.value)
    assert "No loss named 'marginn'" in msg
    assert "'omlcore.losses'" in msg
    assert "Did you mean 'margin'" in msg
    assert "Installed loss names: ensemble, margin" in msg
    assert info.value.suggestions == ["margin"]


def test_not_found_gives_install_hint_for_known_first_party_name(omlcore_sandbox: PluginSandbox) -> None:
    with pytest.raises(PluginNotFoundError, match=r'pip install "omlcore\[optim\]"'):
        omlcore.resolve("optimizer", "adamw")
    with pytest.raises(PluginNotFoundError, match="No optimizer plugin is installed at all"):
        omlcore.resolve("optimizer", "adamw")


def test_unknown_name_lists_the_first_party_names_other_extras_add(omlcore_sandbox: PluginSandbox) -> None:
    omlcore_sandbox.add("logger", "tensorboard", object, distribution="omlcore-tensorboard")
    with pytest.raises(PluginNotFoundError) as info:
        omlcore.resolve("logger", "mlflw")
    msg = str(info.value)
    assert "Installed logger names: tensorboard." in msg
    assert "omlcore[mlflow]: mlflow" in msg
    assert "omlcore[clearml]: clearml" in msg
    assert "omlcore[tensorboard]" not in msg  # installed already
    assert info.value.not_installed == {n: n for n in ("clearml", "mlflow", "neptune", "wandb")}
    with pytest.raises(PluginNotFoundError) as many:
        omlcore.resolve("loss", "my_focal")
    assert (
        "omlcore[pml]: pml_angular, pml_arcface, pml_circle, pml_contrastive, pml_cosface, pml_cross_batch_memory and"
        in str(many.value)
    )


def test_load_error_chains_the_cause(sandbox: PluginSandbox) -> None:
    sandbox.add("loss", "broken", error=ModuleNotFoundError("No module named 'scipy'"), distribution="acme-losses")
    with pytest.raises(PluginLoadError) as info:
        omlcore.resolve("loss", "broken")
    msg = str(info.value)
    assert "acme-losses 0.0.0" in msg
    assert "No module named 'scipy'" in msg
    assert "OMLCORE_DISABLE_PLUGINS=acme-losses" in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_conflict_names_both_providers(sandbox: PluginSandbox) -> None:
    sandbox.add("loss", "margin", MarginLoss, value="other:Margin", distribution="other-losses", version="9.9")
    with pytest.raises(PluginConflictError) as info:
        omlcore.resolve("loss", "margin")
    msg = str(info.value)
    assert "omlcore-losses 0.3" in msg
    assert "other-losses 9.9" in msg
    assert "will not pick one" in msg


def test_wrong_type_on_class_and_on_instance(sandbox: PluginSandbox) -> None:
    sandbox.add("loss", "nope", 42, distribution="omlcore-foo", version="0.3")
    with pytest.raises(PluginTypeError, match=r"'nope' from omlcore-foo 0.3 is not a Loss"):
        omlcore.resolve("loss", "nope")
    sandbox.add("miner", "nominer", NotALoss, distribution="omlcore-foo", version="0.3")
    with pytest.raises(PluginTypeError, match="is not a Miner: it lacks sample"):
        omlcore.resolve("miner", "nominer")
    sandbox.add("loss", "nologs", ForgetsLogs, distribution="omlcore-foo", version="0.3")
    with pytest.raises(PluginTypeError, match="lacks last_logs"):
        omlcore.build("loss", {"name": "nologs"})


def test_register_shadows_entry_points(sandbox: PluginSandbox) -> None:
    class Mine(MarginLoss):
        pass

    omlcore.register("loss", "margin", Mine)
    assert isinstance(omlcore.build("loss", {"name": "margin"}), Mine)
    sandbox.registry.unregister("loss", "margin")
    assert type(omlcore.build("loss", {"name": "margin"})) is MarginLoss


def test_disabled_distributions_are_ignored() -> None:
    sandbox = PluginSandbox()
    sandbox.add("loss", "margin", MarginLoss, distribution="Omlcore_Losses")
    registry = Registry(source=sandbox.registry._source, disabled=["omlcore-losses"])
    assert registry.available("loss") == []
    assert normalize_dist("Omlcore_Losses") == "omlcore-losses"


def test_factory_function_is_checked_after_build(omlcore_sandbox: PluginSandbox) -> None:
    def make_margin(margin: float = 0.5) -> MarginLoss:
        return MarginLoss(margin=margin)

    omlcore_sandbox.add("loss", "made", make_margin)
    assert omlcore.build("loss", {"name": "made", "args": {"margin": 2}}).margin == 2.0


def test_string_annotations_from_type_checking_imports_accept_anything(
    fake_distribution: Any, omlcore_sandbox: PluginSandbox
) -> None:
    fake_distribution(
        "acme-losses",
        {},
        {
            "acme_lazy": """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from torch import Tensor

            class Lazy:
                def __init__(self, weight: Tensor | None = None, scale: float = 1.0) -> None:
                    self.weight, self.scale, self.last_logs = weight, scale, {}

                def __call__(self, features, labels):
                    return 0.0
            """
        },
    )
    omlcore_sandbox.add("loss", "lazy", value="acme_lazy:Lazy")
    built = omlcore.build("loss", {"name": "lazy", "args": {"weight": [1, 2], "scale": "3"}})
    assert built.weight == [1, 2]
    assert built.scale == 3.0


def test_real_entry_points_listing_imports_nothing(fake_distribution: Any, tmp_path: Any) -> None:
    """Against real installed metadata, in a fresh interpreter: listing never imports the plugin."""
    root = fake_distribution(
        "acme-losses",
        {"omlcore.losses": {"acme_margin": "acme_losses_mod:Margin"}},
        {
            "acme_losses_mod": """
            class Margin:
                def __init__(self, margin: float = 0.2):
                    self.margin, self.last_logs = margin, {}
                def __call__(self, features, labels):
                    return 0.0
            """
        },
    )
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        import omlcore
        assert "acme_margin" in omlcore.available("loss"), omlcore.available("loss")
        assert "acme_losses_mod" not in sys.modules
        entry = omlcore.registry.get_registry().entry("loss", "acme_margin")
        assert (entry.distribution, entry.version) == ("acme-losses", "1.2.3"), entry
        assert "acme_losses_mod" not in sys.modules
        loss = omlcore.build("loss", {{"name": "acme_margin", "args": {{"margin": "0.5"}}}})
        assert loss.margin == 0.5 and "acme_losses_mod" in sys.modules
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_disable_env_hides_a_real_distribution(fake_distribution: Any) -> None:
    root = fake_distribution("acme-losses", {"omlcore.losses": {"acme_margin": "nowhere:Margin"}})
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r}); import omlcore; "
        "print('acme_margin' in omlcore.available('loss'))"
    )
    env = {**__import__("os").environ, "OMLCORE_DISABLE_PLUGINS": "other, ACME_losses"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_check_reports_broken_and_conflicting(sandbox: PluginSandbox) -> None:
    sandbox.add("loss", "broken", error=RuntimeError("boom"))
    sandbox.add("miner", "pairs", PairMiner, value="x:Y", distribution="dup-miners")
    results = {(r.kind, r.name): r for r in sandbox.registry.check()}
    assert results[("loss", "margin")].ok
    assert not results[("loss", "broken")].ok
    assert "boom" in results[("loss", "broken")].message
    assert not results[("miner", "pairs")].ok
    assert "PluginConflictError" in results[("miner", "pairs")].message


def test_constructor_rejection_is_wrapped_with_context(omlcore_sandbox: PluginSandbox) -> None:
    class Picky:
        def __init__(self, margin: float = 0.1) -> None:
            if margin < 0:
                raise ValueError(f"margin must be >= 0, got {margin}")
            self.last_logs: dict[str, float] = {}

        def __call__(self, features: Any, labels: Any) -> Any:
            return 0.0

    omlcore_sandbox.add("loss", "picky", Picky, distribution="acme", version="1")
    with pytest.raises(omlcore.ComponentBuildError) as info:
        omlcore.build("loss", {"name": "picky", "args": {"margin": -1}})
    assert "Building the loss 'picky' from acme 1 failed: ValueError: margin must be >= 0, got -1.0" in str(info.value)
    assert "margin=-1" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_union_members_do_not_leak_into_paths(omlcore_sandbox: PluginSandbox) -> None:
    class Opt(Optim):
        def __init__(self, params: Any, lr: float | Tensorish = 0.1, betas: tuple[float, float] = (0.9, 0.99)) -> None:
            super().__init__(params)

    omlcore_sandbox.add("optimizer", "opt", Opt)
    issues = omlcore_sandbox.registry.validate("optimizer", {"name": "opt", "args": {"lr": "abc", "betas": [1, "x"]}})
    assert [i.path for i in issues] == ["optimizer.args.lr", "optimizer.args.betas.1"]
    assert "valid number" in issues[0].message
    assert "instance of Tensorish" in issues[0].message
    assert issues[0].message.endswith("(got 'abc')")


def test_unresolvable_annotations_are_reported_by_check(omlcore_sandbox: PluginSandbox) -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "class Lazy:\n"
        "    def __init__(self, weights: MissingType = None, k: int = 1):\n"
        "        self.last_logs = {}\n"
        "    def __call__(self, features, labels):\n"
        "        return 0.0\n",
        namespace,
    )
    omlcore_sandbox.add("loss", "lazy", namespace["Lazy"])
    (result,) = omlcore_sandbox.registry.check()
    assert result.ok
    assert "annotations of weights cannot be evaluated" in result.message
    assert (
        omlcore_sandbox.registry.validate("loss", {"name": "lazy", "args": {"weights": [1], "k": "x"}})[0].path
        == "loss.args.k"
    )


def test_protocol_imported_only_for_type_checking_still_nests(
    fake_distribution: Any, omlcore_sandbox: PluginSandbox
) -> None:
    fake_distribution(
        "acme-nested",
        {},
        {
            "acme_nested": """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from omlcore.protocols import Miner

            class WithMiner:
                def __init__(self, miner: Miner | None = None) -> None:
                    self.miner, self.last_logs = miner, {}

                def __call__(self, features, labels):
                    return 0.0
            """
        },
    )
    omlcore_sandbox.add("loss", "with_miner", value="acme_nested:WithMiner")
    omlcore_sandbox.add("miner", "pairs", PairMiner)
    assert isinstance(
        omlcore.build("loss", {"name": "with_miner", "args": {"miner": {"name": "pairs"}}}).miner, PairMiner
    )
    issues = omlcore_sandbox.registry.validate("loss", {"name": "with_miner", "args": {"miner": {"name": "nope"}}})
    assert [i.path for i in issues] == ["loss.args.miner.name"]


def test_runtime_args_offered_only_to_constructors_that_take_them(omlcore_sandbox: PluginSandbox) -> None:
    class Plain:
        def __init__(self, labels: list[int], n_labels: int = 2) -> None:
            self.labels = labels

        def __iter__(self) -> Any:
            return iter([])

        def __len__(self) -> int:
            return 0

    class WithCategories(Plain):
        def __init__(self, labels: list[int], label2category: dict[int, int], n_labels: int = 2) -> None:
            super().__init__(labels)
            self.label2category = label2category

    omlcore_sandbox.add("sampler", "plain", Plain)
    omlcore_sandbox.add("sampler", "cats", WithCategories)
    runtime = {"labels": [0, 1], "label2category": {0: 0, 1: 1}}
    assert omlcore.build("sampler", {"name": "plain"}, **runtime).labels == [0, 1]
    assert omlcore.build("sampler", {"name": "cats"}, **runtime).label2category == {0: 0, 1: 1}
    # anything else that a constructor does not take is still an error
    with pytest.raises(omlcore.ComponentBuildError, match="unexpected keyword argument 'unexpected'"):
        omlcore.build("sampler", {"name": "plain"}, labels=[0], unexpected=1)


def test_submodules_load_lazily_from_the_package() -> None:
    code = (
        "import sys, omlcore; assert 'omlcore.registry' not in sys.modules; "
        "omlcore.registry.get_registry(); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
