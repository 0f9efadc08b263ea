"""Visual reports: figures of chosen and worst queries, PNG files, and the HTML page of ``--report``."""

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omlcore_metrics.accumulator import EmbeddingMetrics
from omlcore_metrics.functional import retrieval_metrics
from omlcore_metrics.report import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    ReportData,
    plot_queries,
    plot_worst_queries,
    save_figure,
    worst_queries,
    write_html_report,
)

from omlcore.cli import main

pytest.importorskip("matplotlib")


def toy() -> tuple[Any, ReportData]:
    """3 queries; query 0 retrieves a wrong item first; no images (placeholders)."""
    emb = torch.tensor([[0.0], [1.0], [0.2], [5.0], [5.1], [9.0], [9.3], [8.0]])
    labels = [0, 0, 1, 1, 1, 2, 2, 3]
    is_query = [True, False, False, True, False, True, False, False]
    is_gallery = [not q for q in is_query]
    result = retrieval_metrics(emb, labels, is_query, is_gallery, cmc_top_k=(1, 2), map_top_k=(2,))
    return result, ReportData(labels=labels, embeddings=emb)


def test_worst_queries_order() -> None:
    result, _ = toy()
    assert worst_queries(result, "cmc/1", 1) == [0]  # query row 0 retrieves row 2 (label 1) first
    assert worst_queries(result, "OVERALL/map/2", 3)[0] == 0
    with pytest.raises(ValueError, match="unknown per-query metric 'ndcg/1'; available: cmc/1, cmc/2"):
        worst_queries(result, "ndcg/1", 1)


def _frame_colours(fig: Any) -> list[str]:
    from matplotlib.colors import to_hex

    return [to_hex(ax.spines["left"].get_edgecolor()) for ax in fig.axes if ax.axison]


def test_figure_marks_correct_wrong_and_missed(tmp_path: Path) -> None:
    result, data = toy()
    fig = plot_queries(result, data, [0], n_instances=1, n_gt=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("query (row 0)")
    assert titles[1].startswith("#1  d=0.200")  # the wrong neighbour, with its distance
    assert titles[2].startswith("missed GT  d=1.000")  # row 1, label 0, not in the top 1
    colours = _frame_colours(fig)
    assert colours[1] == WRONG_COLOUR
    fig = plot_queries(result, data, [3], n_instances=2, by_row=True)
    assert _frame_colours(fig)[1:3] == [CORRECT_COLOUR, WRONG_COLOUR]  # row 4 (label 1), then row 7 (label 3)
    png = save_figure(fig, tmp_path / "sub" / "q.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not queries"):
        plot_queries(result, data, [1], by_row=True)
    fig = plot_worst_queries(result, data, "cmc@1", n_queries=2)
    assert "worst 2 queries by cmc@1" in fig.get_suptitle()


def test_mock_dataset_report(tmp_path: Path) -> None:
    mock = pytest.importorskip("omlcore_images.mock")
    mock.make_mock_dataset(tmp_path / "mock")
    csv_path = tmp_path / "mock" / "df_with_bboxes.csv"
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 8))
    emb = np.stack([centres[int(r["label"])] + 0.9 * rng.normal(size=8) for r in rows]).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    report = tmp_path / "report"
    code = main(["evaluate", "--embeddings", str(tmp_path / "emb.npy"), "--csv", str(csv_path), "--cmc", "1,3",
                 "--report", str(report), "--report-queries", "12", "--n-queries", "3"])  # fmt: skip
    assert code == 0
    page = (report / "index.html").read_text()
    links = re.findall(r'<img src="([^"]+)"', page)
    assert "chosen_queries.png" in links
    assert "worst_cmc_1.png" in links
    for link in links:
        assert (report / link).read_bytes()[:4] == b"\x89PNG"
    assert "<th>OVERALL</th>" in page
    assert "cmc/3" in page


def test_accumulator_figures_with_images(tmp_path: Path) -> None:
    mock = pytest.importorskip("omlcore_images.mock")
    import pandas as pd

    _, val = mock.make_mock_dataset(tmp_path / "mock", df_name="df_with_bboxes.csv")
    n = len(val)
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor(val["label"].to_numpy(copy=True))
    emb = torch.randn(8, 4, generator=g)[labels] + 0.5 * torch.randn(n, 4, generator=g)
    metric = EmbeddingMetrics(
        extra_keys=("paths", "x1", "y1", "x2", "y2"), cmc_top_k=(1,), metrics_to_exclude_from_visualization=("map",)
    )
    metric.setup(n)
    boxes = {k: [] for k in ("x1", "y1", "x2", "y2")}
    for x1, x2, y1, y2 in val[["x_1", "x_2", "y_1", "y_2"]].itertuples(index=False):
        for key, v in zip(("x1", "y1", "x2", "y2"), (x1, y1, x2, y2), strict=True):
            boxes[key].append(-1 if pd.isna(v) else int(v))
    metric.update_data(
        {"embeddings": emb, "labels": labels, "is_query": torch.as_tensor(val["is_query"].to_numpy(dtype=bool)),
         "is_gallery": torch.as_tensor(val["is_gallery"].to_numpy(dtype=bool)), "paths": list(val["path"]), **boxes},
        indices=torch.arange(n),
    )  # fmt: skip
    metric.compute()
    assert metric.ready_to_visualize()
    fig = metric.get_plot_for_queries([0, 1], n_instances=3, root=str(tmp_path / "mock"))
    assert any(ax.images for ax in fig.axes)  # real images drawn, not placeholders
    assert any(ax.patches for ax in fig.axes)  # boxes drawn
    figures, titles = metric.visualize(n_queries=2, n_instances=2, root=str(tmp_path / "mock"))
    assert titles == ["OVERALL/cmc/1", "OVERALL/precision/5"]
    assert len(figures) == 2
    out = write_html_report(
        tmp_path / "html", metric.result, metric.report_data(str(tmp_path / "mock")), worst_by=["cmc/1"]
    )  # type: ignore[arg-type]
    assert (tmp_path / "html" / "worst_cmc_1.png").is_file()
    assert out.name == "index.html"
