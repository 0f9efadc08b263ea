"""Visual reports of a retrieval result: figures of chosen or worst queries, and an HTML page.

A figure has one row per query: the query (blue frame), its top ``n_instances`` results (green frame:
same label, red: another label; titled with the distance) and up to ``n_gt`` ground truths that are
not among the results shown (grey frame, titled with their distance when embeddings are given).
Images come from ``paths`` (relative ones under ``root``), with the box drawn when ``bboxes`` has one;
rows without a readable image are drawn as a placeholder holding the label.

Needs matplotlib (``pip install "omlcore-metrics[report]"``); figures are drawn with the Agg backend,
so no display is needed. :func:`plot_queries` returns a ``matplotlib.figure.Figure`` that experiment
loggers take as it is.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from omlcore_metrics.functional import MetricsResult

__all__ = [
    "ReportData",
    "metric_names",
    "parse_metric_name",
    "plot_queries",
    "plot_worst_queries",
    "save_figure",
    "worst_queries",
    "worst_query_figures",
    "write_html_report",
]

QUERY_COLOUR = "#1f5fd6"
CORRECT_COLOUR = "#1a9e3a"
WRONG_COLOUR = "#d62728"
GT_COLOUR = "#8c8c8c"


@dataclass(frozen=True)
class ReportData:
    """Per-row information the figures draw, indexed like the embeddings given to the metrics.

    ``labels`` decide which results are correct; ``label_names`` (optional) is the text shown for a
    label code; ``paths``/``bboxes`` (``(x1, y1, x2, y2)`` or None) locate images, relative paths under
    ``root``; ``sequence`` (optional) and ``embeddings`` (optional) find and measure missed ground
    truths the way the metrics did (``distance``: ``"l2"``, ``"cosine"`` or ``"dot"``); ``row_ids``
    (optional) are the row numbers shown in titles.
    """

    labels: Sequence[Any]
    paths: Sequence[str] | None = None
    bboxes: Sequence[tuple[int, int, int, int] | None] | None = None
    root: Path | None = None
    label_names: Sequence[str] | None = None
    sequence: Sequence[Any] | None = None
    embeddings: Tensor | None = None
    distance: str = "l2"
    row_ids: Sequence[int] | None = None

    def row_id(self, row: int) -> int:
        """The number shown for ``row`` (``row_ids[row]``, e.g. its CSV data row; default: ``row``)."""
        return int(self.row_ids[row]) if self.row_ids is not None else row

    def label_text(self, row: int) -> str:
        """The label of ``row`` as text."""
        label = self.labels[row]
        label = int(label) if isinstance(label, Tensor) else label
        if self.label_names is not None and isinstance(label, int) and 0 <= label < len(self.label_names):
            return f"label {self.label_names[label]}"
        return f"label {label}"


# ---- metric names ------------------------------------------------------------------------------------


def metric_names(result: MetricsResult, group: str = "OVERALL") -> list[str]:
    """The per-query metrics of ``result`` as ``"metric/key"`` names (``"cmc/1"``, ``"map/5"``)."""
    return [f"{metric}/{key}" for metric, values in result.unreduced.get(group, {}).items() for key in values]


def parse_metric_name(name: str, available: Sequence[str]) -> tuple[str, str]:
    """``"cmc/1"``, ``"cmc@1"`` or ``"OVERALL/cmc/1"`` -> ``("cmc", "1")``; unknown names raise
    ``ValueError`` listing the ``available`` ``"metric/key"`` names."""
    text = name.strip()
    if text.startswith("OVERALL/"):
        text = text[len("OVERALL/") :]
    if "/" not in text and "@" in text and not text.startswith("fnmr@"):
        text = text.replace("@", "/", 1)
    if text not in available:
        choices = ", ".join(available) or "(none)"
        raise ValueError(f"unknown per-query metric {name!r}; available: {choices}")
    metric, key = text.split("/", 1)
    return metric, key


def _unreduced(result: MetricsResult, name: str, group: str) -> Tensor:
    metric, key = parse_metric_name(name, metric_names(result, group))
    for k, values in result.unreduced[group][metric].items():
        if str(k) == key:
            return values
    raise ValueError(f"unknown per-query metric {name!r}")  # pragma: no cover - parse_metric_name checked it


def worst_queries(result: MetricsResult, metric: str, n: int, group: str = "OVERALL") -> list[int]:
    """Positions (into ``result.query_rows``) of the ``n`` queries with the lowest ``metric`` value in
    ``group``; ties go to the earlier query, skipped queries (NaN) are never chosen."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    values = _unreduced(result, metric, group).double()
    members = result.group_queries.get(group, torch.arange(values.numel()))
    ok = ~torch.isnan(values)
    values, members = values[ok], members[ok]
    order = sorted(range(values.numel()), key=lambda i: (float(values[i]), int(members[i])))
    return [int(members[i]) for i in order[:n]]


# ---- drawing -----------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    """A figure not managed by pyplot (no GUI backend, nothing to close, nothing leaks)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('figures need matplotlib: pip install "omlcore-metrics[report]"') from None
    return Figure(figsize=(width, height))


def _load_image(data: ReportData, row: int) -> Any | None:
    if data.paths is None:
        return None
    path = Path(data.paths[row])
    if not path.is_absolute() and data.root is not None:
        path = data.root / path
    try:
        from PIL import Image

        with Image.open(path) as img:
            return img.convert("RGB").copy()
    except Exception:  # unreadable or missing: a placeholder is drawn instead
        return None


def _draw_cell(ax: Axes, data: ReportData, row: int, colour: str, title: str) -> None:
    from matplotlib.patches import Rectangle

    img = _load_image(data, row)
    if img is None:
        ax.set_facecolor("#eeeeee")
        ax.text(
            0.5, 0.5, data.label_text(row), ha="center", va="center", fontsize=11, transform=ax.transAxes, wrap=True
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    else:
        ax.imshow(img)
        box = data.bboxes[row] if data.bboxes is not None else None
        if box is not None:
            x1, y1, x2, y2 = box
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    ax.set_title(title, fontsize=8, color=colour)


def _missed_ground_truths(
    result: MetricsResult, data: ReportData, qpos: int, shown: set[int]
) -> list[tuple[int, float]]:
    """Gallery rows with the query's label that the metrics could retrieve but are not shown, with their
    distance (NaN without embeddings), closest first."""
    q_row = int(result.query_rows[qpos])
    q_label = data.labels[q_row]
    q_seq = data.sequence[q_row] if data.sequence is not None else None
    rows: list[int] = []
    for g in result.gallery_rows.tolist():
        if g == q_row or g in shown or data.labels[g] != q_label:
            continue
        if q_seq is not None and data.sequence is not None and data.sequence[g] == q_seq:
            continue
        rows.append(g)
    if not rows:
        return []
    if data.embeddings is None:
        return [(g, math.nan) for g in rows]
    from omlcore_metrics.knn import exact_pair_distances

    emb = data.embeddings
    # the same float64 formula as the retrieved rows' distances (TorchKnn and the faiss backends)
    dist = exact_pair_distances(emb[q_row : q_row + 1], emb[rows], data.distance)[0].tolist()
    return sorted(zip(rows, dist, strict=True), key=lambda t: (t[1], t[0]))


def plot_queries(
    result: MetricsResult,
    data: ReportData,
    queries: Sequence[int],
    *,
    n_instances: int = 5,
    n_gt: int = 2,
    title: str | None = None,
    by_row: bool = False,
) -> Figure:
    """A figure with one row per query of ``queries`` (positions into ``result.query_rows``, or rows of
    the embeddings when ``by_row``): the query, its top ``n_instances`` results and up to ``n_gt``
    missed ground truths."""
    if n_instances <= 0:
        raise ValueError(f"n_instances must be positive, got {n_instances}")
    if n_gt < 0:
        raise ValueError(f"n_gt must be >= 0, got {n_gt}")
    positions = _query_positions(result, queries, by_row)
    if not positions:
        raise ValueError("no query to draw")
    retrieved_rows = result.retrieved_rows()
    tops: list[list[int]] = []
    missed_all: list[list[tuple[int, float]]] = []
    for qpos in positions:
        top = retrieved_rows[qpos, :n_instances].tolist() if retrieved_rows.numel() else []
        tops.append(top)
        shown = {int(g) for g in top if g >= 0}
        missed_all.append(_missed_ground_truths(result, data, qpos, shown)[:n_gt] if n_gt else [])
    gt_cols = max((len(m) for m in missed_all), default=0)  # no empty columns when nothing was missed
    n_cols = 1 + n_instances + gt_cols
    fig = _new_figure(1.9 * n_cols, 2.3 * len(positions) + (0.4 if title else 0.0))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(positions), n_cols, squeeze=False)
    for r, qpos in enumerate(positions):
        q_row = int(result.query_rows[qpos])
        cells = list(axes[r])
        _draw_cell(cells[0], data, q_row, QUERY_COLOUR, f"query (row {data.row_id(q_row)})\n{data.label_text(q_row)}")
        top = tops[r]
        dists = result.distances[qpos, :n_instances].tolist() if result.distances.numel() else []
        for i in range(n_instances):
            ax = cells[1 + i]
            if i >= len(top) or top[i] < 0:
                ax.axis("off")
                continue
            g_row = int(top[i])
            ok = bool(data.labels[g_row] == data.labels[q_row])
            colour = CORRECT_COLOUR if ok else WRONG_COLOUR
            _draw_cell(ax, data, g_row, colour, f"#{i + 1}  d={dists[i]:.3f}\n{data.label_text(g_row)}")
        missed = missed_all[r]
        for j in range(gt_cols):
            ax = cells[1 + n_instances + j]
            if j >= len(missed):
                ax.axis("off")
                continue
            g_row, d = missed[j]
            label = "missed GT" + ("" if math.isnan(d) else f"  d={d:.3f}")
            _draw_cell(ax, data, g_row, GT_COLOUR, f"{label}\n{data.label_text(g_row)}")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _query_positions(result: MetricsResult, queries: Sequence[int], by_row: bool) -> list[int]:
    n_q = int(result.query_rows.numel())
    if not by_row:
        bad = [q for q in queries if not 0 <= int(q) < n_q]
        if bad:
            raise ValueError(f"query positions {bad} are outside range(0, {n_q})")
        return [int(q) for q in queries]
    position = {int(r): i for i, r in enumerate(result.query_rows.tolist())}
    missing = [int(q) for q in queries if int(q) not in position]
    if missing:
        raise ValueError(f"rows {missing} are not queries")
    return [position[int(q)] for q in queries]


def plot_worst_queries(
    result: MetricsResult,
    data: ReportData,
    metric: str,
    *,
    n_queries: int = 5,
    n_instances: int = 5,
    n_gt: int = 2,
    group: str = "OVERALL",
) -> Figure:
    """:func:`plot_queries` of the ``n_queries`` worst queries by ``metric`` (e.g. ``"cmc/1"``)."""
    worst = worst_queries(result, metric, n_queries, group)
    if not worst:
        raise ValueError(f"no scored query in group {group!r}")
    title = f"worst {len(worst)} queries by {metric} ({group})"
    return plot_queries(result, data, worst, n_instances=n_instances, n_gt=n_gt, title=title)


def worst_query_figures(
    result: MetricsResult,
    data: ReportData,
    *,
    only_overall: bool = True,
    exclude: Sequence[str] = (),
    n_queries: int = 5,
    n_instances: int = 5,
) -> tuple[list[Figure], list[str]]:
    """One :func:`plot_worst_queries` figure per per-query metric of ``result`` and its title
    (``"OVERALL/cmc/1"``): the ``OVERALL`` group only, or every group (categories) unless ``only_overall``.
    ``exclude`` names metrics (``"cmc/1"``) or whole families (``"map"``) to skip; a group without a scored
    query draws nothing."""
    groups = ["OVERALL"] if only_overall else list(result.unreduced)
    excluded = set(exclude)
    figures: list[Figure] = []
    titles: list[str] = []
    for group in groups:
        for name in metric_names(result, group):
            if name in excluded or name.split("/")[0] in excluded:
                continue
            try:
                figure = plot_worst_queries(
                    result, data, name, n_queries=n_queries, n_instances=n_instances, group=group
                )
            except ValueError:  # no scored query in this group
                continue
            figures.append(figure)
            titles.append(f"{group}/{name}")
    return figures, titles


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Write ``figure`` as PNG to ``path`` (folders created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=dpi)
    return out


# ---- HTML --------------------------------------------------------------------------------------------


def _format_value(value: float) -> str:
    return "" if value is None else ("nan" if math.isnan(value) else f"{value:.4f}")


def metrics_table_rows(
    reduced: Mapping[str, Mapping[str, Mapping[Any, float]]],
) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """Groups (columns) and ``(metric name, values per group)`` rows of a reduced metrics dict."""
    groups = list(reduced)
    names: list[tuple[str, Any]] = []
    for per_metric in reduced.values():
        for metric, per_key in per_metric.items():
            for key in per_key:
                if (metric, key) not in names:
                    names.append((metric, key))
    rows: list[tuple[str, list[float | None]]] = []
    for metric, key in names:
        values = [reduced[g].get(metric, {}).get(key) for g in groups]
        rows.append((f"{metric}/{key}", values))
    return groups, rows


def write_html_report(
    directory: str | os.PathLike[str],
    result: MetricsResult,
    data: ReportData,
    *,
    worst_by: Sequence[str] | None = None,
    queries: Sequence[int] = (),
    n_queries: int = 5,
    n_instances: int = 5,
    n_gt: int = 2,
    title: str = "Retrieval report",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``directory/index.html``: the metrics table, then one figure of the worst queries per metric
    of ``worst_by`` (default: every per-query metric) and one of the chosen ``queries`` (rows of the
    embeddings). PNGs are written next to it and linked relatively, so the folder can be moved."""
    out = Path(directory)
    available = metric_names(result)
    names = list(available if worst_by is None else worst_by)
    for name in names:
        parse_metric_name(name, available)  # unknown names fail before anything is drawn
    if n_queries <= 0 or n_instances <= 0:
        raise ValueError(f"n_queries and n_instances must be positive, got {n_queries} and {n_instances}")
    out.mkdir(parents=True, exist_ok=True)
    groups, rows = metrics_table_rows(result.reduced)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}th:first-child,td:first-child"
        "{text-align:left}img{max-width:100%;border:1px solid #ddd}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    parts.append("<h2>Metrics</h2><table><tr><th>metric</th>")
    parts += [f"<th>{html.escape(g)}</th>" for g in groups]
    parts.append("</tr>")
    for name, values in rows:
        cells = "".join(f"<td>{_format_value(v) if v is not None else ''}</td>" for v in values)
        parts.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    parts.append("</table>")
    parts.append(
        f"<p>Frames: <span style='color:{QUERY_COLOUR}'>query</span>, <span style='color:{CORRECT_COLOUR}'>"
        f"correct</span>, <span style='color:{WRONG_COLOUR}'>wrong</span>, <span style='color:{GT_COLOUR}'>"
        f"missed ground truth</span>; d = distance.</p>"
    )
    if queries:
        fig = plot_queries(
            result, data, queries, n_instances=n_instances, n_gt=n_gt, title="chosen queries", by_row=True
        )
        save_figure(fig, out / "chosen_queries.png")
        parts.append('<h2>Chosen queries</h2><img src="chosen_queries.png" alt="chosen queries">')
    for name in names:
        metric, key = parse_metric_name(name, available)
        worst = worst_queries(result, name, n_queries)
        if not worst:
            continue
        file = f"worst_{_slug(metric)}_{_slug(key)}.png"
        fig = plot_queries(
            result,
            data,
            worst,
            n_instances=n_instances,
            n_gt=n_gt,
            title=f"worst {len(worst)} queries by {metric}@{key}",
        )
        save_figure(fig, out / file)
        query_rows = ", ".join(str(data.row_id(int(result.query_rows[q]))) for q in worst)
        parts.append(f"<h2>Worst queries by {html.escape(metric)}@{html.escape(key)}</h2>")
        parts.append(f"<p>Rows: {query_rows}</p>")
        parts.append(f'<img src="{html.escape(file)}" alt="worst queries by {html.escape(metric)}@{html.escape(key)}">')
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return page


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
