"""Held-out FVU of our TopK SAE recipe as a function of the encoder's initial column norm.

Why: the default `rd_interp.sae.model.ENCODER_INIT_NORM` (1/sqrt(3)) was chosen from this sweep; with unit-norm
encoder columns the recipe trailed sparsify by 0.045 FVU after 60 steps on `bench_sae.py`'s data. Same data,
settings and seed as `python analyses/bench_sae.py` (synthetic planted 216,384 x 480, 4,096 latents, k = 32,
batch 4,096), only the initial encoder norm changes.

    python analyses/sweep_sae_init.py                          # 60 steps, norms 0.2 ... 1.0 (~3 min on 2 cores)
    python analyses/sweep_sae_init.py --steps 200 --norms 0.57735,1.0

Prints one line per norm, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from bench_sae import our_train_config, split, synthetic


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--norms", default="0.2,0.35,0.45,0.57735,0.7,1.0", help="initial encoder column norms")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--heldout", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from rd_interp.sae import model
    from rd_interp.sae.metrics import fvu
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import default_lr, train_sae

    torch.set_num_threads(args.threads)
    Xtr, H = split(synthetic(args.rows + args.heldout, 480, seed=args.seed), args.heldout, args.seed)
    steps = args.steps
    cfg = our_train_config(steps, 4096, default_lr(4096), Xtr.shape[0])
    default = model.ENCODER_INIT_NORM
    out = {}
    try:
        for norm in [float(v) for v in args.norms.split(",") if v]:
            model.ENCODER_INIT_NORM = norm  # read by SparseAutoencoder.__init__
            t0 = time.perf_counter()
            sae = train_sae(Xtr, SAEConfig("topk", n_latents=4096, k=32), cfg, progress=False, seed=args.seed,
                            device="cpu")
            rec = np.concatenate([sae.forward(H[s:s + 4096]).numpy() for s in range(0, H.shape[0], 4096)])
            out[f"{norm:g}"] = fvu(H, rec)
            print(f"encoder init norm {norm:<8g} held-out FVU {out[f'{norm:g}']:.4f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    finally:
        model.ENCODER_INIT_NORM = default
    best = min(out, key=out.get)
    print(f"best: {best} (default {default:.5f})")
    benchlib.emit({"bench": "sae_init_sweep", "steps": steps, "fvu_by_init_norm": out, "best": best,
                   "default": default, "machine": benchlib.machine(args.threads)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
