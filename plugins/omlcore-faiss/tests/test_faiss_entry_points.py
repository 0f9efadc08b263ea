"""The distribution's entry points, the registry's view of them and ``omlcore plugins check``."""

from importlib import metadata

import omlcore_faiss
import pytest
from omlcore_faiss import FaissIvfKnn, FaissKnn

import omlcore
from omlcore.cli import main as omlcore_main
from omlcore.protocols import KnnBackend
from omlcore.registry import KINDS, Registry

DIST = "omlcore-faiss"


def test_version_matches_metadata() -> None:
    assert omlcore_faiss.__version__ == metadata.version(DIST)


def test_entry_points() -> None:
    group = KINDS["knn"].group
    names = {ep.name: ep.value for ep in metadata.distribution(DIST).entry_points if ep.group == group}
    assert names == {"faiss": "omlcore_faiss.flat:FaissKnn", "faiss_ivf": "omlcore_faiss.ivf:FaissIvfKnn"}


@pytest.mark.parametrize(("name", "cls"), [("faiss", FaissKnn), ("faiss_ivf", FaissIvfKnn)])
def test_resolve_and_build(installed_registry: Registry, name: str, cls: type) -> None:
    assert installed_registry.resolve("knn", name) is cls
    built = omlcore.build("knn", {"name": name, "args": {"metric": "cosine", "num_threads": 1}})
    assert isinstance(built, cls)
    assert isinstance(built, KnnBackend)
    assert built.metric == "cosine"


def test_plugins_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert omlcore_main(["plugins", "check"]) == 0
    out = capsys.readouterr().out
    assert "faiss" in out
