"""`rd-interp embed` (FASTA -> embedding store) and `rd-interp family train` (train an ESM-2-architecture family)."""

from __future__ import annotations

import argparse

ORDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="per-residue embeddings of a FASTA file into a resumable store",
                       description="Embed every protein of FASTA with an ESM-2 model or a shipped family member. "
                                   "Rerunning the same command resumes an interrupted run.")
    p.add_argument("fasta", help="FASTA file (.gz ok)")
    p.add_argument("--model", default="mini-L",
                   help="ESM-2 size (8M, 35M, 150M, 650M, 3B, 15B), fair-esm name, shipped member "
                        "(mini-S, mini-M, mini-L) or a .pt checkpoint path (default: mini-L)")
    p.add_argument("--out", required=True, help="store directory")
    p.add_argument("--layer", type=int, default=None, help="layer to extract (default: final)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage dtype")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--max-tokens", type=int, default=None, help="padded tokens per batch (default 8192 CPU / 32768 CUDA)")
    p.add_argument("--long-mode", choices=("truncate", "window"), default="truncate",
                   help="sequences over --max-residues: keep the first residues (default) or sliding windows")
    p.add_argument("--max-residues", type=int, default=1022)
    p.add_argument("--window-overlap", type=int, default=256)
    p.add_argument("--weights-dir", default=None, help="folder holding ESM-2 .pt files (checked before the torch hub cache)")
    p.add_argument("--autocast", choices=("auto", "none", "bf16", "fp16"), default="auto",
                   help="CUDA mixed precision (never used on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-fused-attention", action="store_true",
                   help="use fair-esm's own attention code instead of the fused (faster, equal to rounding) forward")
    p.add_argument("--no-progress", action="store_true")
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

    from rd_interp.plm.embed import EmbedConfig, embed_fasta

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EmbedConfig(model=args.model, layer=args.layer, dtype=args.dtype, device=args.device,
                      max_tokens=args.max_tokens, long_mode=args.long_mode, max_residues=args.max_residues,
                      window_overlap=args.window_overlap, weights_dir=args.weights_dir, autocast=args.autocast,
                      fast=not args.no_fused_attention)
    store = embed_fasta(args.fasta, args.out, cfg, progress=not args.no_progress)
    size = store.nbytes
    print(f"{args.out}: {store.n_proteins} proteins, {store.n_rows} residues, dim {store.dim}, "
          f"{store.dtype}, {size / 1e6:.1f} MB ({store.manifest['model']} layer {store.manifest['layer']})")
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
