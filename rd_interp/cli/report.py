"""`rd-interp report`: re-render a report from a finished run's summary.json (no recomputation)."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="re-render the HTML/Markdown/JSON report from a run's summary.json",
        description=(
            "Re-render report.html (self-contained), report.md, summary.json and figures/*.png from a summary. "
            "The argument is a summary.json file or a run directory holding summary.json (or report/summary.json); "
            "a run_info.json beside it (stage timings, device) is carried over. "
            "Nothing is recomputed, so this is how to restyle or move a report."
        ),
    )
    p.add_argument("source", metavar="RUN_DIR_OR_SUMMARY_JSON", help="summary.json or a run directory")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the folder holding summary.json)")
    p.add_argument("--no-figures", action="store_true", help="tables only; skip matplotlib figures")
    p.set_defaults(func=run)


def _summary_path(source: Path) -> Path:
    if source.is_dir():
        for cand in (source / "summary.json", source / "report" / "summary.json"):
            if cand.is_file():
                return cand
    return source


def run(args: argparse.Namespace) -> int:
    from rd_interp.report import load_run_info, load_summary, render

    source = Path(args.source)
    summary = load_summary(source)
    summary_path = _summary_path(source)
    run_info = load_run_info(summary_path)  # this run's timings/device, kept beside summary.json
    out = Path(args.out) if args.out else summary_path.parent
    written = render(summary, out, figures=not args.no_figures, run_info=run_info)
    print(f"report: {written['report.html']}")
    print(f"markdown: {written['report.md']}")
    n_fig = sum(1 for k in written if k.startswith("figures/"))
    print(f"summary: {written['summary.json']} ({n_fig} figures)")
    return 0
