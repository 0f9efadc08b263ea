"""Conformance suites: one pytest test class per protocol, reused by every plugin's tests.

A plugin proves that a component keeps its protocol's contract by subclassing the suite of its kind in
a test module. The subclass name must start with ``Test`` so that pytest collects it; the suites
themselves are named ``...Conformance`` and are never collected on their own.

Naming the component under test, by entry-point name (built through the registry, the same way a
config builds it)::

    from omlcore.testing.conformance import LossConformance

    class TestTripletConformance(LossConformance):
        kind_name = "triplet"        # the entry-point name in "omlcore.losses"
        args = {"margin": 0.2}       # the config's "args"

or directly, by overriding a fixture (for objects that need run-time arguments or a temporary
directory, or that have no entry point)::

    class TestMySamplerConformance(BatchSamplerConformance):
        @pytest.fixture
        def make_component(self):
            return lambda **kwargs: MySampler(n_labels=2, n_instances=2, **kwargs)

The fixtures every suite shares, from the most to the least specific:

- ``component``: the instance the checks run on; default ``make_component(**runtime_args)``.
- ``make_component``: a callable ``(**kwargs) -> instance`` building a *fresh* instance. The default
  builds ``{"name": kind_name, "args": component_args}`` with ``conformance_registry.build``: keyword
  arguments that are run-time arguments of the kind (``labels`` for samplers, ``params`` for
  optimizers, ``optimizer`` for schedulers) go to the constructor as a pipeline passes them, the
  others are merged over ``component_args`` and validated like config args. Checks that need several
  instances (a seeded sampler built twice, a state-dict round trip) call it, so override it rather
  than ``component`` when you can.
- ``component_args``: the config ``args``; default ``dict(args)`` (override it to use ``tmp_path``).
- ``runtime_args``: the run-time arguments for ``component``; each suite supplies its own default.
- ``conformance_registry``: the :class:`~omlcore.registry.Registry` to build from; default the active
  one. Tests of a plugin that is not installed override it to fill an ``omlcore_sandbox``::

      @pytest.fixture
      def conformance_registry(self, omlcore_sandbox):
          omlcore_sandbox.add("loss", "triplet", TripletLoss, distribution="omlcore-losses")
          return omlcore_sandbox.registry

Every suite also runs two registry checks: ``test_entry_point_resolves`` (the name is listed and
resolves through the registry, and ``args`` pass the registry's validation; skipped when
``kind_name`` is not set) and ``test_satisfies_protocol`` (``isinstance(component, Protocol)``).
Any check that does not apply to a component can be switched off the pytest way, by overriding the
test method in the subclass (for example with a ``pytest.mark.skip`` and a reason).

This module imports torch only inside fixtures and tests, so importing it stays cheap.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import random
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from omlcore import protocols
from omlcore.registry import Registry, get_registry, kind_of, missing_members

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BatchSamplerConformance",
    "ComponentConformance",
    "ExperimentLoggerConformance",
    "ExtractorConformance",
    "KnnBackendConformance",
    "LRSchedulerConformance",
    "LossConformance",
    "MinerConformance",
    "OptimizerConformance",
    "PairMinerConformance",
    "PairwiseModelConformance",
    "RetrievalMetricConformance",
    "RetrievalPostprocessorConformance",
    "TransformFactoryConformance",
]

ComponentFactory = Callable[..., Any]
"""What the ``make_component`` fixture returns: keyword arguments in, a fresh component out."""


# ---- helpers --------------------------------------------------------------------------------------------


def _generator(seed: int) -> Any:
    """A CPU ``torch.Generator`` seeded with ``seed`` (random inputs that do not touch global RNGs)."""
    import torch

    return torch.Generator().manual_seed(seed)


def _balanced_labels(n_labels: int, per_label: int, seed: int) -> Tensor:
    """Long ``(n_labels * per_label,)``: every label ``0..n_labels-1`` ``per_label`` times, shuffled."""
    import torch

    labels = torch.arange(n_labels).repeat_interleave(per_label)
    return labels[torch.randperm(labels.numel(), generator=_generator(seed))]


def _assert_unchanged(before: Tensor, after: Tensor, what: str) -> None:
    import torch

    assert torch.equal(before, after), f"{what} was modified in place"


def _through_torch_save(state: Any) -> Any:
    """``state`` after ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint stores it."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _assert_same(a: Any, b: Any, what: str) -> None:
    """Deep equality for tensors, arrays and images (``==`` on them is elementwise or identity)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor), f"{what}: {type(a).__name__} vs a tensor"
        assert isinstance(b, torch.Tensor), f"{what}: a tensor vs {type(b).__name__}"
        assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} differs from {tuple(b.shape)}"
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} differs from {b.dtype}"
        assert torch.equal(a, b), f"{what}: tensor values differ"
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        assert set(a) == set(b), f"{what}: keys {sorted(map(str, a))} differ from {sorted(map(str, b))}"
        for key in a:
            _assert_same(a[key], b[key], f"{what}[{key!r}]")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{what}: length {len(a)} differs from {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{what}[{i}]")
    elif hasattr(a, "__array__") or hasattr(a, "__array_interface__"):
        np = importlib.import_module("numpy")
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape, f"{what}: shape {x.shape} differs from {y.shape}"
        assert x.dtype == y.dtype, f"{what}: dtype {x.dtype} differs from {y.dtype}"
        assert np.array_equal(x, y), f"{what}: array values differ"
    else:
        assert a == b, f"{what}: {a!r} differs from {b!r}"


@contextmanager
def _scrambled_global_rngs() -> Iterator[Callable[[int], None]]:
    """Yield ``scramble(n)`` that reseeds Python's, torch's (and numpy's) global RNGs with ``n``; the
    previous states are restored on exit. Shows whether a seeded component secretly uses them.
    torch and numpy are optional: a pure-numpy sampler is checked without torch installed."""
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError:
        torch = None
    py_state = random.getstate()
    torch_state = torch.get_rng_state() if torch is not None else None
    try:
        np: Any = importlib.import_module("numpy")
        np_state = np.random.get_state()
    except ImportError:
        np = None

    def scramble(n: int) -> None:
        random.seed(n)
        if torch is not None:
            torch.manual_seed(n)
        if np is not None:
            np.random.seed(n)

    try:
        yield scramble
    finally:
        random.setstate(py_state)
        if torch is not None:
            torch.set_rng_state(torch_state)
        if np is not None:
            np.random.set_state(np_state)


def _some(items: Sequence[Any], limit: int = 8) -> str:
    """``items`` for a failure message, cut after ``limit`` entries."""
    shown = ", ".join(map(repr, items[:limit]))
    return f"[{shown}]" if len(items) <= limit else f"[{shown}, ...] ({len(items)} in all)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _backward(value: Any) -> None:
    """``value.backward()`` (``Tensor.backward`` is untyped in torch's stubs)."""
    value.backward()


def _set_eval(component: Any) -> None:
    if callable(getattr(component, "eval", None)):
        component.eval()


def _trainable_parameters(component: Any) -> list[Any]:
    parameters = getattr(component, "parameters", None)
    if not callable(parameters):
        return []
    return [p for p in parameters() if getattr(p, "requires_grad", False)]


# ---- the shared base ------------------------------------------------------------------------------------


class ComponentConformance:
    """What every suite shares: how the component under test is named or built, and the registry checks.

    A subclass sets ``kind_name`` (the entry-point name) and ``args`` (the config's ``args``), or
    overrides the ``make_component`` / ``component`` fixture (see the module docstring). ``kind`` is
    set by each suite and names the registry kind (``"loss"``, ``"sampler"``...).
    """

    kind: ClassVar[str]
    kind_name: ClassVar[str | None] = None
    args: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def conformance_registry(self) -> Registry:
        """The registry that resolves and builds ``kind_name``: the active one unless overridden."""
        return get_registry()

    @pytest.fixture
    def component_args(self) -> dict[str, Any]:
        """The config ``args`` the component is built with."""
        return dict(self.args)

    @pytest.fixture
    def runtime_args(self) -> dict[str, Any]:
        """Run-time arguments the pipeline would pass (none for most kinds)."""
        return {}

    @pytest.fixture
    def make_component(self, conformance_registry: Registry, component_args: dict[str, Any]) -> ComponentFactory:
        """A callable building a fresh component from ``kind_name`` through the registry."""
        kind = kind_of(self.kind)

        def make(**kwargs: Any) -> Any:
            if self.kind_name is None:
                pytest.fail(
                    f"{type(self).__name__} names no component: set kind_name = '<entry-point name>' "
                    f"(and args), or override the 'make_component' or 'component' fixture",
                    pytrace=False,
                )
            runtime = {k: v for k, v in kwargs.items() if k in kind.runtime_args}
            config = {**component_args, **{k: v for k, v in kwargs.items() if k not in kind.runtime_args}}
            return conformance_registry.build(kind.name, {"name": self.kind_name, "args": config}, **runtime)

        return make

    @pytest.fixture
    def component(self, make_component: ComponentFactory, runtime_args: dict[str, Any]) -> Any:
        """The instance most checks run on."""
        return make_component(**runtime_args)

    def test_entry_point_resolves(self, conformance_registry: Registry, component_args: dict[str, Any]) -> None:
        """``kind_name`` is listed, resolves, and ``args`` pass the registry's signature validation."""
        if self.kind_name is None:
            pytest.skip("no kind_name: the component is given directly, not by entry-point name")
        kind = kind_of(self.kind)
        names = conformance_registry.available(kind.name)
        assert self.kind_name in names, f"{self.kind_name!r} is not listed in {kind.group}: {names}"
        obj = conformance_registry.resolve(kind.name, self.kind_name)
        assert callable(obj), f"{kind.group}:{self.kind_name} resolves to a non-callable {type(obj).__name__}"
        if kind.factory:
            assert isinstance(obj, protocols.TransformFactory), f"{obj!r} is not a TransformFactory"
        issues = conformance_registry.validate(kind.name, {"name": self.kind_name, "args": component_args})
        assert not issues, "args rejected by the registry:\n" + "\n".join(f"  {i.path}: {i.message}" for i in issues)

    def test_satisfies_protocol(self, component: Any) -> None:
        """The instance has every member of its kind's protocol."""
        protocol = kind_of(self.kind).protocol
        assert isinstance(component, protocol), (
            f"{type(component).__name__} is not a {protocol.__name__}; missing "
            f"{missing_members(component, protocol, instance=True)}"
        )


# ---- Extractor ------------------------------------------------------------------------------------------


class ExtractorConformance(ComponentConformance):
    """Checks an :class:`~omlcore.protocols.Extractor`.

    A subclass provides the component (``kind_name``/``args`` or a fixture) and the input it takes:
    ``input_shape``, the shape of one item (default ``(3, 32, 32)``, an image), or an
    ``extractor_input`` fixture returning a float batch ``(B, ...)`` with ``B >= 2``. ``rtol``/``atol``
    bound how far a row may move when the batch around it changes (float rounding of batched kernels).

    Checked: ``feat_dim`` is a positive int; in ``eval()`` mode the output is ``(B, feat_dim)`` of the
    input's dtype and device, finite, deterministic, independent of the other rows in the batch and of
    their order; the input is not modified; in ``train()`` mode gradients reach the trainable parameters
    (skipped when there are none, e.g. a frozen backbone).
    """

    kind = "extractor"
    input_shape: ClassVar[tuple[int, ...]] = (3, 32, 32)
    batch_size: ClassVar[int] = 4
    rtol: ClassVar[float] = 1e-4
    atol: ClassVar[float] = 1e-5

    @pytest.fixture
    def extractor_input(self) -> Tensor:
        """A random float batch ``(batch_size, *input_shape)``."""
        import torch

        return torch.randn((self.batch_size, *self.input_shape), generator=_generator(0))

    def _extract_eval(self, component: Any, x: Tensor) -> Tensor:
        import torch

        _set_eval(component)
        with torch.no_grad():
            out: Tensor = component.extract(x)
        return out

    def test_feat_dim_is_positive_int(self, component: Any) -> None:
        """``feat_dim`` is a positive ``int``."""
        feat_dim = component.feat_dim
        assert _is_int(feat_dim), f"feat_dim is {feat_dim!r}, not an int"
        assert feat_dim > 0, f"feat_dim is {feat_dim}"

    def test_output_shape_dtype_and_device(self, component: Any, extractor_input: Tensor) -> None:
        """``(B, feat_dim)``, the input's float dtype and device, finite values."""
        import torch

        out = self._extract_eval(component, extractor_input)
        assert isinstance(out, torch.Tensor), f"extract() returned {type(out).__name__}, not a Tensor"
        expected = (extractor_input.shape[0], component.feat_dim)
        assert tuple(out.shape) == expected, f"extract() shape {tuple(out.shape)}, expected {expected}"
        assert out.dtype == extractor_input.dtype, f"output dtype {out.dtype}, input dtype {extractor_input.dtype}"
        assert out.device == extractor_input.device, f"output on {out.device}, input on {extractor_input.device}"
        assert bool(torch.isfinite(out).all()), "extract() returned non-finite values"

    def test_deterministic_in_eval(self, component: Any, extractor_input: Tensor) -> None:
        """The same input gives the same embeddings in ``eval()`` mode."""
        import torch

        first = self._extract_eval(component, extractor_input)
        second = self._extract_eval(component, extractor_input)
        torch.testing.assert_close(second, first, rtol=self.rtol, atol=self.atol, msg="eval output changed")

    def test_rows_independent_of_the_batch(self, component: Any, extractor_input: Tensor) -> None:
        """Row ``i`` of a batch equals extracting item ``i`` alone (no batch statistics in eval)."""
        import torch

        batched = self._extract_eval(component, extractor_input)
        for i in range(extractor_input.shape[0]):
            alone = self._extract_eval(component, extractor_input[i : i + 1])
            torch.testing.assert_close(
                alone[0], batched[i], rtol=self.rtol, atol=self.atol, msg=f"row {i} depends on the rest of the batch"
            )

    def test_keeps_input_order(self, component: Any, extractor_input: Tensor) -> None:
        """Permuting the batch permutes the rows of the output the same way."""
        import torch

        perm = torch.randperm(extractor_input.shape[0], generator=_generator(1)).flip(0)
        batched = self._extract_eval(component, extractor_input)
        permuted = self._extract_eval(component, extractor_input[perm])
        torch.testing.assert_close(
            permuted, batched[perm], rtol=self.rtol, atol=self.atol, msg="output rows do not follow input rows"
        )

    def test_does_not_modify_input(self, component: Any, extractor_input: Tensor) -> None:
        """``extract`` leaves its input alone."""
        before = extractor_input.clone()
        self._extract_eval(component, extractor_input)
        _assert_unchanged(before, extractor_input, "the input batch")

    def test_gradients_reach_trainable_parameters(self, component: Any, extractor_input: Tensor) -> None:
        """In ``train()`` mode a loss on the embeddings gives finite, not all-zero parameter gradients."""
        import torch

        params = _trainable_parameters(component)
        if not params:
            pytest.skip("the extractor has no trainable parameters")
        if callable(getattr(component, "train", None)):
            component.train()
        out = component.extract(extractor_input)
        weights = torch.randn(out.shape, generator=_generator(2), dtype=out.dtype)
        _backward((out * weights).sum())
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, "no trainable parameter received a gradient"
        assert all(bool(torch.isfinite(g).all()) for g in grads), "non-finite parameter gradients"
        assert any(bool(g.abs().sum() > 0) for g in grads), "all parameter gradients are zero"


# ---- BatchSampler ---------------------------------------------------------------------------------------


class BatchSamplerConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.BatchSampler`.

    The sampler is built with the run-time argument ``labels`` (the ``labels`` fixture: a list of
    ``int``, 8 labels with 4 to 6 items each, shuffled; override it, or ``runtime_args`` to add e.g.
    ``label2category``). A subclass provides the component and, if the sampler takes a seed, declares
    the constructor argument that carries it: ``seed_arg = "seed"``. Then ``make_component`` is called
    twice with ``seed_arg=7`` to check reproducibility, so a direct subclass overrides ``make_component``
    (not only ``component``) and forwards keyword arguments. A sampler with ``set_epoch(epoch)`` is
    checked per epoch.

    Checked: every batch is a non-empty ``list`` of ``int`` indices, each ``0 <= i < len(labels)``;
    ``len()`` equals the number of batches one pass yields, on every pass; with a seed, two samplers
    built alike yield the same batches for the same epoch, whatever the global RNGs (Python, torch,
    numpy) hold, and an epoch can be replayed.
    """

    kind = "sampler"
    seed_arg: ClassVar[str | None] = None

    @pytest.fixture
    def labels(self) -> list[int]:
        """Dataset labels: 8 labels, 4 to 6 items each, shuffled."""
        counts = [4, 5, 6, 4, 5, 6, 4, 5]
        out = [label for label, n in enumerate(counts) for _ in range(n)]
        random.Random(0).shuffle(out)
        return out

    @pytest.fixture
    def runtime_args(self, labels: list[int]) -> dict[str, Any]:
        """``{"labels": labels}``."""
        return {"labels": labels}

    @staticmethod
    def _one_pass(sampler: Any, dataset_size: int) -> list[list[int]]:
        batches = []
        for i, batch in enumerate(sampler):
            assert isinstance(batch, list), f"batch {i} is a {type(batch).__name__}, not a list"
            assert batch, f"batch {i} is empty"
            for index in batch:
                assert _is_int(index), f"batch {i} holds {index!r} of type {type(index).__name__}, not int"
                assert 0 <= index < dataset_size, f"batch {i} holds index {index}, dataset has {dataset_size} items"
            batches.append(list(batch))
        return batches

    def test_yields_lists_of_valid_indices(self, component: Any, labels: list[int]) -> None:
        """Every batch is a non-empty list of ints in ``range(len(labels))``."""
        batches = self._one_pass(component, len(labels))
        assert batches, "the sampler yielded no batch"

    def test_len_matches_batches_yielded(self, component: Any, labels: list[int]) -> None:
        """``len(sampler)`` is the number of batches yielded, on each of two passes."""
        for attempt in ("first", "second"):
            expected = len(component)
            got = len(self._one_pass(component, len(labels)))
            assert got == expected, f"{attempt} pass yielded {got} batches, len() says {expected}"

    def test_reproducible_for_same_seed_and_epoch(
        self, make_component: ComponentFactory, runtime_args: dict[str, Any], labels: list[int]
    ) -> None:
        """Same seed and epoch, same batches; the global RNGs play no part."""
        if self.seed_arg is None:
            pytest.skip("no seed_arg declared: set seed_arg = '<constructor argument>' if the sampler is seeded")
        n = len(labels)
        with _scrambled_global_rngs() as scramble:
            scramble(1)
            first = make_component(**runtime_args, **{self.seed_arg: 7})
            scramble(2)
            second = make_component(**runtime_args, **{self.seed_arg: 7})
            if callable(getattr(first, "set_epoch", None)):
                epochs = [0, 1]
                seen = {}
                for epoch in epochs:
                    scramble(10 + epoch)
                    first.set_epoch(epoch)
                    seen[epoch] = self._one_pass(first, n)
                for epoch in reversed(epochs):
                    scramble(20 + epoch)
                    second.set_epoch(epoch)
                    assert self._one_pass(second, n) == seen[epoch], f"epoch {epoch} is not reproduced"
            else:
                for attempt in ("first", "second"):
                    scramble(30)
                    a = self._one_pass(first, n)
                    scramble(40)
                    b = self._one_pass(second, n)
                    assert a == b, f"the {attempt} pass differs between two samplers with the same seed"


# ---- Miner ----------------------------------------------------------------------------------------------


class MinerConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.Miner`.

    A subclass provides the component. Inputs are random float features ``(B, feat_dim)`` (``feat_dim``
    default 8) that require grad, as in training, and labels: 4 labels x 4 items (the ``miner_batch``
    fixture, overridable). Set ``deterministic = False`` for a miner that samples at random, and
    ``expects_triplets = False`` for one that may legitimately find nothing in a random batch (e.g.
    hard-only mining with a threshold).

    Checked: three 1-D long tensors of equal length on the input's device; every index in range;
    ``labels[a] == labels[p]``, ``a != p``, ``labels[a] != labels[n]``; a non-empty result on a batch
    with positives and negatives, including the smallest one (2 labels x 2 items); an empty result on
    a batch with a single label; same result for the same input; inputs not modified.
    """

    kind = "miner"
    feat_dim: ClassVar[int] = 8
    deterministic: ClassVar[bool] = True
    expects_triplets: ClassVar[bool] = True

    @pytest.fixture
    def miner_batch(self) -> tuple[Tensor, Tensor]:
        """``(features, labels)``: float ``(16, feat_dim)`` requiring grad, long ``(16,)`` 4 x 4."""
        import torch

        features = torch.randn(16, self.feat_dim, generator=_generator(0)).requires_grad_(True)
        return features, _balanced_labels(4, 4, seed=1)

    @staticmethod
    def check_triplets(result: Any, features: Tensor, labels: Tensor) -> int:
        """Assert that ``result`` is a valid ``(anchors, positives, negatives)`` for the batch; its length."""
        import torch

        assert isinstance(result, tuple), f"sample() returned {type(result).__name__}, not a tuple"
        assert len(result) == 3, f"sample() returned {len(result)} items, not (anchors, positives, negatives)"
        anchors, positives, negatives = result
        for name, t in (("anchors", anchors), ("positives", positives), ("negatives", negatives)):
            assert isinstance(t, torch.Tensor), f"{name} is a {type(t).__name__}, not a Tensor"
            assert t.dtype == torch.long, f"{name} has dtype {t.dtype}, expected torch.int64"
            assert t.ndim == 1, f"{name} has shape {tuple(t.shape)}, expected 1-D"
            assert t.device == features.device, f"{name} is on {t.device}, features on {features.device}"
        assert anchors.shape == positives.shape == negatives.shape, (
            f"lengths differ: {anchors.numel()}, {positives.numel()}, {negatives.numel()}"
        )
        size = labels.shape[0]
        for name, t in (("anchors", anchors), ("positives", positives), ("negatives", negatives)):
            outside = t[(t < 0) | (t >= size)].tolist()
            assert not outside, f"{name} holds indices outside range(0, {size}): {_some(outside)}"
        same_item = (anchors == positives).nonzero().flatten().tolist()
        assert not same_item, f"anchor equals positive at triplets {_some(same_item)}"
        bad_pos = (labels[anchors] != labels[positives]).nonzero().flatten().tolist()
        assert not bad_pos, f"positive with another label at triplets {_some(bad_pos)}"
        bad_neg = (labels[anchors] == labels[negatives]).nonzero().flatten().tolist()
        assert not bad_neg, f"negative with the same label at triplets {_some(bad_neg)}"
        return int(anchors.numel())

    def test_returns_valid_triplets(self, component: Any, miner_batch: tuple[Tensor, Tensor]) -> None:
        """Three long index tensors of equal length that satisfy the label constraints."""
        features, labels = miner_batch
        count = self.check_triplets(component.sample(features, labels), features, labels)
        if self.expects_triplets:
            assert count > 0, "no triplet found in a batch of 4 labels x 4 items"

    def test_smallest_mixed_batch(self, component: Any) -> None:
        """2 labels x 2 items: valid triplets, and some when ``expects_triplets``."""
        import torch

        features = torch.randn(4, self.feat_dim, generator=_generator(2))
        labels = torch.tensor([0, 1, 0, 1])
        count = self.check_triplets(component.sample(features, labels), features, labels)
        if self.expects_triplets:
            assert count > 0, "no triplet found in a batch of 2 labels x 2 items"

    def test_single_label_batch_gives_no_triplets(self, component: Any) -> None:
        """A batch without negatives yields empty long tensors."""
        import torch

        features = torch.randn(6, self.feat_dim, generator=_generator(3))
        labels = torch.full((6,), 3, dtype=torch.long)
        count = self.check_triplets(component.sample(features, labels), features, labels)
        assert count == 0, f"{count} triplets found in a batch with a single label"

    def test_deterministic(self, component: Any, miner_batch: tuple[Tensor, Tensor]) -> None:
        """The same batch gives the same triplets (skipped for ``deterministic = False``)."""
        import torch

        if not self.deterministic:
            pytest.skip("declared deterministic = False")
        features, labels = miner_batch
        first = component.sample(features, labels)
        second = component.sample(features, labels)
        for name, a, b in zip(("anchors", "positives", "negatives"), first, second, strict=True):
            assert torch.equal(a, b), f"{name} differ between two calls on the same batch"

    def test_does_not_modify_inputs(self, component: Any, miner_batch: tuple[Tensor, Tensor]) -> None:
        """Features and labels are left alone."""
        features, labels = miner_batch
        before_f, before_l = features.detach().clone(), labels.clone()
        component.sample(features, labels)
        _assert_unchanged(before_f, features.detach(), "features")
        _assert_unchanged(before_l, labels, "labels")


# ---- Loss -----------------------------------------------------------------------------------------------


class LossConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.Loss`.

    A subclass provides the component. Inputs are random float32 features ``(B, feat_dim)`` (default 8,
    so a loss with class centres is built with ``in_features=8``) and labels ``0..n_labels-1``
    (``n_labels = 4`` labels x ``per_label = 4`` items; ``loss_batch`` fixture, overridable). Set
    ``deterministic = False`` for a loss that samples at random.

    Checked: a finite scalar tensor of shape ``()`` of the features' dtype; gradients w.r.t. the
    features are finite and not all zero; every trainable parameter of the loss gets a finite gradient;
    ``last_logs`` is a ``Mapping[str, float]`` after a call; same value for the same input; the
    smallest batch with positives and negatives (2 labels x 2 items) works; inputs not modified.
    """

    kind = "loss"
    feat_dim: ClassVar[int] = 8
    n_labels: ClassVar[int] = 4
    per_label: ClassVar[int] = 4
    deterministic: ClassVar[bool] = True

    @pytest.fixture
    def loss_batch(self) -> tuple[Tensor, Tensor]:
        """``(features, labels)``: float ``(n_labels * per_label, feat_dim)``, long labels, shuffled."""
        import torch

        n = self.n_labels * self.per_label
        features = torch.randn(n, self.feat_dim, generator=_generator(0))
        return features, _balanced_labels(self.n_labels, self.per_label, seed=1)

    @staticmethod
    def check_scalar(value: Any, features: Tensor) -> None:
        """Assert that ``value`` is a finite float scalar tensor of the features' dtype."""
        import torch

        assert isinstance(value, torch.Tensor), f"the loss returned {type(value).__name__}, not a Tensor"
        assert value.shape == (), f"the loss has shape {tuple(value.shape)}, expected () (a scalar)"
        assert value.dtype == features.dtype, f"the loss has dtype {value.dtype}, features {features.dtype}"
        assert value.device == features.device, f"the loss is on {value.device}, features on {features.device}"
        assert bool(torch.isfinite(value)), f"the loss is {value.item()}"

    def test_returns_finite_float_scalar(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """Shape ``()``, floating, finite."""
        features, labels = loss_batch
        self.check_scalar(component(features.clone().requires_grad_(True), labels), features)

    def test_gradients_flow_to_features(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """``backward()`` reaches the features with finite, not all-zero gradients."""
        import torch

        features, labels = loss_batch
        leaf = features.clone().requires_grad_(True)
        value = component(leaf, labels)
        assert isinstance(value, torch.Tensor), f"the loss returned {type(value).__name__}, not a Tensor"
        assert value.requires_grad, "the loss does not depend differentiably on the features"
        _backward(value)
        assert leaf.grad is not None, "no gradient reached the features"
        assert bool(torch.isfinite(leaf.grad).all()), "non-finite gradients w.r.t. the features"
        assert bool(leaf.grad.abs().sum() > 0), "all gradients w.r.t. the features are zero"

    def test_gradients_reach_own_parameters(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """Each trainable parameter of the loss (class centres...) gets a finite gradient."""
        import torch

        params = _trainable_parameters(component)
        if not params:
            pytest.skip("the loss has no trainable parameters")
        features, labels = loss_batch
        _backward(component(features.clone().requires_grad_(True), labels))
        for i, p in enumerate(params):
            assert p.grad is not None, f"trainable parameter {i} {tuple(p.shape)} received no gradient"
            assert bool(torch.isfinite(p.grad).all()), f"trainable parameter {i} has non-finite gradients"

    def test_last_logs_is_str_to_float_mapping(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """After a call ``last_logs`` maps ``str`` to ``float``."""
        features, labels = loss_batch
        component(features.clone().requires_grad_(True), labels)
        logs = component.last_logs
        assert isinstance(logs, Mapping), f"last_logs is a {type(logs).__name__}, not a Mapping"
        for key, value in logs.items():
            assert isinstance(key, str), f"last_logs key {key!r} is not a str"
            assert isinstance(value, float), f"last_logs[{key!r}] is {value!r} ({type(value).__name__}), not float"

    def test_deterministic(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """The same batch gives the same value (skipped for ``deterministic = False``)."""
        import torch

        if not self.deterministic:
            pytest.skip("declared deterministic = False")
        features, labels = loss_batch
        first = component(features.clone(), labels).detach()
        second = component(features.clone(), labels).detach()
        torch.testing.assert_close(second, first, rtol=1e-6, atol=1e-7, msg="the loss changed for the same batch")

    def test_two_labels_two_items(self, component: Any) -> None:
        """The smallest useful batch gives a finite, differentiable scalar."""
        import torch

        features = torch.randn(4, self.feat_dim, generator=_generator(2)).requires_grad_(True)
        value = component(features, torch.tensor([0, 1, 1, 0]))
        self.check_scalar(value, features)
        _backward(value)
        assert features.grad is not None, "no gradient reached the features"
        assert bool(torch.isfinite(features.grad).all()), "non-finite gradients w.r.t. the features"

    def test_does_not_modify_inputs(self, component: Any, loss_batch: tuple[Tensor, Tensor]) -> None:
        """Features (values, ``requires_grad``) and labels are left alone."""
        features, labels = loss_batch
        leaf = features.clone().requires_grad_(True)
        before_l = labels.clone()
        component(leaf, labels)
        _assert_unchanged(features, leaf.detach(), "features")
        _assert_unchanged(before_l, labels, "labels")
        assert leaf.requires_grad, "the loss turned off requires_grad on the features"


# ---- RetrievalMetric ------------------------------------------------------------------------------------


class RetrievalMetricConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.RetrievalMetric`.

    A subclass provides the component and may list names ``compute()`` must return in
    ``expected_keys``. The data is the ``metric_data`` fixture: a dict of per-item values over 24 items
    (6 labels x 4; one query and three gallery items per label, clustered float32 embeddings of size 8,
    keys ``embeddings``, ``labels``, ``is_query``, ``is_gallery``, ``idx``). Override it to add keys
    (``categories``...); every value must be a tensor or list with one entry per item, because the
    suite slices items into batches.

    Checked: ``compute()`` returns a non-empty ``dict`` of ``str`` to finite ``float``; the result is
    the same for one batch, batches of 5, batches of 1, batches in reverse order and a shuffled item
    order (with matching ``idx``); ``compute()`` twice gives the same result; ``reset()`` forgets
    everything fed before it; ``update()`` does not modify the batch.
    """

    kind = "metric"
    expected_keys: ClassVar[tuple[str, ...]] = ()
    tolerance: ClassVar[float] = 1e-6

    @pytest.fixture
    def metric_data(self) -> dict[str, Any]:
        """24 items, 6 labels x (1 query + 3 gallery), shuffled; ``idx`` is the dataset index."""
        import torch

        g = _generator(0)
        n_labels, per_label, dim = 6, 4, 8
        labels = torch.arange(n_labels).repeat_interleave(per_label)
        centres = 2.0 * torch.randn(n_labels, dim, generator=g)
        embeddings = centres[labels] + torch.randn(labels.numel(), dim, generator=g)
        is_query = torch.arange(labels.numel()) % per_label == 0
        perm = torch.randperm(labels.numel(), generator=g)
        return {
            "embeddings": embeddings[perm],
            "labels": labels[perm],
            "is_query": is_query[perm],
            "is_gallery": ~is_query[perm],
            "idx": torch.arange(labels.numel()),
        }

    @staticmethod
    def _take(data: Mapping[str, Any], order: Sequence[int]) -> dict[str, Any]:
        import torch

        index = torch.tensor(list(order), dtype=torch.long)
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key] = value[index] if isinstance(value, torch.Tensor) else [value[i] for i in order]
        return out

    def _feed(self, metric: Any, data: Mapping[str, Any], order: Sequence[int], batch_size: int) -> dict[str, float]:
        for start in range(0, len(order), batch_size):
            metric.update(self._take(data, order[start : start + batch_size]))
        result = metric.compute()
        self.check_result(result)
        return dict(result)

    def check_result(self, result: Any) -> None:
        """Assert that ``result`` is a non-empty ``dict[str, float]`` of finite values with ``expected_keys``."""
        assert isinstance(result, dict), f"compute() returned {type(result).__name__}, not dict"
        assert result, "compute() returned an empty dict"
        for key, value in result.items():
            assert isinstance(key, str), f"metric name {key!r} is not a str"
            assert isinstance(value, float), f"{key} = {value!r} ({type(value).__name__}), not float"
            assert math.isfinite(value), f"{key} = {value}"
        missing = [k for k in self.expected_keys if k not in result]
        assert not missing, f"compute() lacks {missing}; it returned {sorted(result)}"

    def _assert_same_result(self, got: Mapping[str, float], expected: Mapping[str, float], how: str) -> None:
        assert set(got) == set(expected), f"{how}: metric names {sorted(got)} differ from {sorted(expected)}"
        for key in expected:
            assert math.isclose(got[key], expected[key], rel_tol=self.tolerance, abs_tol=self.tolerance), (
                f"{how}: {key} = {got[key]}, but {expected[key]} when fed in one batch"
            )

    def _n_items(self, data: Mapping[str, Any]) -> int:
        return len(data["labels"])

    def test_compute_returns_finite_floats(self, component: Any, metric_data: dict[str, Any]) -> None:
        """A flat dict of metric names to finite floats."""
        n = self._n_items(metric_data)
        self._feed(component, metric_data, range(n), n)

    def test_independent_of_batch_split_and_order(self, component: Any, metric_data: dict[str, Any]) -> None:
        """Batch size, batch order and item order do not change the result."""
        n = self._n_items(metric_data)
        reference = self._feed(component, metric_data, list(range(n)), n)
        shuffled = [int(i) for i in random.Random(3).sample(range(n), n)]
        reversed_batches = [i for start in reversed(range(0, n, 5)) for i in range(start, min(start + 5, n))]
        for how, order, size in (
            ("batches of 5", list(range(n)), 5),
            ("batches of 1", list(range(n)), 1),
            ("batches of 5 in reverse order", reversed_batches, 5),
            ("shuffled items in batches of 7", shuffled, 7),
        ):
            component.reset()
            self._assert_same_result(self._feed(component, metric_data, order, size), reference, how)

    def test_compute_is_repeatable(self, component: Any, metric_data: dict[str, Any]) -> None:
        """``compute()`` does not consume the state."""
        n = self._n_items(metric_data)
        first = self._feed(component, metric_data, range(n), 6)
        second = component.compute()
        self.check_result(second)
        self._assert_same_result(second, first, "second compute()")

    def test_reset_clears_state(self, component: Any, metric_data: dict[str, Any]) -> None:
        """After ``reset()`` the metric sees only what is fed afterwards."""
        n = self._n_items(metric_data)
        reference = self._feed(component, metric_data, range(n), n)
        other = dict(metric_data)  # other items (idx shifted past the data's) with other embeddings
        other["embeddings"] = metric_data["embeddings"].flip(0) * 3.0 + 1.0
        if "idx" in other:
            other["idx"] = metric_data["idx"] + n
        component.reset()
        self._feed(component, other, range(n), n)
        component.reset()
        self._assert_same_result(self._feed(component, metric_data, range(n), n), reference, "after reset()")

    def test_update_does_not_modify_batch(self, component: Any, metric_data: dict[str, Any]) -> None:
        """``update()`` leaves the batch's tensors alone."""
        import torch

        batch = self._take(metric_data, range(self._n_items(metric_data)))
        before = {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        component.update(batch)
        for key, value in before.items():
            _assert_unchanged(value, batch[key], f"batch[{key!r}]")


# ---- ExperimentLogger -----------------------------------------------------------------------------------


MetricHistory = Mapping[str, Sequence[tuple[int | None, float]]]
"""What :meth:`ExperimentLoggerConformance.read_back_metrics` returns: name -> ``(step, value)`` pairs."""


class ExperimentLoggerConformance(ComponentConformance):
    """Checks an :class:`~omlcore.protocols.ExperimentLogger`, including that it really recorded.

    A subclass provides the component, usually by overriding ``component_args`` to point the logger at
    ``tmp_path`` in offline mode, and implements the read-back hook:

    - ``read_back_metrics(logger)`` (required): called after ``finish("success")``; reads what the
      backend stored (event files, a local run directory, the backend's offline API) and returns
      ``{name: [(step, value), ...]}``. The suite asserts that exactly the logged steps and values
      come back for every logged name (other names may come back too).
    - ``read_back_params(logger)`` and ``read_back_artifacts(logger)`` (optional, default ``None`` =
      not checked): the stored parameters as a mapping (values compared as equal or equal as ``str``)
      and the stored artifact names.

    ``self`` is shared by the fixtures and the test of one run, so a fixture can keep, for example,
    ``self.run_dir = tmp_path`` for the hooks. ``params`` and ``logged_metrics`` are the inputs.

    Checked: ``log_params``, ``log_metrics`` (with and without step), ``log_figure`` (a matplotlib
    figure; skipped when matplotlib is not installed), ``log_artifact`` (with and without name) and
    ``finish("success"/"failed")`` run without error; logged metrics (and params, artifacts) read back
    equal; ``lightning_logger()`` returns a Lightning ``Logger`` (skipped when lightning is missing).
    """

    kind = "logger"
    params: ClassVar[Mapping[str, Any]] = {
        "model/name": "toy-extractor",
        "optimizer/lr": 0.001,
        "trainer/max_epochs": 3,
        "trainer/use_amp": False,
        "scheduler": None,
    }
    logged_metrics: ClassVar[tuple[tuple[int, Mapping[str, float]], ...]] = (
        (0, {"train/loss": 1.5, "lr": 0.25}),
        (1, {"train/loss": 0.75}),
        (2, {"train/loss": 0.5, "OVERALL/cmc/1": 0.625}),
    )
    tolerance: ClassVar[float] = 1e-6

    def read_back_metrics(self, logger: Any) -> MetricHistory:
        """What the backend stored, as ``{name: [(step, value), ...]}``. Subclasses must implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement read_back_metrics(logger) -> "
            "{name: [(step, value), ...]} reading what the logger wrote, to prove that logging worked"
        )

    def read_back_params(self, logger: Any) -> Mapping[str, Any] | None:
        """The stored parameters, or ``None`` (default) when the backend cannot be read back."""
        return None

    def read_back_artifacts(self, logger: Any) -> Collection[str] | None:
        """The stored artifact names, or ``None`` (default) when the backend cannot be read back."""
        return None

    def _expected_metrics(self) -> dict[str, list[tuple[int, float]]]:
        expected: dict[str, list[tuple[int, float]]] = {}
        for step, metrics in self.logged_metrics:
            for name, value in metrics.items():
                expected.setdefault(name, []).append((step, value))
        return expected

    def test_log_params(self, component: Any) -> None:
        """``log_params`` accepts a flattened config (str, float, int, bool, None values)."""
        component.log_params(dict(self.params))
        component.finish("success")
        stored = self.read_back_params(component)
        if stored is None:
            return
        for key, value in self.params.items():
            assert key in stored, f"param {key!r} was not stored; stored: {sorted(stored)}"
            got = stored[key]
            assert got == value or str(got) == str(value), f"param {key!r} stored as {got!r}, logged {value!r}"

    def test_logged_metrics_read_back(self, component: Any) -> None:
        """Every logged ``(step, value)`` is stored, and nothing else under those names."""
        for step, metrics in self.logged_metrics:
            component.log_metrics(dict(metrics), step=step)
        component.finish("success")
        try:
            stored = self.read_back_metrics(component)
        except NotImplementedError as exc:
            pytest.fail(str(exc), pytrace=False)
        for name, pairs in self._expected_metrics().items():
            assert name in stored, f"metric {name!r} was not stored; stored: {sorted(stored)}"
            got = sorted(((s, float(v)) for s, v in stored[name]), key=lambda p: (p[0] is None, p[0] or 0))
            assert [s for s, _ in got] == [s for s, _ in pairs], (
                f"{name!r}: stored steps {[s for s, _ in got]}, logged {[s for s, _ in pairs]}"
            )
            for (step, value), (_, stored_value) in zip(pairs, got, strict=True):
                assert math.isclose(stored_value, value, rel_tol=self.tolerance, abs_tol=self.tolerance), (
                    f"{name!r} at step {step}: stored {stored_value}, logged {value}"
                )

    def test_log_metrics_without_step(self, component: Any) -> None:
        """``step`` may be omitted."""
        component.log_metrics({"epoch_time": 12.5})
        component.finish("success")

    def test_log_figure(self, component: Any) -> None:
        """A matplotlib figure can be logged (needs matplotlib)."""
        figure_module = pytest.importorskip(
            "matplotlib.figure", reason="matplotlib is not installed, so no figure can be made for log_figure"
        )
        figure = figure_module.Figure(figsize=(2, 2))
        figure.add_subplot().plot([0, 1, 2], [2.0, 1.0, 1.5])
        component.log_figure(figure, "conformance/curve", 1)
        component.finish("success")

    def test_log_artifact(self, component: Any, tmp_path: Path) -> None:
        """Files can be logged under their own name or another one."""
        config = tmp_path / "artifact-source" / "config.yaml"
        config.parent.mkdir()
        config.write_text("loss:\n  name: triplet\n")
        table = tmp_path / "artifact-source" / "predictions.csv"
        table.write_text("idx,label\n0,1\n")
        component.log_artifact(config)
        component.log_artifact(str(table), name="renamed.csv")
        component.finish("success")
        stored = self.read_back_artifacts(component)
        if stored is not None:
            missing = {"config.yaml", "renamed.csv"} - set(stored)
            assert not missing, f"artifacts {sorted(missing)} were not stored; stored: {sorted(stored)}"

    def test_finish_failed(self, component: Any) -> None:
        """A run can be closed as failed."""
        component.log_metrics({"train/loss": 2.0}, step=0)
        component.finish("failed")

    def test_lightning_logger(self, component: Any) -> None:
        """``lightning_logger()`` returns a ``lightning.pytorch.loggers.Logger`` (needs lightning)."""
        loggers = pytest.importorskip("lightning.pytorch.loggers", reason="lightning is not installed")
        lightning_logger = component.lightning_logger()
        assert isinstance(lightning_logger, loggers.Logger), (
            f"lightning_logger() returned {type(lightning_logger).__name__}, not a lightning Logger"
        )
        component.finish("success")


# ---- TransformFactory -----------------------------------------------------------------------------------


class TransformFactoryConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.TransformFactory` and the transform it builds.

    ``component`` here is the *transform*: the registry calls the factory with ``args``. A subclass
    provides it and must provide a ``sample_input`` fixture (one raw sample: an image array, a PIL
    image...). ``expected_shape`` (optional) is the shape of the output, which is then required to be
    a float tensor (``(C, H, W)`` for images). Set ``deterministic = False`` for a training transform
    (random augmentations); evaluation transforms stay deterministic.

    Checked: the entry point is a factory (``TransformFactory``) and its result a ``Transform``; the
    transform maps the sample to an output (of ``expected_shape``); when deterministic, the same input
    gives the same output, also from a second transform built with the same args; the input is not
    modified.
    """

    kind = "transform"
    expected_shape: ClassVar[tuple[int, ...] | None] = None
    deterministic: ClassVar[bool] = True

    @pytest.fixture
    def sample_input(self) -> Any:
        """One raw sample: subclasses must provide it."""
        pytest.fail(f"{type(self).__name__} must provide a 'sample_input' fixture (one raw sample)", pytrace=False)

    def test_maps_sample_to_output(self, component: Any, sample_input: Any) -> None:
        """The transform returns an output (of ``expected_shape``, float, when declared)."""
        import torch

        out = component(sample_input)
        assert out is not None, "the transform returned None"
        if self.expected_shape is not None:
            assert isinstance(out, torch.Tensor), f"the transform returned {type(out).__name__}, not a Tensor"
            assert tuple(out.shape) == tuple(self.expected_shape), (
                f"output shape {tuple(out.shape)}, expected {tuple(self.expected_shape)}"
            )
            assert out.is_floating_point(), f"output dtype {out.dtype} is not floating"

    def test_deterministic_for_evaluation(
        self, component: Any, make_component: ComponentFactory, sample_input: Any
    ) -> None:
        """Same input, same output, across calls and across transforms built alike."""
        if not self.deterministic:
            pytest.skip("declared deterministic = False (a training transform)")
        first = component(sample_input)
        _assert_same(component(sample_input), first, "a second call's output")
        _assert_same(make_component()(sample_input), first, "the output of a second transform built alike")

    def test_does_not_modify_input(self, component: Any, sample_input: Any) -> None:
        """The raw sample is left alone."""
        before = copy.deepcopy(sample_input)
        component(sample_input)
        _assert_same(sample_input, before, "the input sample")


# ---- RetrievalPostprocessor -----------------------------------------------------------------------------


class RetrievalPostprocessorConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.RetrievalPostprocessor`.

    A subclass provides the component and, if ``process`` reads embeddings or items, the
    ``postprocessor_dataset`` fixture (default ``None``) and a matching ``retrieval_result`` fixture, a
    function ``(n_columns) -> (distances, retrieved, query_ids)`` (default: 4 queries, ids ``0..3``;
    retrieved rows drawn without repetition from ``range(max(n_columns + 5, 20))``; distances random and
    sorted). Set ``reorders_only = False`` for a postprocessor that may bring new items into the top (the
    suite otherwise checks that the kept items of the first ``top_n`` columns come from the input's), and
    ``may_drop = True`` for one that may drop items (thresholding; the suite otherwise checks that no item
    is dropped).

    Checked: ``top_n`` is a positive int or ``None`` (every column read); ``reads`` is one of
    ``"embeddings"``, ``"items"``, ``"nothing"``; shapes and dtypes kept; rows sorted ascending; padding
    (``-1`` with distance ``inf``) only at a row's end, kept as padding; columns after ``top_n`` keep their
    items and order, their distances unchanged or all moved by one amount per row; the top is a
    reordering (minus dropped items); fewer columns than ``top_n`` works; inputs not modified; same output
    for the same input.
    """

    kind = "postprocessor"
    reorders_only: ClassVar[bool] = True
    may_drop: ClassVar[bool] = False

    @pytest.fixture
    def postprocessor_dataset(self) -> Any:
        """The ``dataset`` argument of ``process`` (``None`` unless overridden)."""
        return None

    @pytest.fixture
    def retrieval_result(self) -> Callable[[int], tuple[Tensor, Tensor, Tensor]]:
        """A function making ``(distances, retrieved, query_ids)`` with ``n_columns`` columns."""
        import torch

        def make(n_columns: int) -> tuple[Tensor, Tensor, Tensor]:
            g = _generator(0)
            n_queries, n_gallery = 4, max(n_columns + 5, 20)
            distances = torch.rand(n_queries, n_columns, generator=g).sort(dim=1).values
            retrieved = torch.stack([torch.randperm(n_gallery, generator=g)[:n_columns] for _ in range(n_queries)])
            return distances, retrieved, torch.arange(n_queries)

        return make

    def _process(self, component: Any, inputs: tuple[Tensor, Tensor, Tensor], dataset: Any) -> tuple[Tensor, Tensor]:
        import torch

        distances, retrieved, query_ids = inputs
        result = component.process(distances, retrieved, query_ids, dataset)
        assert isinstance(result, tuple), f"process() returned {type(result).__name__}, not a tuple"
        assert len(result) == 2, f"process() returned {len(result)} items, not (distances, retrieved)"
        new_d, new_r = result
        assert isinstance(new_d, torch.Tensor), f"process() returned distances of type {type(new_d).__name__}"
        assert isinstance(new_r, torch.Tensor), f"process() returned retrieved of type {type(new_r).__name__}"
        assert new_d.shape == distances.shape, f"distances shape {tuple(new_d.shape)}, was {tuple(distances.shape)}"
        assert new_r.shape == retrieved.shape, f"retrieved shape {tuple(new_r.shape)}, was {tuple(retrieved.shape)}"
        assert new_d.is_floating_point(), f"distances dtype {new_d.dtype}"
        assert new_r.dtype == torch.long, f"retrieved dtype {new_r.dtype}, expected torch.int64"
        return new_d, new_r

    def _top_n(self, component: Any) -> int | None:
        top_n = component.top_n
        if top_n is None:
            return None
        assert _is_int(top_n), f"top_n is {top_n!r}, neither an int nor None"
        assert top_n > 0, f"top_n is {top_n}"
        return int(top_n)

    def _width(self, component: Any) -> int:
        """Columns of the inputs: a few more than ``top_n`` (8 when every column is read)."""
        top_n = self._top_n(component)
        return 8 if top_n is None else top_n + 3

    def test_top_n_is_positive_int(self, component: Any) -> None:
        """``top_n`` is a positive ``int``, or ``None`` for a postprocessor reading every column."""
        self._top_n(component)

    def test_reads_is_declared(self, component: Any) -> None:
        """``reads`` says what ``process``'s ``dataset`` must be."""
        reads = getattr(component, "reads", "<missing>")
        assert reads in ("embeddings", "items", "nothing"), (
            f"reads is {reads!r}; it must be 'embeddings', 'items' or 'nothing'"
        )

    def test_keeps_shapes_and_sorts_rows(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """Same shapes and dtypes; each row sorted ascending."""
        inputs = retrieval_result(self._width(component))
        new_d, _ = self._process(component, inputs, postprocessor_dataset)
        unsorted = (new_d[:, 1:] < new_d[:, :-1]).any(dim=1)
        assert not bool(unsorted.any()), f"rows {_some(unsorted.nonzero().flatten().tolist())} are not sorted ascending"

    def test_padding_stays_padding_at_the_end(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """A row with fewer results (``-1``/``inf`` in its last columns) keeps them as padding, at its end."""
        import math

        import torch

        width = self._width(component)
        distances, retrieved, query_ids = retrieval_result(width)
        distances, retrieved = distances.clone(), retrieved.clone()
        distances[0, -2:], retrieved[0, -2:] = math.inf, -1
        new_d, new_r = self._process(component, (distances, retrieved, query_ids), postprocessor_dataset)
        padding = new_r < 0
        assert bool(padding[0, -2:].all()), f"row 0 was padded in its last 2 columns; now {new_r[0].tolist()}"
        assert bool(torch.isinf(new_d[padding]).all()), "padding (-1) must have distance inf"
        after_padding = padding.long().cummax(dim=1).values.bool()
        misplaced = new_r[(padding != after_padding).any(dim=1)].tolist()
        assert not misplaced, f"padding (-1) must be at the end of each row, got rows {_some(misplaced)}"

    def test_columns_after_top_n_unchanged(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """Only the first ``top_n`` columns may change: the later ones keep their items and order, and their
        distances are unchanged or all moved by one amount per row (skipped for ``top_n = None``)."""
        import torch

        top_n = self._top_n(component)
        if top_n is None:
            pytest.skip("top_n is None: every column may change")
        distances, retrieved, query_ids = retrieval_result(top_n + 3)
        new_d, new_r = self._process(component, (distances, retrieved, query_ids), postprocessor_dataset)
        assert torch.equal(retrieved[:, top_n:], new_r[:, top_n:]), (
            f"the items after column {top_n} changed: {retrieved[:, top_n:].tolist()} -> {new_r[:, top_n:].tolist()}"
        )
        shift = new_d[:, top_n:].double() - distances[:, top_n:].double()
        spread = (shift - shift[:, :1]).abs().max()
        tolerance = 1e-5 * max(1.0, float(distances.abs().max()))
        assert float(spread) <= tolerance, (
            f"the distances after column {top_n} changed by different amounts within a row "
            f"(largest difference {float(spread):.3g}); only one shift per row is allowed"
        )

    def test_top_is_a_reordering(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """The first ``top_n`` columns (every column for ``top_n = None``) hold the same items, minus dropped
        ones for ``may_drop = True`` (skipped for ``reorders_only = False``)."""
        if not self.reorders_only:
            pytest.skip("declared reorders_only = False")
        top_n = self._top_n(component)
        distances, retrieved, query_ids = retrieval_result(self._width(component))
        n = retrieved.shape[1] if top_n is None else top_n
        _, new_r = self._process(component, (distances, retrieved, query_ids), postprocessor_dataset)
        for row in range(retrieved.shape[0]):
            before = sorted(retrieved[row, :n].tolist())
            kept = [i for i in new_r[row, :n].tolist() if i >= 0]
            after = sorted(kept)
            if self.may_drop:
                assert len(set(kept)) == len(kept), f"row {row}: items repeated in {kept}"
                assert set(kept) <= set(before), f"row {row}: items {sorted(set(kept) - set(before))} were brought in"
            else:
                assert before == after, f"row {row}: top {n} items {after} are not a reordering of {before}"

    def test_fewer_columns_than_top_n(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """A result narrower than ``top_n`` keeps its shape and sorted rows."""
        top_n = self._top_n(component)
        if top_n is None or top_n < 2:
            pytest.skip("top_n is None or 1: no narrower result exists")
        new_d, _ = self._process(component, retrieval_result(top_n - 1), postprocessor_dataset)
        assert not bool((new_d[:, 1:] < new_d[:, :-1]).any()), "rows are not sorted ascending"

    def test_does_not_modify_inputs_and_is_deterministic(
        self,
        component: Any,
        retrieval_result: Callable[[int], tuple[Tensor, Tensor, Tensor]],
        postprocessor_dataset: Any,
    ) -> None:
        """Inputs are left alone; the same input gives the same output."""
        inputs = retrieval_result(self._width(component))
        before = tuple(t.clone() for t in inputs)
        first_d, first_r = self._process(component, inputs, postprocessor_dataset)
        for name, b, t in zip(("distances", "retrieved", "query_ids"), before, inputs, strict=True):
            _assert_unchanged(b, t, name)
        first = (first_d.clone(), first_r.clone())
        second = self._process(component, inputs, postprocessor_dataset)
        _assert_same(second, first, "a second process() output")


# ---- KnnBackend -----------------------------------------------------------------------------------------


class KnnBackendConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.KnnBackend` against a brute-force float64 reference.

    A subclass provides the component. The reference distances per ``metric`` are: ``"l2"`` Euclidean
    (``torch.cdist``), ``"cosine"`` ``1 - cosine similarity``, ``"dot"`` ``-(q . g)``. Set
    ``exact_distances = False`` for a backend that returns another monotone transform of these (e.g.
    squared L2); the order is still compared exactly. ``rtol``/``atol`` bound distance differences.

    Checked: ``metric`` is one of the three; results are float and long ``(Q, min(k, G))`` for k = 1,
    a middle k, G and more than G; rows sorted ascending; indices (and distances) match the reference
    on tie-free data; exact ties (duplicated gallery rows) are broken by the smaller gallery index,
    including at the k-th place; searching queries one at a time gives the batched rows; inputs not
    modified.
    """

    kind = "knn"
    exact_distances: ClassVar[bool] = True
    rtol: ClassVar[float] = 1e-4
    atol: ClassVar[float] = 1e-5

    @pytest.fixture
    def knn_data(self) -> tuple[Tensor, Tensor]:
        """Random float32 ``(6, 8)`` queries and ``(40, 8)`` gallery, free of near-ties."""
        import torch

        g = _generator(0)
        return torch.randn(6, 8, generator=g), torch.randn(40, 8, generator=g)

    @staticmethod
    def reference(queries: Tensor, gallery: Tensor, metric: str) -> Tensor:
        """Float64 ``(Q, G)`` distances for ``metric``."""
        import torch

        q, g = queries.double(), gallery.double()
        if metric == "l2":
            euclidean: Tensor = torch.cdist(q, g)
            return euclidean
        if metric == "cosine":
            q = q / q.norm(dim=1, keepdim=True)
            g = g / g.norm(dim=1, keepdim=True)
            cosine: Tensor = 1.0 - q @ g.T
            return cosine
        if metric == "dot":
            return -(q @ g.T)
        raise AssertionError(f"unknown metric {metric!r}; expected 'l2', 'cosine' or 'dot'")

    def _search(self, component: Any, queries: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
        import torch

        result = component.search(queries, gallery, k)
        assert isinstance(result, tuple), f"search() returned {type(result).__name__}, not a tuple"
        assert len(result) == 2, f"search() returned {len(result)} items, not (distances, indices)"
        distances, indices = result
        assert isinstance(distances, torch.Tensor), f"distances are a {type(distances).__name__}, not a Tensor"
        assert isinstance(indices, torch.Tensor), f"indices are a {type(indices).__name__}, not a Tensor"
        expected = (queries.shape[0], min(k, gallery.shape[0]))
        got_d, got_i = tuple(distances.shape), tuple(indices.shape)
        assert got_d == expected, f"k={k}: distances shape {got_d}, expected {expected}"
        assert got_i == expected, f"k={k}: indices shape {got_i}, expected {expected}"
        assert distances.is_floating_point(), f"distances dtype {distances.dtype}"
        assert indices.dtype == torch.long, f"indices dtype {indices.dtype}, expected torch.int64"
        return distances, indices

    def test_metric_is_known(self, component: Any) -> None:
        """``metric`` is ``"l2"``, ``"cosine"`` or ``"dot"``."""
        assert component.metric in ("l2", "cosine", "dot"), f"metric is {component.metric!r}"

    def test_shapes_and_sorted_rows(self, component: Any, knn_data: tuple[Tensor, Tensor]) -> None:
        """``(Q, min(k, G))`` float/long results, rows sorted ascending, for several k."""
        queries, gallery = knn_data
        n_gallery = gallery.shape[0]
        for k in (1, 5, n_gallery, n_gallery + 7):
            distances, indices = self._search(component, queries, gallery, k)
            unsorted = (distances[:, 1:] < distances[:, :-1]).any(dim=1)
            assert not bool(unsorted.any()), f"k={k}: rows {_some(unsorted.nonzero().flatten().tolist())} not sorted"
            outside = ((indices < 0) | (indices >= n_gallery)).any()
            assert not bool(outside), f"k={k}: indices outside range(0, {n_gallery})"
            for row in indices.tolist():
                assert len(set(row)) == len(row), f"k={k}: a gallery item is returned twice in row {row}"

    def test_matches_brute_force(self, component: Any, knn_data: tuple[Tensor, Tensor]) -> None:
        """Same neighbours (and distances) as an exhaustive float64 search."""
        import torch

        queries, gallery = knn_data
        k = 7
        ref = self.reference(queries, gallery, component.metric).sort(dim=1, stable=True)
        gaps = ref.values[:, 1 : k + 1] - ref.values[:, :k]
        assert bool((gaps > 1e-4).all()), "the suite's data has near-ties (a bug in the suite)"
        distances, indices = self._search(component, queries, gallery, k)
        assert torch.equal(indices, ref.indices[:, :k]), (
            f"neighbours differ from brute force:\n{indices.tolist()}\nexpected\n{ref.indices[:, :k].tolist()}"
        )
        if self.exact_distances:
            torch.testing.assert_close(
                distances.double(), ref.values[:, :k], rtol=self.rtol, atol=self.atol, msg="distances differ"
            )

    def test_ties_broken_by_smaller_index(self, component: Any) -> None:
        """Duplicated gallery rows come out in ascending index order; the k-th place keeps the smaller."""
        import torch

        distinct = torch.tensor(
            [[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]
        )
        layout = [2, 0, 3, 1, 0, 2, 1, 3, 0, 1, 2, 3]  # each distinct row three times, scattered
        gallery = distinct[layout]
        queries = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # the second ties everything
        ref = self.reference(queries, gallery, component.metric).sort(dim=1, stable=True)
        for k in (5, 8, len(layout)):
            _, indices = self._search(component, queries, gallery, k)
            assert torch.equal(indices, ref.indices[:, :k]), (
                f"k={k}: ties not broken by the smaller gallery index:\n{indices.tolist()}\n"
                f"expected\n{ref.indices[:, :k].tolist()}"
            )

    def test_query_rows_independent(self, component: Any, knn_data: tuple[Tensor, Tensor]) -> None:
        """Searching each query alone gives its row of the batched search."""
        import torch

        queries, gallery = knn_data
        distances, indices = self._search(component, queries, gallery, 5)
        for i in range(queries.shape[0]):
            d, idx = self._search(component, queries[i : i + 1], gallery, 5)
            assert torch.equal(idx[0], indices[i]), f"query {i}: neighbours depend on the other queries"
            torch.testing.assert_close(d[0], distances[i], rtol=self.rtol, atol=self.atol)

    def test_does_not_modify_inputs(self, component: Any, knn_data: tuple[Tensor, Tensor]) -> None:
        """Queries and gallery are left alone."""
        queries, gallery = knn_data
        before_q, before_g = queries.clone(), gallery.clone()
        self._search(component, queries, gallery, 5)
        _assert_unchanged(before_q, queries, "queries")
        _assert_unchanged(before_g, gallery, "gallery")


# ---- Optimizer ------------------------------------------------------------------------------------------


class OptimizerConformance(ComponentConformance):
    """Checks an :class:`~omlcore.protocols.Optimizer`.

    The optimizer is built with the run-time argument ``params`` (a list of ``torch.nn.Parameter``), so
    a direct subclass overrides ``make_component`` with a callable taking ``params=`` (for example
    ``lambda params: MyOptimizer(params, lr=0.1)``); with ``kind_name`` choose ``args`` (a learning
    rate) that make progress on a small quadratic within ``steps`` (default 25) steps.

    Checked: ``param_groups`` is a list of dicts with ``params`` and ``lr``; ``steps`` steps (with a
    closure, so line-search optimizers work too) reduce ``sum(c * (w - t)**2)``; ``zero_grad()``
    clears gradients; a ``state_dict()`` saved mid-run (through ``torch.save``/``torch.load`` with
    ``weights_only=True``) and loaded into a fresh optimizer continues exactly like the original.
    """

    kind = "optimizer"
    steps: ClassVar[int] = 25

    @pytest.fixture
    def runtime_args(self) -> dict[str, Any]:
        """``{"params": [Parameter of 4 zeros]}``."""
        import torch

        return {"params": [torch.nn.Parameter(torch.zeros(4))]}

    @staticmethod
    def quadratic(w: Tensor) -> Tensor:
        """``sum(c * (w - t)**2)`` with fixed ``c > 0`` and ``t``; minimum 0 at ``w = t``."""
        import torch

        target = torch.tensor([1.0, -2.0, 0.5, 3.0])
        curvature = torch.tensor([1.0, 2.0, 0.5, 1.5])
        return (curvature * (w - target) ** 2).sum()

    def _run(self, optimizer: Any, w: Tensor, steps: int) -> None:
        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = self.quadratic(w)
            _backward(loss)
            return loss

        for _ in range(steps):
            optimizer.step(closure)

    def test_param_groups_hold_params_and_lr(self, component: Any) -> None:
        """A list of dicts, each with ``params`` and ``lr`` (schedulers change ``lr``)."""
        groups = component.param_groups
        assert isinstance(groups, list), f"param_groups is a {type(groups).__name__}, not a list"
        assert groups, "param_groups is empty"
        for i, group in enumerate(groups):
            assert isinstance(group, dict), f"param group {i} is a {type(group).__name__}"
            missing = [key for key in ("params", "lr") if key not in group]
            assert not missing, f"param group {i} lacks {missing}: it has {sorted(group)}"

    def test_steps_reduce_a_quadratic(self, make_component: ComponentFactory) -> None:
        """After ``steps`` steps the quadratic is lower than at the start."""
        import torch

        w = torch.nn.Parameter(torch.zeros(4))
        start = float(self.quadratic(w.detach()))
        self._run(make_component(params=[w]), w, self.steps)
        end = float(self.quadratic(w.detach()))
        assert math.isfinite(end), f"the quadratic became {end}"
        assert end < start, f"the quadratic went from {start} to {end} in {self.steps} steps"

    def test_zero_grad_clears_gradients(self, make_component: ComponentFactory) -> None:
        """After ``zero_grad()`` gradients are ``None`` or zero."""
        import torch

        w = torch.nn.Parameter(torch.zeros(4))
        optimizer = make_component(params=[w])
        _backward(self.quadratic(w))
        optimizer.zero_grad()
        assert w.grad is None or not bool(w.grad.any()), "zero_grad() left gradients"

    def test_state_dict_round_trip(self, make_component: ComponentFactory) -> None:
        """A fresh optimizer loading a saved state continues exactly like the original."""
        import torch

        w = torch.nn.Parameter(torch.zeros(4))
        original = make_component(params=[w])
        self._run(original, w, 3)
        state = _through_torch_save(original.state_dict())
        w_copy = torch.nn.Parameter(w.detach().clone())
        restored = make_component(params=[w_copy])
        restored.load_state_dict(state)
        self._run(original, w, 3)
        self._run(restored, w_copy, 3)
        torch.testing.assert_close(w_copy.detach(), w.detach(), msg="the restored optimizer took other steps")


# ---- LRScheduler ----------------------------------------------------------------------------------------


class LRSchedulerConformance(ComponentConformance):
    """Checks an :class:`~omlcore.protocols.LRScheduler`.

    The scheduler is built with the run-time argument ``optimizer``: a ``torch.optim.SGD`` with
    ``lr = base_lr`` (0.1) and momentum over one parameter (override ``make_optimizer()`` for another),
    so a direct subclass overrides ``make_component`` with a callable taking ``optimizer=``.
    ``expected_lrs`` (optional) documents the schedule of the first param group: item 0 is the learning
    rate right after construction, item ``i`` the one after ``i`` calls of ``step()``; the suite
    compares them. ``step_scheduler(scheduler, i)`` advances it; override
    it for schedulers whose ``step`` takes arguments (``ReduceLROnPlateau``: ``scheduler.step(loss)``).

    Checked: over ``steps`` (10) steps, each after an optimizer step, the learning rate stays finite
    and non-negative and matches ``expected_lrs``; ``get_last_lr()``, when present, agrees with the
    optimizer; the state saved mid-run (scheduler and optimizer, through ``torch.save``/``torch.load``
    with ``weights_only=True``) and loaded into a fresh pair reproduces the rest of the schedule.
    """

    kind = "scheduler"
    base_lr: ClassVar[float] = 0.1
    steps: ClassVar[int] = 10
    expected_lrs: ClassVar[Sequence[float] | None] = None

    def make_optimizer(self) -> Any:
        """A fresh ``SGD(lr=base_lr, momentum=0.9)`` over one parameter of 3 zeros."""
        import torch

        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=self.base_lr, momentum=0.9)

    @pytest.fixture
    def runtime_args(self) -> dict[str, Any]:
        """``{"optimizer": make_optimizer()}``."""
        return {"optimizer": self.make_optimizer()}

    def step_scheduler(self, scheduler: Any, step: int) -> None:
        """Advance the schedule once; ``step`` counts from 0."""
        scheduler.step()

    @staticmethod
    def _lrs(optimizer: Any) -> list[float]:
        return [float(group["lr"]) for group in optimizer.param_groups]

    def _advance(self, optimizer: Any, scheduler: Any, first_step: int, n: int) -> list[list[float]]:
        """``n`` optimizer+scheduler steps; the learning rates after each."""
        out = []
        for i in range(first_step, first_step + n):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = p.detach() * 0.0 + 1.0
            optimizer.step()
            self.step_scheduler(scheduler, i)
            out.append(self._lrs(optimizer))
        return out

    def test_schedule_values(self, make_component: ComponentFactory) -> None:
        """Finite, non-negative rates, equal to ``expected_lrs`` when given, agreeing with ``get_last_lr``."""
        optimizer = self.make_optimizer()
        scheduler = make_component(optimizer=optimizer)
        history = [self._lrs(optimizer), *self._advance(optimizer, scheduler, 0, self.steps)]
        for i, lrs in enumerate(history):
            assert all(math.isfinite(lr) and lr >= 0 for lr in lrs), f"learning rates {lrs} after {i} steps"
        if self.expected_lrs is not None:
            got = [lrs[0] for lrs in history[: len(self.expected_lrs)]]
            assert len(got) == len(self.expected_lrs), f"expected_lrs is longer than steps + 1 = {len(history)}"
            for i, (g, e) in enumerate(zip(got, self.expected_lrs, strict=True)):
                assert math.isclose(g, e, rel_tol=1e-6, abs_tol=1e-12), f"lr after {i} steps is {g}, expected {e}"
        if callable(getattr(scheduler, "get_last_lr", None)):
            last = [float(lr) for lr in scheduler.get_last_lr()]
            assert last == history[-1], f"get_last_lr() says {last}, the optimizer has {history[-1]}"

    def test_state_dict_round_trip(self, make_component: ComponentFactory) -> None:
        """Resuming from saved states continues the schedule exactly as an uninterrupted run."""
        split = self.steps // 2
        optimizer = self.make_optimizer()
        scheduler = make_component(optimizer=optimizer)
        uninterrupted = self._advance(optimizer, scheduler, 0, self.steps)

        optimizer = self.make_optimizer()
        scheduler = make_component(optimizer=optimizer)
        self._advance(optimizer, scheduler, 0, split)
        optimizer_state = _through_torch_save(optimizer.state_dict())
        scheduler_state = _through_torch_save(scheduler.state_dict())

        fresh_optimizer = self.make_optimizer()
        fresh_scheduler = make_component(optimizer=fresh_optimizer)
        fresh_optimizer.load_state_dict(optimizer_state)
        fresh_scheduler.load_state_dict(scheduler_state)
        resumed = self._advance(fresh_optimizer, fresh_scheduler, split, self.steps - split)
        for i, (got, expected) in enumerate(zip(resumed, uninterrupted[split:], strict=True), start=split + 1):
            assert len(got) == len(expected), f"after {i} steps: {len(got)} param groups, expected {len(expected)}"
            close = (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(got, expected, strict=True))
            assert all(close), f"after {i} steps the resumed schedule has lr {got}, the uninterrupted one {expected}"


# ---- PairMiner ------------------------------------------------------------------------------------------


class PairMinerConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.PairMiner`.

    A subclass provides the component. Inputs are random float features ``(B, feat_dim)`` (``feat_dim``
    default 8) that require grad, and labels: 4 labels x 4 items (the ``pair_miner_batch`` fixture,
    overridable). Set ``deterministic = False`` for a miner that samples at random, and
    ``expects_pairs = False`` for one that may legitimately find nothing in a random batch.

    Checked: long ``ids1``, long ``ids2`` and bool ``is_negative``, 1-D, of equal length, on the input's
    device; every index in range; ``ids1 != ids2``; ``is_negative == (labels[ids1] != labels[ids2])``; a
    non-empty result on a batch with positives and negatives, including the smallest one (2 labels x 2
    items), with at least one positive and one negative pair; valid pairs on a single-label batch (no
    negative pair there); same result for the same input; inputs not modified.
    """

    kind = "pair_miner"
    feat_dim: ClassVar[int] = 8
    deterministic: ClassVar[bool] = True
    expects_pairs: ClassVar[bool] = True

    @pytest.fixture
    def pair_miner_batch(self) -> tuple[Tensor, Tensor]:
        """``(features, labels)``: float ``(16, feat_dim)`` requiring grad, long ``(16,)`` 4 x 4."""
        import torch

        features = torch.randn(16, self.feat_dim, generator=_generator(0)).requires_grad_(True)
        return features, _balanced_labels(4, 4, seed=1)

    @staticmethod
    def check_pairs(result: Any, features: Tensor, labels: Tensor) -> tuple[int, int]:
        """Assert that ``result`` is a valid ``(ids1, ids2, is_negative)``; the numbers of positive and
        negative pairs."""
        import torch

        assert isinstance(result, tuple), f"sample() returned {type(result).__name__}, not a tuple"
        assert len(result) == 3, f"sample() returned {len(result)} items, not (ids1, ids2, is_negative)"
        ids1, ids2, is_negative = result
        for name, t, dtype in (
            ("ids1", ids1, torch.long),
            ("ids2", ids2, torch.long),
            ("is_negative", is_negative, torch.bool),
        ):
            assert isinstance(t, torch.Tensor), f"{name} is a {type(t).__name__}, not a Tensor"
            assert t.dtype == dtype, f"{name} has dtype {t.dtype}, expected {dtype}"
            assert t.ndim == 1, f"{name} has shape {tuple(t.shape)}, expected 1-D"
            assert t.device == features.device, f"{name} is on {t.device}, features on {features.device}"
        assert ids1.shape == ids2.shape == is_negative.shape, (
            f"lengths differ: {ids1.numel()}, {ids2.numel()}, {is_negative.numel()}"
        )
        size = labels.shape[0]
        for name, t in (("ids1", ids1), ("ids2", ids2)):
            outside = t[(t < 0) | (t >= size)].tolist()
            assert not outside, f"{name} holds indices outside range(0, {size}): {_some(outside)}"
        same_item = (ids1 == ids2).nonzero().flatten().tolist()
        assert not same_item, f"a pair of an item with itself at pairs {_some(same_item)}"
        wrong = (is_negative != (labels[ids1] != labels[ids2])).nonzero().flatten().tolist()
        assert not wrong, f"is_negative disagrees with the labels at pairs {_some(wrong)}"
        n_negative = int(is_negative.sum())
        return int(ids1.numel()) - n_negative, n_negative

    def test_returns_valid_pairs(self, component: Any, pair_miner_batch: tuple[Tensor, Tensor]) -> None:
        """Two long index tensors and a bool mask of equal length that agree with the labels."""
        features, labels = pair_miner_batch
        n_pos, n_neg = self.check_pairs(component.sample(features, labels), features, labels)
        if self.expects_pairs:
            assert n_pos > 0, "no positive pair found in a batch of 4 labels x 4 items"
            assert n_neg > 0, "no negative pair found in a batch of 4 labels x 4 items"

    def test_smallest_mixed_batch(self, component: Any) -> None:
        """2 labels x 2 items: valid pairs, both kinds when ``expects_pairs``."""
        import torch

        features = torch.randn(4, self.feat_dim, generator=_generator(2))
        labels = torch.tensor([0, 1, 0, 1])
        n_pos, n_neg = self.check_pairs(component.sample(features, labels), features, labels)
        if self.expects_pairs:
            assert n_pos > 0, "no positive pair found in a batch of 2 labels x 2 items"
            assert n_neg > 0, "no negative pair found in a batch of 2 labels x 2 items"

    def test_single_label_batch(self, component: Any) -> None:
        """A batch without negatives yields valid pairs, none of them negative."""
        import torch

        features = torch.randn(6, self.feat_dim, generator=_generator(3))
        labels = torch.full((6,), 3, dtype=torch.long)
        _, n_neg = self.check_pairs(component.sample(features, labels), features, labels)
        assert n_neg == 0, f"{n_neg} negative pairs found in a batch with a single label"

    def test_deterministic(self, component: Any, pair_miner_batch: tuple[Tensor, Tensor]) -> None:
        """The same batch gives the same pairs (skipped for ``deterministic = False``)."""
        import torch

        if not self.deterministic:
            pytest.skip("declared deterministic = False")
        features, labels = pair_miner_batch
        first = component.sample(features, labels)
        second = component.sample(features, labels)
        for name, a, b in zip(("ids1", "ids2", "is_negative"), first, second, strict=True):
            assert torch.equal(a, b), f"{name} differ between two calls on the same batch"

    def test_does_not_modify_inputs(self, component: Any, pair_miner_batch: tuple[Tensor, Tensor]) -> None:
        """Features and labels are left alone."""
        features, labels = pair_miner_batch
        before_f, before_l = features.detach().clone(), labels.clone()
        component.sample(features, labels)
        _assert_unchanged(before_f, features.detach(), "features")
        _assert_unchanged(before_l, labels, "labels")


# ---- PairwiseModel --------------------------------------------------------------------------------------


class PairwiseModelConformance(ComponentConformance):
    """Checks a :class:`~omlcore.protocols.PairwiseModel`.

    A subclass provides the component and the shape of one input item, ``input_shape`` (default
    ``(3, 32, 32)``; a model over embeddings sets e.g. ``(16,)``), or a ``pair_input`` fixture returning
    ``(x1, x2)`` float batches ``(B, ...)`` with ``B >= 2``. ``atol`` bounds how far a row may move when
    the batch around it changes.

    Checked: ``forward`` returns float ``(B,)`` finite logits on the input's device; in ``eval()`` mode
    ``predict`` returns float ``(B,)`` finite scores, deterministic, with row ``i`` independent of the
    other rows and of their order; inputs are not modified; in ``train()`` mode gradients of ``forward``
    reach the trainable parameters (skipped when there are none).
    """

    kind = "pairwise_model"
    input_shape: ClassVar[tuple[int, ...]] = (3, 32, 32)
    batch_size: ClassVar[int] = 4
    atol: ClassVar[float] = 1e-5

    @pytest.fixture
    def pair_input(self) -> tuple[Tensor, Tensor]:
        """Two random float batches ``(batch_size, *input_shape)``."""
        import torch

        shape = (self.batch_size, *self.input_shape)
        return torch.randn(shape, generator=_generator(0)), torch.randn(shape, generator=_generator(1))

    def _predict_eval(self, component: Any, x1: Tensor, x2: Tensor) -> Tensor:
        import torch

        _set_eval(component)
        with torch.no_grad():
            out: Tensor = component.predict(x1, x2)
        return out

    def test_forward_gives_one_logit_per_pair(self, component: Any, pair_input: tuple[Tensor, Tensor]) -> None:
        """``forward(x1, x2)`` is a finite float ``(B,)`` on the input's device."""
        import torch

        x1, x2 = pair_input
        _set_eval(component)
        with torch.no_grad():
            out = component.forward(x1, x2)
        assert tuple(out.shape) == (x1.shape[0],), f"forward returned shape {tuple(out.shape)}, expected (B,)"
        assert out.is_floating_point(), f"forward returned {out.dtype}, expected a float tensor"
        assert out.device == x1.device, f"forward returned a tensor on {out.device}, the input is on {x1.device}"
        assert bool(torch.isfinite(out).all()), "forward returned non-finite logits"

    def test_predict_shape_and_determinism(self, component: Any, pair_input: tuple[Tensor, Tensor]) -> None:
        """``predict`` is a finite float ``(B,)``, the same on a second call."""
        import torch

        x1, x2 = pair_input
        first = self._predict_eval(component, x1, x2)
        assert tuple(first.shape) == (x1.shape[0],), f"predict returned shape {tuple(first.shape)}, expected (B,)"
        assert first.is_floating_point(), f"predict returned {first.dtype}, expected a float tensor"
        assert first.device == x1.device, f"predict returned a tensor on {first.device}, the input is on {x1.device}"
        assert bool(torch.isfinite(first).all()), "predict returned non-finite scores"
        assert torch.equal(first, self._predict_eval(component, x1, x2)), "predict is not deterministic in eval()"

    def test_rows_independent_of_the_batch(self, component: Any, pair_input: tuple[Tensor, Tensor]) -> None:
        """Reversing the batch reverses the scores; a single pair scores as it did in the batch."""
        import torch

        x1, x2 = pair_input
        full = self._predict_eval(component, x1, x2)
        flipped = self._predict_eval(component, x1.flip(0), x2.flip(0)).flip(0)
        torch.testing.assert_close(flipped, full, rtol=1e-4, atol=self.atol)
        single = self._predict_eval(component, x1[1:2], x2[1:2])
        torch.testing.assert_close(single, full[1:2], rtol=1e-4, atol=self.atol)

    def test_does_not_modify_inputs(self, component: Any, pair_input: tuple[Tensor, Tensor]) -> None:
        """``forward`` and ``predict`` leave ``x1`` and ``x2`` as they were."""
        x1, x2 = pair_input
        before = (x1.clone(), x2.clone())
        self._predict_eval(component, x1, x2)
        _assert_unchanged(before[0], x1, "x1")
        _assert_unchanged(before[1], x2, "x2")

    def test_gradients_reach_trainable_parameters(self, component: Any, pair_input: tuple[Tensor, Tensor]) -> None:
        """In ``train()`` mode a loss on ``forward``'s logits gives finite, not all-zero gradients."""
        import torch

        params = _trainable_parameters(component)
        if not params:
            pytest.skip("the pairwise model has no trainable parameters")
        if callable(getattr(component, "train", None)):
            component.train()
        x1, x2 = pair_input
        logits = component.forward(x1, x2)
        target = (torch.arange(logits.shape[0]) % 2).to(logits.dtype)
        _backward(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, "no trainable parameter received a gradient"
        assert all(bool(torch.isfinite(g).all()) for g in grads), "non-finite parameter gradients"
        assert any(bool(g.abs().sum() > 0) for g in grads), "all parameter gradients are zero"
