"""`rd-interp sae train | encode | eval`: the SAE stages on stage folders or plain embedding stores."""

from __future__ import annotations

import json

from rd_interp.cli.args import add_config_args, config_from_args
from rd_interp.sae.config import EncodeConfig, SAETrainConfig

ORDER = 40


def register(subparsers) -> None:
    p = subparsers.add_parser("sae", help="train / encode with / evaluate sparse autoencoders")
    sub = p.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")

    t = sub.add_parser("train", help="train an SAE (TopK+AuxK by default) and evaluate it on held-out proteins",
                       description="Train one SAE on a store (a folder written by `rd-interp embed`, an rd store, "
                                   "or a stage folder holding one) and evaluate it on proteins held out by the "
                                   "package's one protein split. Writes OUT/sae/ (sae.safetensors + cfg.json), "
                                   "OUT/metrics.json and OUT/manifest.json. Rerunning resumes from checkpoints.")
    t.add_argument("--store", required=True, help="embedding store, or a stage folder holding one")
    t.add_argument("--columns", default=None,
                   help="column block 'a:b' (e.g. the base prefix or the residual block of an rd space)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batch order (default 0)")
    t.add_argument("--label", default=None, help="name of the space in reports (default: the store's model)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(t, SAETrainConfig, table="sae")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("encode", help="pooled SAE activations per protein (the scores `rd-interp enrich` reads)",
                       description="Encode every protein of the SAE's training store (or --store) and pool its "
                                   "residue activations: OUT/scores.npz + OUT/proteins.txt (+ decoder_share.npy "
                                   "for an SAE on a whole rd store).")
    e.add_argument("sae_dir", help="folder written by `rd-interp sae train`")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--store", default=None, help="encode this store instead of the SAE's training store")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_config_args(e, EncodeConfig, table="encode")
    e.set_defaults(func=cmd_encode)

    v = sub.add_parser("eval", help="held-out metrics of a saved SAE (FVU, L0, dead/dense fractions ...)")
    v.add_argument("sae_dir", help="folder written by `rd-interp sae train`")
    v.add_argument("--store", default=None, help="evaluate on this store (default: the SAE's training store)")
    v.add_argument("--rows", choices=["heldout", "all"], default="heldout",
                   help="the proteins held out at training (default, re-derived and checked) or all rows")
    v.add_argument("--json", help="also write the metrics to this JSON file")
    v.set_defaults(func=cmd_eval)
    x = sub.add_parser("export", help="write an SAE in another tool's format (SAELens)",
                       description="Write SAE_DIR as a folder that `sae_lens.SAE.load_from_disk` loads, with our input "
                                   "normalisation folded into the weights exactly, so SAELens' encodings of RAW "
                                   "embeddings equal ours (to float rounding). Our format stays the source of truth.")
    x.add_argument("sae_dir", help="folder written by `rd-interp sae train`")
    x.add_argument("--format", choices=["saelens"], default="saelens")
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--model-name", default=None, help="metadata.model_name for SAELens (default: the source model)")
    x.set_defaults(func=cmd_export)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_train(args) -> int:
    from rd_interp.io.inputs import open_store
    from rd_interp.sae import run as sae_stage

    _threads(args.threads)
    cfg = config_from_args(SAETrainConfig, args, table="sae")
    store, _ = open_store(args.store)
    label = args.label or str(store.manifest.get("model") or store.path.name)
    m = sae_stage.train({"store": args.store}, cfg, args.out, seed=args.seed, columns=args.columns, label=label,
                        device=args.device, progress=not args.no_progress)
    met = m.result["metrics"]
    print(json.dumps({k: met[k] for k in ("fvu", "mse", "cosine", "l0", "dead_fraction", "dense_fraction")}))
    return 0


def cmd_encode(args) -> int:
    from rd_interp.io.manifest import open_stage
    from rd_interp.sae import run as sae_stage

    _threads(args.threads)
    cfg = config_from_args(EncodeConfig, args, table="encode")
    m = sae_stage.encode({"sae": open_stage(args.sae_dir)}, cfg, args.out, store=args.store)
    print(json.dumps({"out": str(args.out), **{k: m.result[k] for k in ("n_proteins", "n_latents", "nnz")}}))
    return 0


def cmd_export(args) -> int:
    from rd_interp.sae.export import export_saelens
    from rd_interp.sae.io import load_sae

    sae = load_sae(args.sae_dir)
    out = export_saelens(sae, args.out, metadata={"model_name": args.model_name} if args.model_name else None)
    print(json.dumps({"out": str(out), "format": args.format, "d_in": sae.d_in, "n_latents": sae.n_latents}))
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from rd_interp.io.atomic import write_json
    from rd_interp.io.inputs import input_store, open_store
    from rd_interp.io.manifest import is_stage_dir, open_stage
    from rd_interp.sae.io import load_sae
    from rd_interp.sae.metrics import evaluate
    from rd_interp.sae.run import heldout_rows

    sae = load_sae(args.sae_dir)
    if args.store:
        store = open_store(args.store)[0]
    elif is_stage_dir(args.sae_dir):
        store = input_store(open_stage(args.sae_dir))
    else:
        raise ValueError(f"{args.sae_dir}: not a folder of `rd-interp sae train`; pass --store")
    rows = heldout_rows(sae, store) if args.rows == "heldout" else None
    metrics = evaluate(sae, store, columns=(sae.provenance.source or {}).get("columns"), rows=rows)
    if args.json:
        write_json(args.json, metrics)
    print(json.dumps(metrics, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    return 0
