"""The embeddings cache: every input that changes embeddings changes the key, stale files are refused with
the differences named, writes are atomic, and unchanged weights are not re-hashed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from omlcore_reranking import EmbeddingsCache, RerankingError, StaleEmbeddingsCacheError, embeddings_cache_key
from omlcore_reranking import cache as cache_module
from omlcore_reranking.cache import files_stat_digest, key_differences


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Any]:
    weights = tmp_path / "extractor.pth"
    weights.write_bytes(b"weights v1")
    csv = tmp_path / "df.csv"
    csv.write_text("label,path,split,is_query,is_gallery\n0,a.png,train,,\n")
    return {
        "extractor": {"name": "vit", "args": {"arch": "vits16", "weights": str(weights), "normalise_features": False}},
        "transforms": {"name": "norm_resize_torch", "args": {"im_size": 224}},
        "csv": csv,
        "weights": weights,
        "folder": tmp_path,
    }


def _key(inputs: dict[str, Any], **over: Any) -> dict[str, Any]:
    args = {"extractor": inputs["extractor"], "transforms": inputs["transforms"], "csv": inputs["csv"]}
    args.update(over)
    return embeddings_cache_key(**args)


def test_round_trip_and_reuse(inputs: dict[str, Any]) -> None:
    cache = EmbeddingsCache(inputs["folder"] / "cache" / "train.pt")
    emb = torch.randn(5, 3)
    calls: list[int] = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return emb

    got, hit = cache.get_or_compute(cache.key(**_args(inputs)), compute, n_rows=5)
    assert not hit
    assert torch.equal(got, emb)
    got, hit = cache.get_or_compute(cache.key(**_args(inputs)), compute, n_rows=5)
    assert hit
    assert torch.equal(got, emb)
    assert calls == [1]


def _args(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"extractor": inputs["extractor"], "transforms": inputs["transforms"], "csv": inputs["csv"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("weights_content", "files."),
        ("extractor_args", "extractor.args.normalise_features"),
        ("transforms", "transforms.args.im_size"),
        ("csv", "csv.sha256"),
        ("extra", "extra.precision"),
    ],
)
def test_a_stale_cache_is_refused_naming_what_changed(inputs: dict[str, Any], change: str, field: str) -> None:
    cache = EmbeddingsCache(inputs["folder"] / "emb.pt")
    cache.save(cache.key(**_args(inputs), extra={"precision": "32"}), torch.zeros(1, 2))
    extra = {"precision": "32"}
    if change == "weights_content":
        inputs["weights"].write_bytes(b"weights v2, other size")
    elif change == "extractor_args":
        inputs["extractor"]["args"]["normalise_features"] = True
    elif change == "transforms":
        inputs["transforms"] = {"name": "norm_resize_torch", "args": {"im_size": 256}}
    elif change == "csv":
        inputs["csv"].write_text("label,path,split,is_query,is_gallery\n1,a.png,train,,\n")
    elif change == "extra":
        extra = {"precision": "16-mixed"}
    key = cache.key(**_args(inputs), extra=extra)
    with pytest.raises(StaleEmbeddingsCacheError) as info:
        cache.load(key)
    assert any(c.startswith(field) for c in info.value.changes), info.value.changes
    assert "was not used" in str(info.value)
    assert "refresh" in str(info.value)
    with pytest.raises(StaleEmbeddingsCacheError):
        cache.get_or_compute(key, lambda: pytest.fail("must not compute silently over a stale cache"))
    refreshed = EmbeddingsCache(cache.path, refresh=True)
    _emb, hit = refreshed.get_or_compute(refreshed.key(**_args(inputs), extra=extra), lambda: torch.ones(1, 2))
    assert not hit
    assert torch.equal(EmbeddingsCache(cache.path).load(key), torch.ones(1, 2))  # type: ignore[arg-type]


def test_code_versions_are_part_of_the_key(inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    before = _key(inputs)
    original = torch.__version__
    assert before["versions"]["omlcore-reranking"] == "0.1.0"
    assert before["versions"]["torch"] == original
    monkeypatch.setattr(torch, "__version__", "0.0.0-test")
    after = _key(inputs)
    assert key_differences(before, after) == [f"versions.torch: {original!r} -> '0.0.0-test'"]


def test_moving_the_csv_or_touching_weights_is_not_staleness(inputs: dict[str, Any]) -> None:
    key = _key(inputs)
    os.utime(inputs["weights"], ns=(1, 1))
    moved = inputs["folder"] / "moved.csv"
    moved.write_bytes(inputs["csv"].read_bytes())
    assert key_differences(key, _key(inputs, csv=moved)) == []


def test_unchanged_files_are_not_hashed_again(inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EmbeddingsCache(inputs["folder"] / "emb.pt")
    cache.save(cache.key(**_args(inputs)), torch.zeros(2, 2))
    hashed: list[str] = []
    real = cache_module.sha256_file

    def counting(path: Any) -> str:
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(cache_module, "sha256_file", counting)
    assert cache.load(cache.key(**_args(inputs))) is not None
    assert hashed == []
    inputs["weights"].write_bytes(b"weights v1")  # same bytes, new mtime: hashed again, still fresh
    os.utime(inputs["weights"], ns=(10**18, 10**18))
    assert cache.load(cache.key(**_args(inputs))) is not None
    assert hashed == [str(inputs["weights"].resolve())]


def test_writes_are_atomic(inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EmbeddingsCache(inputs["folder"] / "emb.pt")
    key = cache.key(**_args(inputs))
    cache.save(key, torch.zeros(3, 2))
    real_save = torch.save

    def failing(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        real_save(obj, f, *a, **k)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(OSError, match="disk full"):
        cache.save(key, torch.ones(3, 2))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(cache.load(key), torch.zeros(3, 2))  # type: ignore[arg-type]
    assert sorted(p.name for p in cache.path.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_row_count_and_foreign_files(inputs: dict[str, Any]) -> None:
    cache = EmbeddingsCache(inputs["folder"] / "emb.pt")
    key = cache.key(**_args(inputs))
    cache.save(key, torch.zeros(3, 2))
    with pytest.raises(StaleEmbeddingsCacheError, match=r"rows: 3 -> 4"):
        cache.load(key, n_rows=4)
    foreign = inputs["folder"] / "foreign.pt"
    torch.save({"a": torch.zeros(1)}, foreign)
    with pytest.raises(RerankingError, match="is not an embeddings cache file"):
        EmbeddingsCache(foreign).load(key)
    garbage = inputs["folder"] / "garbage.pt"
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(RerankingError, match="is not a readable embeddings cache"):
        EmbeddingsCache(garbage).load(key)


def test_missing_named_files_and_bad_specs(inputs: dict[str, Any]) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _key(inputs, files=[inputs["folder"] / "nope.bin"])
    with pytest.raises(TypeError, match=r"\{name, args\} spec"):
        _key(inputs, extractor="vit")


def test_files_stat_digest_changes_with_an_image(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    first = files_stat_digest([a, b])
    b.write_bytes(b"22")
    assert files_stat_digest([a, b]) != first
