"""Hook implementations: the ``omlcore evaluate`` sub-command.

Import-light on purpose: ``omlcore --help`` loads this module, so torch, numpy and matplotlib are
imported only when the command runs (see :mod:`omlcore_metrics.evaluate`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omlcore.hookspecs import hookimpl

__all__ = ["omlcore_add_commands"]


def _run_evaluate(args: argparse.Namespace) -> int:
    from omlcore_metrics.evaluate import cmd_evaluate

    return cmd_evaluate(args)


@hookimpl
def omlcore_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``omlcore evaluate``."""
    ev = subparsers.add_parser(
        "evaluate",
        help="retrieval metrics of precomputed embeddings over a dataset CSV",
        description="Compute retrieval metrics of embeddings made anywhere. Row i of the embeddings "
        "(.npy, .pt/.pth or .parquet, N x D) belongs to data row i of the CSV, which gives label, "
        "is_query, is_gallery and optionally category, sequence, path and x_1, x_2, y_1, y_2. Rows that "
        "are neither query nor gallery are left out. Prints a table; exit 0, or 2 on bad input.",
    )
    ev.add_argument("--embeddings", type=Path, required=True, metavar="FILE", help="N x D array (.npy, .pt, .parquet)")
    ev.add_argument("--csv", type=Path, required=True, metavar="CSV", help="the dataset CSV, one row per embedding")
    ev.add_argument("--cmc", default="1,5", metavar="K,...", help="k values of cmc@k (default: 1,5; '' for none)")
    ev.add_argument("--precision", default="5", metavar="K,...", help="k values of precision@k (default: 5)")
    ev.add_argument("--map", default="5", metavar="K,...", help="k values of map@k (default: 5)")
    ev.add_argument("--recall", default="", metavar="K,...", help="k values of recall@k (default: none)")
    ev.add_argument("--fmr", default="", metavar="R,...", help="false match rates for fnmr@fmr, in [0, 1]")
    ev.add_argument("--pcf", default="0.5", metavar="V,...", help="explained-variance levels of pcf, in (0, 1]")
    ev.add_argument("--backend", default="torch", metavar="NAME", help="kNN backend (group omlcore.knn; default torch)")
    ev.add_argument(
        "--no-positive",
        default="skip",
        choices=("skip", "miss", "raise"),
        help="queries without a positive: left out of the means (default), scored 0, or an error",
    )
    ev.add_argument(
        "--postprocessor",
        metavar="SPEC",
        help="re-rank each query's top results before the metrics, with a postprocessor that reads embeddings: "
        'a name, a YAML mapping such as "{name: pairwise_embeddings, args: {top_n: 5, pairwise_model: '
        '{name: linear_siamese, args: {feat_dim: 128, weights: w.pt}}}}" or a YAML file holding one',
    )
    ev.add_argument("--out", type=Path, metavar="JSON", help="write the metrics as JSON")
    ev.add_argument("--per-query", action="store_true", help="also write per-query values into the JSON")
    ev.add_argument("--report", type=Path, metavar="DIR", help="write an HTML report with figures into DIR")
    ev.add_argument("--root", type=Path, help="folder image paths start from (default: the CSV's folder)")
    ev.add_argument("--worst-by", metavar="M,...", help="report: metrics choosing the worst queries (e.g. cmc/1,map/5)")
    ev.add_argument("--report-queries", metavar="ROW,...", help="report: also draw these queries (CSV data rows)")
    ev.add_argument("--n-queries", type=int, default=5, help="report: worst queries per metric (default 5)")
    ev.add_argument("--n-instances", type=int, default=5, help="report: results shown per query (default 5)")
    ev.set_defaults(func=_run_evaluate)
