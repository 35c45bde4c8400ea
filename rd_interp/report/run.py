"""The report stage: summary.json, report.html, report.md and figures of a set of enrich stages."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.report.atlas_run import ATLAS, write_run_atlas
from rd_interp.report.config import ReportConfig
from rd_interp.report.render import render
from rd_interp.report.summary import build_summary

STAGE = "report"
#: Everything render() may write (figures/ holds the PNGs), and the atlas.
OUTPUTS = ("report.html", "report.md", "summary.json", "run_info.json", "figures", ATLAS)


def run(inputs: dict, cfg: ReportConfig, out_dir: str | Path, *, seed: int = 0, config: dict | None = None,
        device: str | None = None, run_info: dict | None = None,
        command: str = "rd-interp report (from stage folders)", extra: dict | None = None,
        map_jobs: Callable[[Callable, list[tuple]], list] | None = None) -> Manifest:
    """Render the report of inputs["enrich"] (enrich-stage manifests, spaces in report order).

    `map_jobs(fn, jobs)`: a run's worker pool (WorkerPool.map); given, the atlas's per-SAE entries are built
    in the workers while this process renders the report (a thread here only waits for them)."""
    t0 = time.perf_counter()
    enrich = list(inputs["enrich"])
    summary = build_summary(enrich, cfg, seed=seed, config=config, device=device, command=command, extra=extra)
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    atlas_args = (enrich, d / ATLAS)
    atlas_kw = {"title": f"{cfg.title}: latent atlas", "top_k": cfg.atlas_top_proteins, "map_jobs": map_jobs}
    with ThreadPoolExecutor(max_workers=1) as side:
        atlas = side.submit(write_run_atlas, *atlas_args, **atlas_kw) if cfg.atlas and map_jobs else None
        paths = render(summary, d, figures=cfg.figures, run_info=run_info)
        if atlas is not None:
            atlas.result()
        elif cfg.atlas:
            write_run_atlas(*atlas_args, **atlas_kw)
    if cfg.atlas:
        paths[ATLAS] = d / ATLAS
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs={"enrich": enrich}, outputs=sorted(paths),
                          params={"seed": seed},
                          result={"run_id": summary["run_id"], "files": sorted(paths)},
                          seconds=time.perf_counter() - t0)
