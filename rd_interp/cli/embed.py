"""`rd-interp embed` (FASTA -> embedding store) and `rd-interp family train` (train an ESM-2-architecture family)."""

from __future__ import annotations

import argparse

from rd_interp.cli.args import add_config_args, config_from_args
from rd_interp.io.manifest import file_input
from rd_interp.plm.config import EmbedConfig

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="per-residue embeddings of a FASTA file into a resumable store",
                       description="Embed every protein of FASTA with an ESM-2 model or a shipped family member "
                                   "into OUT/store (an embedding store) and write OUT/manifest.json, which "
                                   "`rd-interp distill` and `rd-interp sae train` read. Rerunning the same "
                                   "command resumes an interrupted run.")
    p.add_argument("fasta", help="FASTA file (.gz ok)")
    p.add_argument("--model", default="mini-L",
                   help="ESM-2 size (8M, 35M, 150M, 650M, 3B, 15B), fair-esm name, shipped member "
                        "(mini-S, mini-M, mini-L) or a .pt checkpoint path (default: mini-L)")
    p.add_argument("--out", required=True, help="output folder (the store goes to OUT/store)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    add_config_args(p, EmbedConfig, table="models")
    p.set_defaults(func=_embed)

    f = sub.add_parser("family", help="train an ESM-2-architecture model family (MLM) on your sequences")
    fsub = f.add_subparsers(dest="family_command", metavar="ACTION")
    t = fsub.add_parser("train", help="train the members of a family config", description=(
        "Masked-language-model training (ESM-2 recipe) of fair-esm ESM2 models of increasing size. "
        "Resumable: rerun the same command. Default config = the shipped mini family."))
    t.add_argument("--fasta", default=None, help="training sequences (default: the shipped training pool)")
    t.add_argument("--out", required=True, help="output directory for <member>.pt, <member>.json, family.json")
    t.add_argument("--config", default=None, help="TOML/JSON FamilyConfig (members, crop, batch_tokens, ...)")
    t.add_argument("--only", default=None, help="comma-separated member names to train (others can run in parallel)")
    t.add_argument("--work-dir", default=None, help="training-state checkpoints (default OUT/.train_state)")
    t.set_defaults(func=_family_train)
    f.set_defaults(func=lambda args: (f.print_help(), 2)[1])


def _embed(args) -> int:
    import torch

    from rd_interp.plm import run as embed_stage

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(EmbedConfig, args, table="models")
    m = embed_stage.run({"sequences": file_input(args.fasta)}, cfg, args.out, model=args.model,
                        device=args.device, fasta=args.fasta, progress=not args.no_progress)
    r = m.result
    truncated = f"; {r['n_truncated']} longer than {cfg.max_residues} residues truncated" if r["n_truncated"] else ""
    print(f"{args.out}: {r['n_proteins']} proteins, {r['n_rows']} residues, dim {r['dim']} "
          f"({r['model']} layer {r['layer']}){truncated}")
    return 0


def _family_train(args) -> int:
    from rd_interp.io.serialize import load_config
    from rd_interp.plm.family import FamilyConfig, train_family

    if args.fasta is None:
        from rd_interp.io.datasets import shipped_train_pool

        args.fasta = str(shipped_train_pool())
    cfg = load_config(FamilyConfig, args.config) if args.config else FamilyConfig()
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    summary = train_family(args.fasta, args.out, cfg, only=only, work_dir=args.work_dir)
    for name in summary["order"]:
        m = summary["members"][name]
        print(f"{name}: {m['layers']}x{m['dim']}, {m['n_params']} params, {m['tokens_seen']} tokens, "
              f"held-out perplexity {m['heldout']['perplexity']:.3f} (unigram {m['heldout']['unigram_perplexity']:.3f})")
    return 0
