"""`rd-interp enrich`: GO enrichment of SAE latents from pooled scores (an encode folder or plain files)."""

from __future__ import annotations

import argparse
import json

from rd_interp.cli.args import add_config_args, config_from_args
from rd_interp.enrich.config import EnrichConfig

ORDER = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enrich", help="GO enrichment of SAE latents from pooled per-protein scores",
        description="Test every latent's study set (top-N proteins by score, or score >= tau x max) for GO "
                    "over-representation with goatools-identical statistics (Fisher exact, propagation over "
                    "is_a + part_of, BH per latent per namespace or globally), then write real/ (table.tsv, "
                    "latents.tsv, best_terms.tsv, summary.json, result.json), the permuted-label null control "
                    "and enrich.json to --out.")
    p.add_argument("encoded", nargs="?", default=None,
                   help="folder written by `rd-interp sae encode` (or give --scores and --proteins)")
    p.add_argument("--scores", default=None,
                   help="scipy.sparse .npz (save_npz) of [n_proteins, n_latents] per-protein latent scores")
    p.add_argument("--proteins", default=None,
                   help="protein ids in the scores' row order: one id per line (first column of a TSV works)")
    p.add_argument("--decoder-share", default=None,
                   help=".npy float array [n_latents]: decoder share on the base block, to stratify the summary")
    p.add_argument("--base-fraction", type=float, default=None,
                   help="with --decoder-share: the base block's share of the SAE's input dimensions")
    p.add_argument("--data", default=None, help="a data stage folder (annotations + ontology of the analysis set)")
    p.add_argument("--annotations", default=None,
                   help="annotations (TSV protein<TAB>GO[<TAB>NS], GAF or UniProt); default: the shipped set")
    p.add_argument("--obo", default=None, help="GO OBO file (default: the shipped GO release)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the null permutation (default: the SAE's seed recorded by encode, else 0)")
    p.add_argument("--out", required=True, help="output folder")
    add_config_args(p, EnrichConfig, table="enrich")
    p.set_defaults(func=_cmd_enrich)


def _cmd_enrich(args: argparse.Namespace) -> int:
    from rd_interp.enrich import run as enrich_stage
    from rd_interp.io import datasets
    from rd_interp.io.manifest import file_input, open_stage

    cfg = config_from_args(EnrichConfig, args, table="enrich")
    if args.encoded:
        inputs = {"scores": open_stage(args.encoded)}
    elif args.scores and args.proteins:
        from rd_interp.io.integrity import load_sparse_npz

        # Read once through the integrity layer so a damaged file is named (the stage's reader would raise
        # a bare BadZipFile); cheap next to the enrichment itself.
        load_sparse_npz(args.scores, "score matrix", "write it again (scipy.sparse.save_npz)")
        inputs = {"scores": file_input(args.scores), "proteins": file_input(args.proteins)}
        if args.decoder_share:
            if args.base_fraction is None:
                raise ValueError("--decoder-share needs --base-fraction (the base block's share of the dimensions)")
            inputs["decoder_share"] = file_input(args.decoder_share)
            inputs["base_fraction"] = args.base_fraction
    else:
        raise ValueError("give an encode folder (ENCODED) or both --scores and --proteins")
    if args.data:
        inputs["data"] = open_stage(args.data)
    else:
        inputs["data"] = {"annotations": file_input(args.annotations or datasets.shipped_annotations()),
                          "ontology": file_input(args.obo or datasets.shipped_obo())}
    m = enrich_stage.run(inputs, cfg, args.out, seed=args.seed)
    summary = json.loads((m.dir / "enrich.json").read_text(encoding="utf-8"))
    real = summary["real"]
    print(json.dumps({
        "out": str(args.out), "n_latents": real["n_latents"], "n_latents_tested": real["n_latents_tested"],
        "n_latents_capturing": real["n_latents_capturing"], "n_terms_captured": real["n_terms_captured"],
        "n_terms_nonredundant": real["n_terms_nonredundant"],
        **({"null": {m: {k: v for k, v in d.items() if k != "null"} for m, d in summary["null"]["metrics"].items()
                     if m == "n_terms_nonredundant"}} if "null" in summary else {}),
        "seconds": m.seconds,
    }))
    return 0
