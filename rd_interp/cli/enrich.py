"""`rd-interp enrich`: GO enrichment of saved per-protein latent scores (no SAE needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enrich", help="GO enrichment of SAE latents from a saved sparse score matrix",
        description="Test every latent's study set (top-N proteins by score, or score >= tau x max) for GO "
                    "over-representation with goatools-identical statistics (Fisher exact, propagation over "
                    "is_a + part_of, BH per latent per namespace), then write table.tsv, latents.tsv, "
                    "best_terms.tsv, summary.json and result.json to --out. Optionally a permuted-label null.")
    p.add_argument("--scores", required=True,
                   help="scipy.sparse .npz (save_npz) of [n_proteins, n_latents] per-protein latent scores")
    p.add_argument("--proteins", required=True,
                   help="protein ids in the scores' row order: a text file, one id per line (first column "
                        "of a TSV also works)")
    p.add_argument("--annotations", default=None,
                   help="annotations (TSV protein<TAB>GO[<TAB>NS], GAF or UniProt); default: shipped eval set")
    p.add_argument("--obo", default=None, help="GO OBO file (default: the shipped GO release)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mode", choices=["top_n", "fraction_of_max"], default="top_n")
    p.add_argument("--top-n", type=int, default=50, help="study-set size in top_n mode (default 50)")
    p.add_argument("--tau", type=float, default=0.5, help="fraction of the latent's max in fraction_of_max mode")
    p.add_argument("--min-proteins", type=int, default=5,
                   help="skip latents active on fewer proteins than this (default 5)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--min-study-count", type=int, default=3)
    p.add_argument("--alternative", choices=["greater", "two-sided", "less"], default="greater")
    p.add_argument("--global-bh", action="store_true",
                   help="also correct across all latents x terms and use that for 'captured' (stricter)")
    p.add_argument("--background", choices=["namespace", "annotated", "all"], default="namespace")
    p.add_argument("--table", choices=["significant", "hits"], default="significant",
                   help="rows kept in table.tsv: p_adj < alpha (default) or every term with study count >= 1")
    p.add_argument("--decoder-share", default=None,
                   help=".npy float array [n_latents]: decoder share on the base prefix, to stratify the summary")
    p.add_argument("--null-seeds", type=int, nargs="*", default=None,
                   help="also run the permuted-label null control with these seeds (writes null/)")
    p.set_defaults(func=_cmd_enrich)


def read_protein_ids(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: protein id file not found")
    ids = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            s = line.rstrip("\n").split("\t")[0].strip()
            if not s or s.startswith("#"):
                continue
            ids.append(s)
    if len(set(ids)) != len(ids):
        seen = set()
        for i, s in enumerate(ids):
            if s in seen:
                raise ValueError(f"{path}: protein id {s!r} appears more than once")
            seen.add(s)
    return ids


def _cmd_enrich(args: argparse.Namespace) -> int:
    import numpy as np
    import scipy.sparse as sp

    from rd_interp.enrich import EnrichConfig, GOEnricher, StudySetConfig, enrich_latents, null_control
    from rd_interp.io.atomic import write_json

    spath = Path(args.scores)
    if not spath.is_file():
        raise FileNotFoundError(f"{spath}: score matrix not found")
    try:
        scores = sp.load_npz(spath).tocsr()
    except (ValueError, OSError, KeyError) as exc:
        raise ValueError(f"{spath}: not a scipy.sparse .npz matrix ({exc})") from None
    ids = read_protein_ids(args.proteins)
    if len(ids) != scores.shape[0]:
        raise ValueError(f"{args.proteins}: {len(ids)} protein ids but {spath} has {scores.shape[0]} rows")
    from rd_interp.io.annotations import read_annotations
    from rd_interp.io.go import Ontology

    onto = Ontology.load(args.obo)
    if args.annotations is None:
        from rd_interp.io.datasets import shipped_annotations

        args.annotations = shipped_annotations()
    ann = read_annotations(args.annotations, ontology=onto)
    cfg = EnrichConfig(alpha=args.alpha, min_study_count=args.min_study_count, alternative=args.alternative,
                       global_bh=args.global_bh, background=args.background, table=args.table)
    cfg.validate()
    scfg = StudySetConfig(mode=args.mode, top_n=args.top_n, tau=args.tau, min_proteins=args.min_proteins)
    scfg.validate()
    share = None
    if args.decoder_share:
        share = np.load(args.decoder_share, allow_pickle=False)
        if share.shape != (scores.shape[1],):
            raise ValueError(f"{args.decoder_share}: expected shape ({scores.shape[1]},), got {share.shape}")
    enricher = GOEnricher(ids, ann, onto, cfg)
    res = enrich_latents(scores, ids, ann, onto, cfg, study_cfg=scfg, enricher=enricher)
    res.meta["inputs"] = {"scores": str(spath), "proteins": str(args.proteins),
                          "annotations": str(args.annotations), "obo": str(getattr(onto, "path", args.obo)),
                          "ontology_release": getattr(onto, "release", None)}
    out = Path(args.out)
    res.save(out, decoder_share=share)
    summary = res.summary(decoder_share=share)
    if args.null_seeds is not None:
        seeds = args.null_seeds or [0]
        nc = null_control(scores, ids, ann, onto, cfg, study_cfg=scfg, seeds=seeds, enricher=enricher, real=res)
        for seed, r in zip(nc.seeds, nc.results):
            r.save(out / "null" / f"seed{seed}")
        write_json(out / "null" / "null_control.json", nc.summary())
        summary["null_control"] = nc.summary()
    print(json.dumps({
        "out": str(out), "n_latents": summary["n_latents"], "n_latents_tested": summary["n_latents_tested"],
        "n_latents_capturing": summary["n_latents_capturing"], "n_terms_captured": summary["n_terms_captured"],
        **({"null_mean_terms_captured": summary["null_control"]["null_mean_terms_captured"]}
           if "null_control" in summary else {}),
        "seconds": round(res.meta["seconds"], 2),
    }))
    return 0
