"""`rd-interp distill fit | transform`: reverse distillation over embedding stores (or stage folders)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rd_interp.cli.args import add_config_args, config_from_args
from rd_interp.distill.config import DistillConfig

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="reverse distillation over embedding stores (fit / transform)",
                       description="Reverse distillation: [H_small, top PCs of what H_large adds], exact and "
                                   "streamed over stores of any size.")
    ds = p.add_subparsers(dest="distill_command", metavar="ACTION")

    f = ds.add_parser("fit", help="fit a (chain of) reverse distillation step(s) and save it",
                      description="Fit small -> large (-> chain ...) on a seeded subset of train_proteins "
                                  "proteins and save the model folder. Each later store is one more step whose "
                                  "small input is the accumulated rd embedding (or, with --mode direct, the "
                                  "smallest store).")
    _stores(f)
    f.add_argument("--out", required=True, help="model folder to write (chain.json + step_NN/)")
    f.add_argument("--seed", type=int, default=0, help="seed of the fit subset (default 0)")
    f.add_argument("--device", default="cpu", help="cpu, cuda or auto (statistics are float64 everywhere)")
    add_config_args(f, DistillConfig, table="distill")
    f.set_defaults(func=_cmd_fit)

    t = ds.add_parser("transform", help="write the rd embedding of stores with a fitted model to a new store",
                      description="Apply a fitted model to aligned stores and write the last step's output "
                                  "(or --step N) as a new embedding store. Resumable.")
    t.add_argument("--model", required=True, help="model folder written by `rd-interp distill fit`")
    _stores(t)
    t.add_argument("--out", required=True, help="output store folder")
    t.add_argument("--step", type=int, default=None, help="1-based step to write (default: the last)")
    t.add_argument("--dtype", choices=["float16", "float32"], default=None,
                   help="output store dtype (default: that of the largest input store)")
    t.add_argument("--device", default=None, help="override the model's device")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_transform)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _stores(p: argparse.ArgumentParser) -> None:
    p.add_argument("--small", required=True, help="embedding store (or embed stage folder) of the smallest model")
    p.add_argument("--large", required=True, help="embedding store of the next (larger) model")
    p.add_argument("--chain", nargs="*", default=[], metavar="STORE",
                   help="further stores of ever larger models, in order")


def _open(args: argparse.Namespace) -> list:
    from rd_interp.io.inputs import open_store

    paths = [args.small, args.large, *args.chain]
    for pth in paths:
        if not Path(pth).exists():
            raise FileNotFoundError(f"{pth}: embedding store not found")
    return [open_store(pth)[0] for pth in paths]


def _cmd_fit(args: argparse.Namespace) -> int:
    from rd_interp.distill.run import fit_chain

    cfg = config_from_args(DistillConfig, args, table="distill")
    stores = _open(args)
    names = [str(s.manifest.get("model") or Path(s.path).name) for s in stores]
    chain, fit = fit_chain(stores, cfg, names, seed=args.seed, device=args.device)
    chain.save(args.out, extra={"stores": [str(s.path) for s in stores], "fit": fit, "fit_seed": args.seed})
    summary = chain.summary()
    for st in summary["steps"]:
        print(f"{st['step']}: N={st['n_samples']} k {st['k_small']}->{st['k_large']}, "
              f"{st['n_significant_pcs']} PCs kept, R^2={st['r2']:.4f}, "
              f"residual top-{st['n_components']} captures {st['residual_captured_fraction']:.3f}")
    print(json.dumps({"model": str(args.out), "steps": len(summary["steps"])}))
    return 0


def _cmd_transform(args: argparse.Namespace) -> int:
    from rd_interp.distill import ReverseDistillationChain

    if not (Path(args.model) / "chain.json").is_file():
        raise FileNotFoundError(f"{args.model}: not a model directory written by `rd-interp distill fit`")
    chain = ReverseDistillationChain.load(args.model, device=args.device)
    stores = _open(args)
    step = None if args.step is None else args.step - 1
    out = chain.transform_stores(stores, args.out, step=step, dtype=args.dtype, progress=not args.no_progress)
    print(json.dumps({"store": str(out.path), "n_proteins": out.n_proteins, "n_rows": out.n_rows, "dim": out.dim}))
    return 0
