"""The conformance kit (:mod:`omlcore.testing.conformance`) checked against itself.

1. Every suite is subclassed for the reference implementations in ``toys.py``, named through a sandbox
   registry (``kind_name``/``args``) or given directly (a ``component``/``make_component`` fixture);
   all of them must pass.
2. Deliberately broken variants are run through the suites in one inner pytest session (a
   subprocess, read back from its JUnit report); exactly the checks that the defect breaks must fail,
   and the protocol check must still pass. Misused suites must say what to fix.
3. Importing the kit stays torch-free, the suites are not collected by themselves, and the lazy
   exports of :mod:`omlcore.testing` are the suites.

Nothing here imports torch at module level (the core-only session collects this file and deselects it
by the ``integration`` marker); ``toys`` is loaded by a fixture.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import pytest

from omlcore.registry import Registry
from omlcore.testing import PluginSandbox, conformance
from omlcore.testing.conformance import (
    BatchSamplerConformance,
    ExperimentLoggerConformance,
    ExtractorConformance,
    KnnBackendConformance,
    LossConformance,
    LRSchedulerConformance,
    MinerConformance,
    OptimizerConformance,
    PairMinerConformance,
    PairwiseModelConformance,
    RetrievalMetricConformance,
    RetrievalPostprocessorConformance,
    TransformFactoryConformance,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
SUITES = tuple(name for name in conformance.__all__ if name != "ComponentConformance")


@pytest.fixture(scope="module")
def toys() -> ModuleType:
    """``tests/integration/toys.py``, loaded by path so that it works under any pytest import mode."""
    pytest.importorskip("torch")
    name = "omlcore_conformance_toys"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "toys.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class ToyPlugins:
    """Mixin: the suite builds ``kind_name`` from a sandbox where the toys are installed entry points."""

    @pytest.fixture
    def conformance_registry(self, omlcore_sandbox: PluginSandbox, toys: ModuleType) -> Registry:
        registry: Registry = toys.install(omlcore_sandbox)
        return registry


# ---- 1. the reference implementations pass --------------------------------------------------------------


class TestContrastiveLoss(ToyPlugins, LossConformance):
    kind_name = "toy_contrastive"
    args = {"margin": 1.0}


class TestCentroidLoss(ToyPlugins, LossConformance):
    kind_name = "toy_centroid"
    args = {"num_classes": 4, "feat_dim": 8}


class TestAllTripletsMiner(ToyPlugins, MinerConformance):
    kind_name = "toy_all_triplets"


class TestAllPairsMiner(ToyPlugins, PairMinerConformance):
    kind_name = "toy_all_pairs"


class TestDifferenceSiamese(ToyPlugins, PairwiseModelConformance):
    kind_name = "toy_difference_siamese"
    args = {"in_features": 48}
    input_shape = (3, 4, 4)


class TestDifferenceSiameseOnEmbeddings(PairwiseModelConformance):
    input_shape = (6,)

    @pytest.fixture
    def component(self, toys: ModuleType) -> Any:
        return toys.DifferenceSiamese(in_features=6, seed=2)


class TestLinearExtractor(ToyPlugins, ExtractorConformance):
    kind_name = "toy_linear"
    args = {"in_features": 48, "feat_dim": 16}
    input_shape = (3, 4, 4)


class TestLinearExtractorGivenDirectly(ExtractorConformance):
    input_shape = (5,)
    batch_size = 3

    @pytest.fixture
    def component(self, toys: ModuleType) -> Any:
        return toys.LinearExtractor(in_features=5, feat_dim=7, seed=3)


class TestPKSampler(ToyPlugins, BatchSamplerConformance):
    kind_name = "toy_pk"
    args = {"n_labels": 3, "n_instances": 2}
    seed_arg = "seed"


class TestPKSamplerGivenDirectly(BatchSamplerConformance):
    seed_arg = "seed"

    @pytest.fixture
    def labels(self) -> list[int]:
        return [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4]  # label 4 has one item: drawn with replacement

    @pytest.fixture
    def make_component(self, toys: ModuleType) -> Callable[..., Any]:
        return lambda **kwargs: toys.PKSampler(n_labels=2, n_instances=3, **kwargs)


class TestBruteForceKnn(ToyPlugins, KnnBackendConformance):
    kind_name = "toy_brute_force"

    @pytest.fixture(params=["l2", "cosine", "dot"])
    def component_args(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"metric": request.param, "query_chunk": 4}


class TestCmcMetric(ToyPlugins, RetrievalMetricConformance):
    kind_name = "toy_cmc"
    args = {"top_k": [1, 5]}
    expected_keys = ("OVERALL/cmc/1", "OVERALL/cmc/5")


class TestIdentityPostprocessor(ToyPlugins, RetrievalPostprocessorConformance):
    kind_name = "toy_identity"
    args = {"top_n": 5}


class TestParityRerankPostprocessor(ToyPlugins, RetrievalPostprocessorConformance):
    kind_name = "toy_parity_rerank"
    args = {"top_n": 4, "penalty": 0.5}


class TestInMemoryLogger(ToyPlugins, ExperimentLoggerConformance):
    kind_name = "toy_memory"

    def read_back_metrics(self, logger: Any) -> Mapping[str, Sequence[tuple[int | None, float]]]:
        return logger.metrics

    def read_back_params(self, logger: Any) -> Mapping[str, Any]:
        return logger.params

    def read_back_artifacts(self, logger: Any) -> list[str]:
        return list(logger.artifacts)


class TestJsonlFileLogger(ToyPlugins, ExperimentLoggerConformance):
    """The pattern for a real backend: an offline run directory under ``tmp_path``, read back from disk."""

    kind_name = "toy_jsonl"

    @pytest.fixture
    def component_args(self, tmp_path: Path, toys: ModuleType) -> dict[str, Any]:
        self.read_run = toys.read_run
        self.run_dir = tmp_path / "logs" / "conformance"
        return {"save_dir": str(tmp_path / "logs"), "run_name": "conformance"}

    def _run(self) -> dict[str, Any]:
        run: dict[str, Any] = self.read_run(self.run_dir)
        return run

    def read_back_metrics(self, logger: Any) -> Mapping[str, Sequence[tuple[int | None, float]]]:
        assert logger.run_dir == self.run_dir
        return self._run()["metrics"]

    def read_back_params(self, logger: Any) -> Mapping[str, Any]:
        return self._run()["params"]

    def read_back_artifacts(self, logger: Any) -> list[str]:
        return self._run()["artifacts"]


class TestEvalTransform(ToyPlugins, TransformFactoryConformance):
    kind_name = "toy_eval"
    args = {"size": 8, "mean": 0.5, "std": 0.25}
    expected_shape = (3, 8, 8)

    @pytest.fixture
    def sample_input(self) -> Any:
        import torch

        return torch.randint(0, 256, (10, 12, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


class TestEvalTransformOnArrays(TestEvalTransform):
    """The same factory fed a numpy image (exercises the suite's array comparison)."""

    @pytest.fixture
    def sample_input(self) -> Any:
        np = pytest.importorskip("numpy")
        return np.random.default_rng(0).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)


class TestTrainTransform(ToyPlugins, TransformFactoryConformance):
    kind_name = "toy_train"
    args = {"size": 6}
    expected_shape = (3, 6, 6)
    deterministic = False

    @pytest.fixture
    def sample_input(self) -> Any:
        import torch

        return torch.full((6, 6, 3), 128, dtype=torch.uint8)


class TestMomentumSGD(ToyPlugins, OptimizerConformance):
    kind_name = "toy_momentum_sgd"
    args = {"lr": 0.05, "momentum": 0.9}


class TestTorchAdamThroughRegistry(ToyPlugins, OptimizerConformance):
    kind_name = "torch_adam"
    args = {"lr": 0.1}


class TestMomentumSGDGivenDirectly(OptimizerConformance):
    @pytest.fixture
    def make_component(self, toys: ModuleType) -> Callable[..., Any]:
        return lambda params: toys.MomentumSGD(params, lr=0.02)


class TestLinearWarmup(ToyPlugins, LRSchedulerConformance):
    kind_name = "toy_linear_warmup"
    args = {"warmup_steps": 4}
    expected_lrs = (0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1)


class TestTorchStepLR(ToyPlugins, LRSchedulerConformance):
    kind_name = "torch_step"
    args = {"step_size": 3, "gamma": 0.5}
    expected_lrs = (0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025)


class TestTorchReduceOnPlateau(ToyPlugins, LRSchedulerConformance):
    """A scheduler whose ``step`` needs the monitored value: the ``step_scheduler`` hook."""

    kind_name = "torch_plateau"
    args = {"patience": 1, "factor": 0.5}
    expected_lrs = (0.1, 0.1, 0.1, 0.05, 0.05, 0.025)

    def step_scheduler(self, scheduler: Any, step: int) -> None:
        scheduler.step(1.0)  # never improves


# ---- 2. broken implementations fail exactly the checks they break --------------------------------------

HEADER = f"""\
import sys

import pytest
import torch

sys.path.insert(0, {str(HERE)!r})
import toys
from omlcore.testing.conformance import *
"""

BROKEN: dict[str, tuple[str, set[str]]] = {
    "pairwise model mixes the rows of the batch": (
        """
        class Bad(toys.DifferenceSiamese):
            def forward(self, x1, x2):
                logits = super().forward(x1, x2)
                return logits - logits.mean()

        class TestBad(PairwiseModelConformance):
            input_shape = (6,)

            @pytest.fixture
            def component(self):
                return Bad(in_features=6)
        """,
        {"test_rows_independent_of_the_batch"},
    ),
    "pairwise model returns (B, 1)": (
        """
        class Bad(toys.DifferenceSiamese):
            def forward(self, x1, x2):
                return super().forward(x1, x2)[:, None]

        class TestBad(PairwiseModelConformance):
            input_shape = (6,)

            @pytest.fixture
            def component(self):
                return Bad(in_features=6)
        """,
        {
            "test_forward_gives_one_logit_per_pair",
            "test_predict_shape_and_determinism",
            "test_gradients_reach_trainable_parameters",
        },
    ),
    "loss returns shape (1,)": (
        """
        class Bad(toys.ContrastiveLoss):
            def forward(self, features, labels):
                return super().forward(features, labels).reshape(1)

        class TestBad(LossConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_returns_finite_float_scalar", "test_two_labels_two_items"},
    ),
    "loss detached from the graph": (
        """
        class Bad(toys.ContrastiveLoss):
            def forward(self, features, labels):
                return super().forward(features.detach(), labels)

        class TestBad(LossConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_gradients_flow_to_features", "test_two_labels_two_items"},
    ),
    "loss normalises features in place": (
        """
        class Bad(toys.ContrastiveLoss):
            def forward(self, features, labels):
                with torch.no_grad():
                    features.div_(features.norm(dim=1, keepdim=True))
                return super().forward(features, labels)

        class TestBad(LossConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_does_not_modify_inputs"},
    ),
    "loss logs tensors": (
        """
        class Bad(toys.ContrastiveLoss):
            def forward(self, features, labels):
                loss = super().forward(features, labels)
                self.last_logs = {"loss": loss.detach()}
                return loss

        class TestBad(LossConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_last_logs_is_str_to_float_mapping"},
    ),
    "miner returns self-pairs": (
        """
        class Bad(toys.AllTripletsMiner):
            def sample(self, features, labels):
                a, p, n = super().sample(features, labels)
                return a, a.clone(), n

        class TestBad(MinerConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_returns_valid_triplets", "test_smallest_mixed_batch"},
    ),
    "miner returns int32 indices": (
        """
        class Bad(toys.AllTripletsMiner):
            def sample(self, features, labels):
                return tuple(t.int() for t in super().sample(features, labels))

        class TestBad(MinerConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_returns_valid_triplets", "test_smallest_mixed_batch", "test_single_label_batch_gives_no_triplets"},
    ),
    "kNN rows not sorted": (
        """
        class Bad(toys.BruteForceKnn):
            def search(self, queries, gallery, k):
                d, i = super().search(queries, gallery, k)
                return d.flip(1), i.flip(1)

        class TestBad(KnnBackendConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_shapes_and_sorted_rows", "test_matches_brute_force", "test_ties_broken_by_smaller_index"},
    ),
    "kNN breaks ties by the larger index": (
        """
        class Bad(toys.BruteForceKnn):
            def search(self, queries, gallery, k):
                d, i = super().search(queries, gallery.flip(0), k)
                return d, gallery.shape[0] - 1 - i

        class TestBad(KnnBackendConformance):
            @pytest.fixture
            def component(self):
                return Bad(metric="cosine")
        """,
        {"test_ties_broken_by_smaller_index"},
    ),
    "extractor normalises over the batch": (
        """
        class Bad(toys.LinearExtractor):
            def extract(self, x):
                out = super().extract(x)
                return out - out.mean(dim=0, keepdim=True)

        class TestBad(ExtractorConformance):
            input_shape = (6,)

            @pytest.fixture
            def component(self):
                return Bad(in_features=6, feat_dim=4)
        """,
        {"test_rows_independent_of_the_batch"},
    ),
    "extractor announces the wrong feat_dim": (
        """
        class TestBad(ExtractorConformance):
            input_shape = (6,)

            @pytest.fixture
            def component(self):
                extractor = toys.LinearExtractor(in_features=6, feat_dim=4)
                extractor.feat_dim = 5
                return extractor
        """,
        {"test_output_shape_dtype_and_device"},
    ),
    "sampler's len() is off by one": (
        """
        class Bad(toys.PKSampler):
            def __len__(self):
                return super().__len__() + 1

            def __iter__(self):
                for _, batch in zip(range(super().__len__()), super().__iter__()):
                    yield batch

        class TestBad(BatchSamplerConformance):
            seed_arg = "seed"

            @pytest.fixture
            def make_component(self):
                return lambda **kwargs: Bad(**kwargs)
        """,
        {"test_len_matches_batches_yielded"},
    ),
    "sampler ignores its seed (global RNG)": (
        """
        import random

        class Bad(toys.PKSampler):
            def __iter__(self):
                order = sorted(self._by_label)
                random.shuffle(order)
                for b in range(len(self)):
                    chosen = order[b * self.n_labels : (b + 1) * self.n_labels]
                    yield [i for label in chosen for i in self._by_label[label][: self.n_instances]]

        class TestBad(BatchSamplerConformance):
            seed_arg = "seed"

            @pytest.fixture
            def make_component(self):
                return lambda **kwargs: Bad(**kwargs)
        """,
        {"test_reproducible_for_same_seed_and_epoch"},
    ),
    "sampler yields numpy-free but invalid indices": (
        """
        class Bad(toys.PKSampler):
            def __iter__(self):
                for batch in super().__iter__():
                    yield [*batch, 10_000]

        class TestBad(BatchSamplerConformance):
            @pytest.fixture
            def make_component(self):
                return lambda **kwargs: Bad(**kwargs)
        """,
        {"test_yields_lists_of_valid_indices", "test_len_matches_batches_yielded"},
    ),
    "metric depends on the batch split": (
        """
        class Bad(toys.CmcMetric):
            def compute(self):
                self._batches = self._batches[:1]  # forgets all but the first batch
                return super().compute()

        class TestBad(RetrievalMetricConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_independent_of_batch_split_and_order"},
    ),
    "metric reset() does nothing": (
        """
        class Bad(toys.CmcMetric):
            def reset(self):
                pass

        class TestBad(RetrievalMetricConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_reset_clears_state"},
    ),
    "metric normalises embeddings in place": (
        """
        class Bad(toys.CmcMetric):
            def update(self, batch):
                batch["embeddings"].div_(batch["embeddings"].norm(dim=1, keepdim=True))
                super().update(batch)

        class TestBad(RetrievalMetricConformance):
            @pytest.fixture
            def component(self):
                return Bad()
        """,
        {"test_update_does_not_modify_batch"},
    ),
    "postprocessor rescales every column": (
        """
        class Bad(toys.IdentityPostprocessor):
            def process(self, distances, retrieved, query_ids, dataset):
                return distances * 2.0, retrieved

        class TestBad(RetrievalPostprocessorConformance):
            @pytest.fixture
            def component(self):
                return Bad(top_n=3)
        """,
        {"test_columns_after_top_n_unchanged"},
    ),
    "postprocessor leaves rows unsorted": (
        """
        class Bad(toys.IdentityPostprocessor):
            def process(self, distances, retrieved, query_ids, dataset):
                d, r = distances.clone(), retrieved.clone()
                n = min(self.top_n, d.shape[1])
                d[:, :n], r[:, :n] = d[:, :n].flip(1), r[:, :n].flip(1)
                return d, r

        class TestBad(RetrievalPostprocessorConformance):
            @pytest.fixture
            def component(self):
                return Bad(top_n=3)
        """,
        {"test_keeps_shapes_and_sorts_rows", "test_fewer_columns_than_top_n"},
    ),
    "postprocessor brings in other items": (
        """
        class Bad(toys.IdentityPostprocessor):
            def process(self, distances, retrieved, query_ids, dataset):
                r = retrieved.clone()
                r[:, 0] = 999
                return distances, r

        class TestBad(RetrievalPostprocessorConformance):
            @pytest.fixture
            def component(self):
                return Bad(top_n=3)
        """,
        {"test_top_is_a_reordering"},
    ),
    "optimizer drops its state on load": (
        """
        class Bad(toys.MomentumSGD):
            def load_state_dict(self, state_dict):
                super().load_state_dict(state_dict)
                self.state.clear()

        class TestBad(OptimizerConformance):
            @pytest.fixture
            def make_component(self):
                return lambda params: Bad(params, lr=0.05)
        """,
        {"test_state_dict_round_trip"},
    ),
    "optimizer climbs": (
        """
        class TestBad(OptimizerConformance):
            @pytest.fixture
            def make_component(self):
                return lambda params: toys.MomentumSGD(params, lr=-0.05)
        """,
        {"test_steps_reduce_a_quadratic"},
    ),
    "scheduler forgets its step count": (
        """
        class Bad(toys.LinearWarmup):
            def load_state_dict(self, state_dict):
                super().load_state_dict({**state_dict, "last_step": 0})

        class TestBad(LRSchedulerConformance):
            @pytest.fixture
            def make_component(self):
                return lambda optimizer: Bad(optimizer, warmup_steps=6)
        """,
        {"test_state_dict_round_trip"},
    ),
    "scheduler does not follow its documented schedule": (
        """
        class TestBad(LRSchedulerConformance):
            expected_lrs = (0.02, 0.04, 0.06, 0.08, 0.1)

            @pytest.fixture
            def make_component(self):
                return lambda optimizer: toys.LinearWarmup(optimizer, warmup_steps=2)
        """,
        {"test_schedule_values"},
    ),
    "logger loses a step": (
        """
        class Bad(toys.InMemoryLogger):
            def log_metrics(self, metrics, step=None):
                if step != 1:
                    super().log_metrics(metrics, step)

        class TestBad(ExperimentLoggerConformance):
            @pytest.fixture
            def component(self):
                return Bad()

            def read_back_metrics(self, logger):
                return logger.metrics
        """,
        {"test_logged_metrics_read_back"},
    ),
    "logger stores rounded values and no artifacts": (
        """
        class Bad(toys.InMemoryLogger):
            def log_metrics(self, metrics, step=None):
                super().log_metrics({k: round(v, 1) for k, v in metrics.items()}, step)

            def log_artifact(self, path, name=None):
                pass

        class TestBad(ExperimentLoggerConformance):
            @pytest.fixture
            def component(self):
                return Bad()

            def read_back_metrics(self, logger):
                return logger.metrics

            def read_back_artifacts(self, logger):
                return list(logger.artifacts)
        """,
        {"test_logged_metrics_read_back", "test_log_artifact"},
    ),
    "logger suite without read-back": (
        """
        class TestBad(ExperimentLoggerConformance):
            @pytest.fixture
            def component(self):
                return toys.InMemoryLogger()
        """,
        {"test_logged_metrics_read_back"},
    ),
    "random transform declared deterministic": (
        """
        class Noisy(toys.ResizeNormalize):
            def __call__(self, sample):
                out = super().__call__(sample)
                return out + 1e-3 * torch.rand(out.shape)

        class TestBad(TransformFactoryConformance):
            @pytest.fixture
            def make_component(self):
                return lambda: Noisy(5, 0.5, 0.25)

            @pytest.fixture
            def sample_input(self):
                return torch.arange(5 * 5 * 3, dtype=torch.uint8).reshape(5, 5, 3)
        """,
        {"test_deterministic_for_evaluation"},
    ),
    "transform writes into its input": (
        """
        class Bad(toys.ResizeNormalize):
            def __call__(self, sample):
                sample[0, 0, 0] = 255
                return super().__call__(sample)

        class TestBad(TransformFactoryConformance):
            @pytest.fixture
            def make_component(self):
                return lambda: Bad(4, 0.5, 0.25)

            @pytest.fixture
            def sample_input(self):
                return torch.zeros(5, 5, 3, dtype=torch.uint8)
        """,
        {"test_does_not_modify_input"},
    ),
}


MISUSED: dict[str, str] = {
    "no component": """
        class TestNothing(LossConformance):
            pass
        """,
    "bad args and unknown name": """
        class Toys:
            @pytest.fixture
            def conformance_registry(self, omlcore_sandbox):
                return toys.install(omlcore_sandbox)

        class TestTypo(Toys, LossConformance):
            kind_name = "toy_contrastive"
            args = {"margn": 0.1}

        class TestUnknown(Toys, MinerConformance):
            kind_name = "toy_all_triplet"
        """,
}
"""Suites used wrongly by a plugin's tests: they must say what to fix."""


class InnerSession:
    """Every case of :data:`BROKEN` and :data:`MISUSED`, one test module each, run in ONE pytest
    subprocess; outcomes and failure texts come from its JUnit XML report.

    A subprocess rather than ``pytester.inline_run``: an in-process run drops the modules it imported
    when it ends, and torch refuses to import some of its own submodules a second time.
    """

    def __init__(self, root: Path) -> None:
        self.modules: dict[str, str] = {}
        for i, (case, source) in enumerate([*((c, s) for c, (s, _) in BROKEN.items()), *MISUSED.items()]):
            module = f"test_case_{i:02d}"
            (root / f"{module}.py").write_text(HEADER + textwrap.dedent(source))
            self.modules[case] = module
        # Its own (empty) config: otherwise a temp folder inside the repository (nox's TMPDIR) makes the
        # inner session pick up the repository's pyproject.toml as its rootdir and config.
        (root / "pytest.ini").write_text("[pytest]\n")
        report = root / "report.xml"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "--tb=line",
                f"--junitxml={report}",
                str(root),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert report.exists(), done.stdout + done.stderr
        self.outcomes: dict[tuple[str, str], tuple[str, str]] = {}
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            module, cls = case.get("classname", "").rsplit(".", 1)
            module = module.rsplit(".", 1)[-1]  # the classname is dotted from the rootdir
            outcome, text = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                    text = f"{child.get('message', '')}\n{child.text or ''}"
            self.outcomes[(module, f"{cls}::{case.get('name')}")] = (outcome, text)

    def results(self, case: str) -> dict[str, tuple[str, str]]:
        """``"Class::test" -> (outcome, failure text)`` for the tests of ``case``."""
        module = self.modules[case]
        found = {test: result for (mod, test), result in self.outcomes.items() if mod == module}
        assert found, f"{case}: nothing ran in {module}"
        return found


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory, toys: ModuleType) -> InnerSession:
    """The inner pytest session over the broken and misused cases (run once per module)."""
    return InnerSession(tmp_path_factory.mktemp("conformance-inner"))


@pytest.mark.parametrize("case", list(BROKEN))
def test_suite_catches_broken_implementation(inner: InnerSession, case: str) -> None:
    """Exactly the expected checks fail; the protocol check still passes (the defects are behavioural)."""
    results = inner.results(case)
    expected = BROKEN[case][1]
    failed = {test.split("::")[-1] for test, (outcome, _) in results.items() if outcome in ("failed", "error")}
    assert failed == expected, f"{case}: failed {sorted(failed)}, expected {sorted(expected)}"
    assert results["TestBad::test_satisfies_protocol"][0] == "passed"


def test_failure_messages_say_what_is_wrong(inner: InnerSession) -> None:
    """A failing check explains itself (the kit's asserts carry messages and are rewritten by pytest)."""
    outcome, text = inner.results("miner returns self-pairs")["TestBad::test_returns_valid_triplets"]
    assert outcome == "failed"
    assert "AssertionError: anchor equals positive at triplets [0, 1, 2, 3, 4, 5, 6, 7, ...] (576 in all)" in text
    assert "assert not [0, 1, 2, 3, 4, 5, ...]" in text  # pytest's own explanation: the assert was rewritten
    outcome, text = inner.results("kNN breaks ties by the larger index")["TestBad::test_ties_broken_by_smaller_index"]
    assert "k=5: ties not broken by the smaller gallery index" in text


def test_suite_without_a_component_explains_what_to_set(inner: InnerSession) -> None:
    """A subclass that names nothing errors with how to fix it; the entry-point check is skipped."""
    results = inner.results("no component")
    assert results.pop("TestNothing::test_entry_point_resolves")[0] == "skipped"
    assert {outcome for outcome, _ in results.values()} == {"error"}
    hint = "TestNothing names no component: set kind_name = '<entry-point name>'"
    assert all(hint in text for _, text in results.values())


def test_registry_check_catches_bad_args_and_unknown_names(inner: InnerSession) -> None:
    """``test_entry_point_resolves`` fails for a misspelt argument and for a name nobody provides."""
    results = inner.results("bad args and unknown name")
    outcome, text = results["TestTypo::test_entry_point_resolves"]
    assert outcome == "failed"
    assert "args rejected by the registry" in text
    assert "loss.args.margn" in text
    outcome, text = results["TestUnknown::test_entry_point_resolves"]
    assert outcome == "failed"
    assert "'toy_all_triplet' is not listed in omlcore.miners" in text


def test_check_helpers_can_be_called_directly(toys: ModuleType) -> None:
    """The public static checks raise ``AssertionError`` on bad results and accept good ones."""
    import torch

    features, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    good = toys.AllTripletsMiner().sample(features, labels)
    assert MinerConformance.check_triplets(good, features, labels) == 8
    with pytest.raises(AssertionError, match="anchor equals positive"):
        MinerConformance.check_triplets((good[0], good[0], good[2]), features, labels)
    with pytest.raises(AssertionError, match="negative with the same label"):
        MinerConformance.check_triplets((good[0], good[1], good[1]), features, labels)
    LossConformance.check_scalar(torch.tensor(0.5), features)
    with pytest.raises(AssertionError, match=r"shape \(1,\)"):
        LossConformance.check_scalar(torch.tensor([0.5]), features)
    with pytest.raises(AssertionError, match="dtype"):
        LossConformance.check_scalar(torch.tensor(0.5, dtype=torch.float64), features)


# ---- 3. the kit itself ----------------------------------------------------------------------------------


def test_importing_the_kit_does_not_import_torch() -> None:
    """``omlcore.testing.conformance`` (and the lazy exports of ``omlcore.testing``) stay torch-free."""
    code = (
        "import sys\n"
        "import omlcore.testing.conformance\n"
        "from omlcore.testing import LossConformance, KnnBackendConformance\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'lightning') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('torch-free')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch-free"


def test_suites_are_not_collected_on_their_own(pytester: pytest.Pytester) -> None:
    """Importing every suite into a test module collects nothing: only ``Test*`` subclasses run."""
    pytester.makepyfile(test_only_imports="from omlcore.testing.conformance import *\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_lazy_exports_are_the_suites() -> None:
    """``from omlcore.testing import XConformance`` gives the same classes as the module."""
    import omlcore.testing
    from omlcore.testing import conformance

    assert set(SUITES) <= set(omlcore.testing.__all__)
    for name in (*SUITES, "ComponentConformance"):
        assert getattr(omlcore.testing, name) is getattr(conformance, name)
        assert name in conformance.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        omlcore.testing.Nope  # noqa: B018


def test_every_suite_is_subclassed_here() -> None:
    """This file exercises every suite."""
    module = sys.modules[__name__]
    tested = {
        base.__name__
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__name__.startswith("Test")
        for base in cls.__mro__
    }
    assert set(SUITES) <= tested, sorted(set(SUITES) - tested)
