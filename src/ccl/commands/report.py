"""``ccl report RUN_DIR... --out DIR``: compare evaluated runs (:func:`ccl.report.build_report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ccl.plots import TSNE_MAX_POINTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report RUN_DIR... --out DIR [--split test]`` to the ``ccl`` sub-parsers."""
    p = subparsers.add_parser(
        "report",
        help="compare evaluated runs: Markdown table, JSON and figures",
        description="Read run folders (config.json, metrics.jsonl, eval_<split>.json from "
        "`ccl evaluate`) and write report.md, report.json and PNG figures into --out.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--split", default="test", help="evaluated split: reads eval_<split>.json (default test)"
    )
    p.add_argument(
        "--tsne-max-points",
        type=int,
        default=TSNE_MAX_POINTS,
        help=f"subsample larger test sets for the t-SNE plots (default {TSNE_MAX_POINTS})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report; its warnings (damaged log lines) go to stderr, one line each. A run
    folder that cannot be read (``ReportError``) or an unwritable ``--out`` ends as one line
    in :func:`ccl.cli.main`."""
    from ccl.report import build_report

    report = build_report(
        args.run_dirs, args.out, split=args.split, tsne_max_points=args.tsne_max_points
    )
    for warning in report.data["warnings"]:
        print(f"ccl report: warning: {warning}", file=sys.stderr)
    print(f"report written to {report.md_path}")
    return 0
