"""`rd-interp run`, `rd-interp demo`, `rd-interp config`, `rd-interp explain`: the end-to-end job."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ORDER = 0


def register(sub: argparse._SubParsersAction) -> None:
    stages = "data, embed, distill, sae, encode, enrich, report"

    p = sub.add_parser(
        "run", help="run the whole job from a TOML/JSON config (cached, resumable)",
        description="Run FASTA + annotations + ontology + model family -> embeddings -> reverse distillation -> "
                    "SAEs (several seeds) -> GO enrichment -> report. Each stage caches its outputs under "
                    "OUT/stages/ keyed by its inputs and config: re-running skips finished stages, changing one "
                    "option recomputes only what depends on it, and an interrupted run resumes.")
    p.add_argument("config", help="config file (.toml or .json); `rd-interp config` prints a template")
    _common(p, stages)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "demo", help="the job on the shipped offline data and model family (under 6 min on 2 CPU cores)",
        description="Run the pipeline on the shipped Swiss-Prot subset, GO ontology and mini model family "
                    "(mini-S -> mini-L), then print where the report is.")
    p.add_argument("--out", default="rd_interp_demo", help="output folder (default: %(default)s)")
    p.add_argument("--proteins", type=int, default=None, help="number of shipped proteins to use (default 1000)")
    _common(p, stages)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("config", help="print a config template (the demo defaults) as TOML",
                       description="Print the full run configuration with its defaults, as TOML with each option's "
                                   "help as a comment, to edit and pass to `rd-interp run`. With --check FILE, "
                                   "validate a config instead; with --upgrade FILE, rewrite a config that uses "
                                   "renamed keys (the old file is kept as FILE.bak).")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", metavar="FILE", help="validate this config and exit")
    g.add_argument("--upgrade", metavar="FILE", help="migrate renamed keys of this config file in place")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("verify", help="check every cached stage of a run against its manifest (full checksums)",
                       description="Recompute the sha256 of every file every stage manifest under OUT/stages "
                                   "records (cached runs only check sizes and files up to 64 MiB). Exits 1 "
                                   "naming each damaged file; the next `rd-interp run` recomputes those stages.")
    p.add_argument("run_dir", help="output folder of `rd-interp run`/`demo`")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "explain", help="latents a new protein activates most, and their GO terms (needs a finished run)",
        description="Embed one or more sequences with the run's models, project them into the chosen space "
                    "(rd by default), encode with the run's SAE and list the most active latents with the GO "
                    "terms those latents were found enriched for.")
    p.add_argument("run_dir", help="output folder of a finished `rd-interp run`/`demo`")
    p.add_argument("query", help="a protein sequence (residue letters), or a FASTA file (./NAME for a file named "
                                 "with residue letters only)")
    p.add_argument("--space", default="rd", help="large | rd | rd.base | rd.residual | small (default: rd)")
    p.add_argument("--seed", type=int, default=None, help="which SAE seed (default: the first)")
    p.add_argument("--top", type=int, default=10, help="latents per protein (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--html", metavar="PATH", default=None,
                   help="also write a self-contained page with each latent's activation strip under the sequence")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.set_defaults(func=_cmd_explain)


def _common(p: argparse.ArgumentParser, stages: str) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="override the config's device")
    p.add_argument("--workers", type=int, default=None,
                   help="override the config's worker processes for the probe and the SAE units (0: automatic, 1: this "
                        "process)")
    p.add_argument("--until", default="report", help=f"stop after this stage ({stages})")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="recompute this stage kind even if cached (repeatable)")
    p.add_argument("--no-recompute", action="store_true",
                   help="fail (instead of recomputing with a warning) when a cached stage fails verification")


def _load(path: str):
    from rd_interp.config import RunConfig

    return RunConfig.load(path)


def _execute(cfg, args) -> int:
    from rd_interp.io.atomic import ensure_writable_dir
    from rd_interp.pipeline.run import Pipeline

    if args.device:
        cfg.device = args.device
    if args.workers is not None:
        cfg.workers = args.workers
        cfg.validate()
    ensure_writable_dir(cfg.out_dir or ".", "output folder (out_dir)")  # a file or read-only folder: fail now
    t0 = time.perf_counter()
    pipe = Pipeline(cfg, force=tuple(args.force), no_recompute=args.no_recompute,
                    progress=not getattr(args, "quiet", False))
    stages = pipe.run(until=args.until)
    print(f"finished in {time.perf_counter() - t0:.1f} s; stage times (s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in pipe.timings.items()))
    report = stages.get("report")
    if report is not None:
        for name in ("report.html", "report.md", "summary.json"):
            print(f"{'report:' if name == 'report.html' else '':8}{report.dir / name}")
    return 0


def _cmd_run(args) -> int:
    return _execute(_load(args.config), args)


def _cmd_demo(args) -> int:
    from rd_interp.config import demo_config

    cfg = demo_config(out_dir=args.out)
    if args.proteins is not None:
        cfg.data.max_proteins = args.proteins
    return _execute(cfg, args)


def _cmd_config(args) -> int:
    from rd_interp.config import RunConfig, demo_config, migrate
    from rd_interp.io.atomic import write_text
    from rd_interp.io.serialize import dumps_toml, read_config_file

    if args.check:
        cfg = RunConfig.load(args.check)
        print(f"{args.check}: OK ({len(cfg.models.family)} models, {len(cfg.sae.seeds)} SAE seeds, "
              f"spaces {cfg.sae.spaces})")
        return 0
    if args.upgrade:
        path = Path(args.upgrade)
        data, notes = migrate(read_config_file(path))
        RunConfig.from_dict(data)  # validate before writing anything
        if not notes:
            print(f"{path}: nothing to migrate")
            return 0
        path.with_name(path.name + ".bak").write_bytes(path.read_bytes())
        write_text(path, dumps_toml(data) if path.suffix != ".json" else json.dumps(data, indent=2) + "\n")
        for n in notes:
            print(f"{path}: {n.split(' (')[0]}")
        print(f"{path}: rewritten (old file kept as {path.name}.bak; comments are not carried over)")
        return 0
    sys.stdout.write(demo_config().to_toml())
    return 0


def _cmd_verify(args) -> int:
    from rd_interp.io.manifest import MANIFEST, load_manifest

    root = Path(args.run_dir)
    stage_dirs = sorted(p.parent for p in (root / "stages").glob(f"*/{MANIFEST}"))
    if not stage_dirs:
        raise FileNotFoundError(f"{root}: no finished stages under {root / 'stages'}")
    bad = 0
    for d in stage_dirs:
        try:
            problems = load_manifest(d).verify(full=True)
        except ValueError as exc:  # an unreadable manifest is one more damaged stage, not the end of the check
            problems = [str(exc)]
        for problem in problems:
            print(f"DAMAGED {problem}")
        bad += bool(problems)
    print(f"{root}: {len(stage_dirs)} stages checked, {bad} damaged")
    return 1 if bad else 0


def _cmd_explain(args) -> int:
    from rd_interp.pipeline.explain import explain, explain_page, position_ranges

    rows = explain(Path(args.run_dir), args.query, space=args.space, seed=args.seed, top=args.top,
                   device=args.device)
    if args.html:
        page = explain_page(rows, Path(args.html).expanduser())
        print(f"wrote {page}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for prot in rows:
        cut = (f", TRUNCATED to its first {prot['residues_used']}: set models.long_mode = 'window' to use all"
               if prot["truncated"] else "")
        name = f" {prot['name']}" if prot.get("name") else ""
        print(f"# {prot['id']}{name} ({prot['length']} aa{cut}) — space {prot['space']}, SAE seed {prot['seed']}")
        print(f"{'latent':>7} {'act':>8} {'max at':>6}  fires at (residues)  |  best GO terms (BH-adjusted p)")
        for lat in prot["latents"]:
            terms = "; ".join(f"{t['go_id']} {t['name']} ({t['p_adj']:.1e})" for t in lat["terms"][:3])
            where = position_ranges(lat["positions"])
            where = where if len(where) <= 40 else where[:39] + "…"
            print(f"{lat['latent']:>7} {lat['activation']:>8.3f} {lat['max_position']:>6}  {where}  |  "
                  f"{terms or '(no enriched term)'}")
        print()
    return 0
    for prot in rows:
        cut = (f", TRUNCATED to its first {prot['residues_used']}: set models.long_mode = 'window' to use all"
               if prot["truncated"] else "")
        print(f"# {prot['id']} ({prot['length']} aa{cut}) — space {prot['space']}, SAE seed {prot['seed']}")
        print(f"{'latent':>7} {'act':>8}  best GO terms (BH-adjusted p)")
        for lat in prot["latents"]:
            terms = "; ".join(f"{t['go_id']} {t['name']} ({t['p_adj']:.1e})" for t in lat["terms"][:3])
            print(f"{lat['latent']:>7} {lat['activation']:>8.3f}  {terms or '(no enriched term)'}")
        print()
    return 0
