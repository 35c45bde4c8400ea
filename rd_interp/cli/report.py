"""`rd-interp report`: render a report from enrich stage folders, or re-render one from its summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="render the HTML/Markdown/JSON report from enrich folders, or re-render it from summary.json",
        description=(
            "With folders written by `rd-interp enrich` (one per SAE; spaces in the order given): gather them "
            "and everything upstream (encode, SAE, stores, data) into summary.json and render report.html "
            "(self-contained), report.md and figures/*.png into --out. With a summary.json or a run folder "
            "holding one (or report/summary.json): re-render it, nothing recomputed (a run_info.json beside it "
            "is carried over); this is how to restyle or move a report."
        ),
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="enrich stage folders, or one summary.json / run folder to re-render")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the folder holding summary.json; required for enrich folders)")
    p.add_argument("--no-figures", action="store_true", help="tables only; skip matplotlib figures")
    p.add_argument("--title", default=None, help="report title (enrich folders only)")
    p.set_defaults(func=run)

    a = subparsers.add_parser(
        "atlas", help="write the latent atlas (one offline HTML page) of a run or of enrich folders",
        description="Every latent of every SAE: its terms, firing frequency, activation histogram, decoder share and "
                    "top proteins with per-residue activation strips, searchable by GO term and protein. One "
                    "self-contained file that opens from disk (nothing is fetched). `rd-interp run` writes it to "
                    "OUT/report/atlas.html unless report.atlas = false.")
    a.add_argument("sources", nargs="+", metavar="SOURCE", help="a run folder, or enrich stage folders")
    a.add_argument("--out", default=None, help="output file (default: RUN/report/atlas.html)")
    a.add_argument("--top-proteins", type=int, default=10, help="top proteins with strips per latent (default 10)")
    a.set_defaults(func=atlas)


def _summary_path(source: Path) -> Path:
    if source.is_dir():
        for cand in (source / "summary.json", source / "report" / "summary.json"):
            if cand.is_file():
                return cand
    return source


def _enrich_stages(sources: list[Path]) -> tuple[list, Path | None]:
    """Enrich manifests of a run folder (its stage index) or of enrich stage folders."""
    from rd_interp.io.atomic import read_json
    from rd_interp.io.manifest import is_stage_dir, load_manifest

    if len(sources) == 1 and (sources[0] / ".rd_interp" / "run.json").is_file():
        index = read_json(sources[0] / ".rd_interp" / "run.json")["stages"]
        names = [n for n in index if n.startswith("enrich-")]
        if not names:
            raise ValueError(f"{sources[0]}: the run has no finished enrichment stages")
        return [load_manifest(sources[0] / index[n]) for n in names], sources[0]
    bad = [str(s) for s in sources if not is_stage_dir(s)]
    if bad:
        raise ValueError(f"{bad[0]}: neither a run folder nor a stage folder")
    stages = [load_manifest(s) for s in sources]
    wrong = [m for m in stages if m.stage != "enrich"]
    if wrong:
        raise ValueError(f"{wrong[0].dir}: not an enrich folder (a {wrong[0].stage!r} stage)")
    return stages, None


def atlas(args: argparse.Namespace) -> int:
    from rd_interp.report.atlas_run import ATLAS, write_run_atlas

    stages, run_dir = _enrich_stages([Path(s) for s in args.sources])
    if args.out is None and run_dir is None:
        raise ValueError("--out is required when the atlas is made from enrich folders")
    out = Path(args.out) if args.out else run_dir / "report" / ATLAS
    info = write_run_atlas(stages, out, top_k=args.top_proteins)
    print(f"atlas: {out} ({info.get('bytes', 0) / 1e6:.1f} MB)")
    return 0


def run(args: argparse.Namespace) -> int:
    from rd_interp.io.manifest import is_stage_dir, load_manifest, open_stage

    sources = [Path(s) for s in args.sources]
    if all(is_stage_dir(s) for s in sources):
        from rd_interp.report import run as report_stage
        from rd_interp.report.config import ReportConfig

        if args.out is None:
            raise ValueError("--out is required when rendering from enrich folders")
        stages = [open_stage(s) for s in sources]
        bad = [str(m.dir) for m in stages if m.stage != "enrich"]
        if bad:
            raise ValueError(f"{bad[0]}: not an enrich folder (a {load_manifest(bad[0]).stage!r} stage)")
        cfg = ReportConfig(figures=not args.no_figures, **({"title": args.title} if args.title else {}))
        m = report_stage.run({"enrich": stages}, cfg, args.out)
        written = {name: m.dir / name for name in m.files}
    else:
        if len(sources) != 1:
            raise ValueError("give one summary.json or run folder to re-render, or enrich stage folders")
        from rd_interp.report import load_run_info, load_summary, render

        source = sources[0]
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
