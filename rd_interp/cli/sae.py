"""`rd-interp sae train` / `rd-interp sae eval`: sparse autoencoders on an embedding store (or .npy)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

ORDER = 40

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("sae", help="train / evaluate sparse autoencoders on embeddings")
    sub = p.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")

    t = sub.add_parser("train", help="train an SAE (TopK+AuxK by default) and evaluate it on held-out proteins")
    _add_data_args(t)
    t.add_argument("--out", required=True, help="output directory (sae.safetensors + cfg.json)")
    t.add_argument("--config", help="TOML/JSON file with [sae] and [train] tables (flags override it)")
    t.add_argument("--arch", choices=["topk", "batchtopk", "relu"], help="architecture (default topk)")
    t.add_argument("--n-latents", type=int, help="dictionary size (default 4096)")
    t.add_argument("--k", type=int, help="active latents per vector (default 32)")
    t.add_argument("--l1-coeff", type=float, help="ReLU only: L1 weight (default 5)")
    t.add_argument("--steps", type=int, help="optimizer steps (default: 5 epochs, at most 50M vectors)")
    t.add_argument("--tokens", type=int, help="training vectors instead of --steps")
    t.add_argument("--batch-size", type=int, help="vectors per step (default 4096)")
    t.add_argument("--lr", type=float, help="learning rate (default 2e-4*sqrt(2^14/n_latents))")
    t.add_argument("--seed", type=int, help="seed for init, data order and split (default 0)")
    t.add_argument("--device", help="auto|cpu|cuda (default auto)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 500)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="held-out metrics of a saved SAE (FVU, L0, dead/dense fractions ...)")
    e.add_argument("sae_dir", help="directory written by `sae train`")
    _add_data_args(e, required=False)
    e.add_argument("--rows", choices=["heldout", "all"], default="heldout",
                   help="evaluate on the held-out split recorded at training (default) or on all rows")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.set_defaults(func=cmd_eval)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--store", help="embedding store directory")
    g.add_argument("--npy", help="a float [N, D] .npy array instead of a store (memory-mapped)")
    p.add_argument("--columns", help="column subset 'a:b' (e.g. the base prefix of an rd space) or 'i,j,k'")
    p.add_argument("--holdout", type=float, default=None,
                   help="held-out fraction (by protein for a store; default 0.05)")


def _open_data(args):
    import numpy as np

    if args.store:
        from rd_interp.io.store import EmbeddingStore

        return EmbeddingStore(args.store), {"store": str(Path(args.store).resolve())}
    path = Path(args.npy)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D [N, D] array, got shape {arr.shape}")
    return arr, {"npy": str(path.resolve())}


def _source(data, columns, src: dict):
    """Wrap the input so errors name the file (not just "array")."""
    from rd_interp.sae.data import DataSource

    return DataSource(data, columns, name=src.get("npy") or src.get("store"))


def cmd_train(args) -> int:
    from rd_interp.io.atomic import write_json
    from rd_interp.io.serialize import from_dict, to_dict
    from rd_interp.sae.data import split_rows
    from rd_interp.sae.io import save_sae
    from rd_interp.sae.metrics import evaluate
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import TrainConfig, train_sae

    sae_d: dict = {}
    train_d: dict = {}
    holdout = 0.05
    if args.config:
        path = Path(args.config)
        raw = _read_table(path)
        unknown = sorted(set(raw) - {"sae", "train", "holdout"})
        if unknown:
            raise ValueError(f"{path}: unknown table(s) {unknown}; allowed: sae, train, holdout")
        sae_d = dict(raw.get("sae", {}))
        train_d = dict(raw.get("train", {}))
        holdout = float(raw.get("holdout", holdout))
    for key, val in (("architecture", args.arch), ("n_latents", args.n_latents), ("k", args.k),
                     ("l1_coeff", args.l1_coeff)):
        if val is not None:
            sae_d[key] = val
    for key, val in (("n_steps", args.steps), ("n_tokens", args.tokens), ("batch_size", args.batch_size),
                     ("lr", args.lr), ("seed", args.seed), ("device", args.device), ("num_threads", args.threads),
                     ("checkpoint_every", args.checkpoint_every)):
        if val is not None:
            train_d[key] = val
    if args.holdout is not None:
        holdout = args.holdout
    sae_cfg = from_dict(SAEConfig, sae_d, "sae")
    train_cfg = from_dict(TrainConfig, train_d, "train")
    data, src = _open_data(args)
    data = _source(data, args.columns, src)
    train_rows, held_rows = split_rows(data, holdout, seed=train_cfg.seed)
    out = Path(args.out)
    ckpt = out / "checkpoint"
    sae = train_sae(data, sae_cfg, train_cfg, rows=train_rows, checkpoint_dir=ckpt, progress=not args.no_progress)
    metrics = evaluate(sae, data, rows=held_rows if held_rows.size else None)
    extra = {"split": {"holdout": holdout, "seed": train_cfg.seed, "n_train_rows": int(train_rows.size),
                       "n_heldout_rows": int(held_rows.size), "by": "protein" if args.store else "row"},
             "metrics": {"heldout": metrics}, "input": src, "config": {"sae": to_dict(sae_cfg),
                                                                       "train": to_dict(train_cfg)}}
    save_sae(sae, out, extra)
    write_json(out / "metrics.json", metrics)
    # The checkpoint is only needed while training; the saved SAE is the result.
    (ckpt / "checkpoint.pt").unlink(missing_ok=True)
    if ckpt.is_dir() and not any(ckpt.iterdir()):
        ckpt.rmdir()
    print(json.dumps({k: metrics[k] for k in ("fvu", "mse", "cosine", "l0", "dead_fraction", "dense_fraction")}))
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from rd_interp.io.atomic import write_json
    from rd_interp.sae.data import split_rows
    from rd_interp.sae.io import load_sae
    from rd_interp.sae.metrics import evaluate

    sae = load_sae(args.sae_dir)
    cfg = sae.saved_cfg_
    if not args.store and not args.npy:
        inp = cfg.get("input") or {}
        if "store" in inp:
            args.store = inp["store"]
        elif "npy" in inp:
            args.npy = inp["npy"]
        else:
            raise ValueError(f"{args.sae_dir}: cfg.json records no input; pass --store or --npy")
    data, src = _open_data(args)
    columns = args.columns if args.columns is not None else (cfg.get("source") or {}).get("columns")
    data = _source(data, columns, src)
    rows = None
    if args.rows == "heldout":
        split = cfg.get("split") or {}
        holdout = args.holdout if args.holdout is not None else split.get("holdout", 0.05)
        _, rows = split_rows(data, holdout, seed=int(split.get("seed", 0)))
        if rows.size == 0:
            raise ValueError("held-out split is empty; use --rows all")
    metrics = evaluate(sae, data, rows=rows)
    if args.json:
        write_json(args.json, metrics)
    print(json.dumps(metrics, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    return 0


def _read_table(path: Path) -> dict:
    from rd_interp.io.serialize import tomllib  # stdlib on 3.11+, tomli before

    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot parse: {exc}") from None
