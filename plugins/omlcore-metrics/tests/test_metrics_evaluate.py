"""``omlcore evaluate``: files in, table/JSON out, and clear errors for bad input before any search."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omlcore_metrics import evaluate as ev
from omlcore_metrics.functional import retrieval_metrics

from omlcore.cli import main

HEADER = "label,path,split,is_query,is_gallery,category,sequence"


def write_dataset(
    tmp_path: Path, n_labels: int = 4, per_label: int = 3, seed: int = 0
) -> tuple[Path, Path, np.ndarray]:
    """A CSV with 2 train rows first, then per label one query and the rest gallery; embeddings .npy."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(n_labels, 5))
    lines = [HEADER, "9,t1.png,train,,,x,", "9,t2.png,train,,,x,"]
    rows = [centres[0], centres[0]]
    for label in range(n_labels):
        for i in range(per_label):
            q = i == 0
            cat = "even" if label % 2 == 0 else "odd"
            lines.append(f"{label},img_{label}_{i}.png,validation,{q},{not q},{cat},s{label}_{i}")
            rows.append(centres[label] + rng.normal(size=5))
    csv_path = tmp_path / "df.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    emb = np.asarray(rows, dtype=np.float32)
    emb_path = tmp_path / "emb.npy"
    np.save(emb_path, emb)
    return emb_path, csv_path, emb


def run(*argv: Any) -> int:
    return main(["evaluate", *map(str, argv)])


def test_json_matches_the_functional_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb_path, csv_path, emb = write_dataset(tmp_path)
    out = tmp_path / "m.json"
    code = run("--embeddings", emb_path, "--csv", csv_path, "--cmc", "1,2", "--precision", "2", "--map", "2",
               "--fmr", "0.5", "--pcf", "0.5", "--out", out)  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 queries, 8 gallery items, 2 rows neither (left out)" in printed
    for word in ("cmc/1", "OVERALL", "even"):
        assert word in printed
    got = json.loads(out.read_text())
    used = torch.from_numpy(emb[2:])
    labels = [i // 3 for i in range(12)]
    is_q = [i % 3 == 0 for i in range(12)]
    expected = retrieval_metrics(
        used, labels, is_q, [not q for q in is_q], categories=["even" if x % 2 == 0 else "odd" for x in labels],
        sequence=[f"s{i // 3}_{i % 3}" for i in range(12)], cmc_top_k=(1, 2), precision_top_k=(2,), map_top_k=(2,),
        fmr_vals=(0.5,), pcf_variance=(0.5,),
    )  # fmt: skip
    assert set(got) == {"OVERALL", "even", "odd"}
    for group, metrics in expected.reduced.items():
        for metric, values in metrics.items():
            for key, value in values.items():
                assert got[group][metric][str(key)] == pytest.approx(value), (group, metric, key)


def test_per_query_and_other_formats(tmp_path: Path) -> None:
    emb_path, csv_path, emb = write_dataset(tmp_path)
    pt_path = tmp_path / "emb.pt"
    torch.save({"embeddings": torch.from_numpy(emb)}, pt_path)
    out = tmp_path / "m.json"
    assert run("--embeddings", pt_path, "--csv", csv_path, "--out", out, "--per-query") == 0
    per_query = json.loads(out.read_text())["per_query"]
    assert per_query["rows"] == [2, 5, 8, 11]  # CSV data rows of the queries
    assert per_query["label"] == [0, 1, 2, 3]
    assert per_query["category"] == ["even", "odd", "even", "odd"]
    assert len(per_query["cmc"]["1"]) == 4
    np_out = tmp_path / "n.json"
    assert run("--embeddings", emb_path, "--csv", csv_path, "--out", np_out, "--per-query") == 0
    assert json.loads(np_out.read_text()) == json.loads(out.read_text())


def test_parquet(tmp_path: Path) -> None:
    emb_path, csv_path, emb = write_dataset(tmp_path)
    out = tmp_path / "m.json"
    assert run("--embeddings", emb_path, "--csv", csv_path, "--out", out, "--per-query") == 0
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pq_path = tmp_path / "emb.parquet"
    pd.DataFrame(emb, columns=[f"d{i}" for i in range(emb.shape[1])]).to_parquet(pq_path)
    pq_out = tmp_path / "p.json"
    assert run("--embeddings", pq_path, "--csv", csv_path, "--out", pq_out, "--per-query") == 0
    assert json.loads(pq_out.read_text()) == json.loads(out.read_text())


def test_text_labels(tmp_path: Path) -> None:
    emb_path, csv_path, _ = write_dataset(tmp_path)
    text = csv_path.read_text().replace("\n0,", "\ncat,").replace("\n1,", "\ndog,").replace("\n2,", "\nemu,")
    text = text.replace("\n3,", "\nfox,").replace("\n9,", "\nyak,")
    csv_path.write_text(text)
    out = tmp_path / "m.json"
    assert run("--embeddings", emb_path, "--csv", csv_path, "--out", out, "--per-query") == 0
    assert json.loads(out.read_text())["per_query"]["label"] == ["cat", "dog", "emu", "fox"]


def _bad_csv(tmp_path: Path, edit: Any) -> tuple[Path, Path]:
    emb_path, csv_path, _ = write_dataset(tmp_path)
    lines = csv_path.read_text().splitlines()
    edit(lines)
    csv_path.write_text("\n".join(lines) + "\n")
    return emb_path, csv_path


def _set(lines: list[str], line: int, column: int, value: str) -> None:
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)


BAD_CSVS = {
    "mixed labels": (
        lambda ls: _set(ls, 5, 0, "cat"),
        "labels of mixed types: line 4 has the number '0' but line 5 has the text 'cat'",
    ),
    "fractional label": (lambda ls: _set(ls, 5, 0, "1.5"), "line 5, column label: '1.5' is not an integer"),
    "missing label": (lambda ls: _set(ls, 6, 0, ""), "line 6, column label: missing label"),
    "bad flag": (lambda ls: _set(ls, 4, 3, "maybe"), "line 4, column is_query: 'maybe' is not a boolean"),
    "no queries": (lambda ls: [_set(ls, i, 3, "False") for i in range(4, len(ls) + 1)], "no row has is_query true"),
    "no gallery": (lambda ls: [_set(ls, i, 4, "False") for i in range(4, len(ls) + 1)], "no row has is_gallery true"),
    "missing column": (lambda ls: ls.__setitem__(0, ls[0].replace("is_gallery", "gallery")), "missing column(s) is_g"),
    "ragged row": (lambda ls: ls.__setitem__(6, ls[6] + ",extra"), "line 7: 8 fields, but the header has 7"),
    "row count": (lambda ls: ls.append("3,x.png,validation,False,True,odd,z"), "has 14 rows but"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_fails_before_any_search(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, message = BAD_CSVS[case]
    emb_path, csv_path = _bad_csv(tmp_path, edit)
    monkeypatch.setattr("omlcore_metrics.functional.retrieval_metrics", _no_search)
    assert run("--embeddings", emb_path, "--csv", csv_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("omlcore: error: ")
    assert message in err


def _no_search(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the search started despite bad input")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cmc", "0,5"], "--cmc: k must be a positive integer, got 0"),
        (["--map", "-1"], "--map: k must be a positive integer, got -1"),
        (["--precision", "five"], "--precision: 'five' is not an integer"),
        (["--fmr", "2"], "fmr_vals: every rate must lie in [0, 1]"),
        (["--pcf", "0"], "pcf_variance: every level must lie in (0, 1]"),
        (["--cmc", "", "--precision", "", "--map", "", "--pcf", ""], "no metric asked for"),
        (["--report", "R", "--worst-by", "cmc/3"], "--worst-by: unknown per-query metric 'cmc/3'; available: cmc/1"),
        (["--per-query"], "--per-query writes into the JSON file: give --out"),
        (["--backend", "nope"], "unknown kNN backend 'nope'"),
        (["--report", "R", "--n-queries", "0"], "--n-queries must be a positive integer"),
    ],
)
def test_bad_options(
    options: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emb_path, csv_path, _ = write_dataset(tmp_path)
    monkeypatch.setattr("omlcore_metrics.functional.retrieval_metrics", _no_search)
    assert run("--embeddings", emb_path, "--csv", csv_path, *options) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_embeddings(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb_path, csv_path, emb = write_dataset(tmp_path)
    emb[5, 1] = float(bad)
    np.save(emb_path, emb)
    assert run("--embeddings", emb_path, "--csv", csv_path) == 2
    assert "NaN or infinite values in the embeddings of 1 row(s), CSV line 7 (array rows 5)" in capsys.readouterr().err
    emb[5, 1] = 0.0
    emb[0, 0] = float(bad)  # a train row: not used, so not an error
    np.save(emb_path, emb)
    assert run("--embeddings", emb_path, "--csv", csv_path) == 0


def test_unreadable_embeddings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, csv_path, emb = write_dataset(tmp_path)
    for name, content, message in (
        ("e.txt", b"1 2", "unknown embeddings format '.txt'"),
        ("e.npy", b"not numpy", "cannot read the embeddings"),
        ("missing.npy", None, "no such file"),
    ):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert run("--embeddings", path, "--csv", csv_path) == 2
        assert message in capsys.readouterr().err
    flat = tmp_path / "flat.npy"
    np.save(flat, emb[:, 0])
    assert run("--embeddings", flat, "--csv", csv_path) == 2
    assert "expected N x D" in capsys.readouterr().err


def test_python_api(tmp_path: Path) -> None:
    emb_path, csv_path, _ = write_dataset(tmp_path)
    result = ev.evaluate_files(emb_path, csv_path, args=ev.MetricArgs(cmc_top_k=(1,), precision_top_k=(), map_top_k=()))
    assert set(result.reduced["OVERALL"]) == {"cmc", "pcf"}
    table = ev.format_metrics_table(result.reduced)
    assert table.splitlines()[0].split() == ["metric", "OVERALL", "even", "odd"]
    with pytest.raises(ev.EvaluationInputError, match="positive integer"):
        ev.MetricArgs(cmc_top_k=(0,))


class SwapFirstTwo:
    """A postprocessor reading nothing: the first two results of each row trade places (distances stay)."""

    top_n = 2
    reads = "nothing"

    def process(self, distances: Any, retrieved: Any, query_ids: Any, dataset: Any) -> tuple[Any, Any]:
        new_r = retrieved.clone()
        new_r[:, [0, 1]] = retrieved[:, [1, 0]]
        return distances.clone(), new_r


class ReadsItems(SwapFirstTwo):
    reads = "items"


def test_a_postprocessor_is_applied_before_the_metrics(
    tmp_path: Path, installed_registry: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    installed_registry.register("postprocessor", "swap_first_two", SwapFirstTwo)
    installed_registry.register("postprocessor", "reads_items", ReadsItems)
    emb_path, csv_path, emb = write_dataset(tmp_path, n_labels=5, per_label=2, seed=3)  # one positive each
    plain, swapped = tmp_path / "plain.json", tmp_path / "swapped.json"
    common = ("--embeddings", emb_path, "--csv", csv_path, "--cmc", "1", "--precision", "", "--map", "2")
    assert run(*common, "--out", plain) == 0
    assert run(*common, "--postprocessor", "{name: swap_first_two}", "--out", swapped) == 0
    got, before = json.loads(swapped.read_text()), json.loads(plain.read_text())
    metric_args = ev.MetricArgs(cmc_top_k=(1,), precision_top_k=(), map_top_k=(2,))
    expected = ev.evaluate_files(emb_path, csv_path, args=metric_args, postprocessor=SwapFirstTwo())
    assert got["OVERALL"]["cmc"]["1"] == pytest.approx(expected.reduced["OVERALL"]["cmc"][1])
    assert got["OVERALL"]["cmc"]["1"] < before["OVERALL"]["cmc"]["1"]
    # cmc@1 after the swap is whether the second result was a positive
    labels, is_q = [i // 2 for i in range(10)], [i % 2 == 0 for i in range(10)]
    kwargs: dict[str, Any] = {"cmc_top_k": (2,), "precision_top_k": (), "map_top_k": ()}
    kwargs["sequence"] = [f"s{i // 2}_{i % 2}" for i in range(10)]
    deep = retrieval_metrics(torch.from_numpy(emb[2:]), labels, is_q, [not q for q in is_q], **kwargs)
    assert got["OVERALL"]["cmc"]["1"] == pytest.approx(deep.gt[:, 1].double().mean().item())
    assert run(*common, "--postprocessor", "reads_items") == 2
    assert "reads dataset items" in capsys.readouterr().err
    assert run(*common, "--postprocessor", "no_such_postprocessor") == 2
    assert "no_such_postprocessor" in capsys.readouterr().err
