"""Benchmark: rd_interp TopK SAE training vs SAELens (`sae-lens`) TopK training, same data, same run.

Both train n_latents=4096, k=32 TopK SAEs with batch 4096 for the same number of steps on the same
saved .npy (synthetic 200k x 480 with planted sparse structure and PLM-like per-dimension offsets, or
rows of an embedding store), with the same learning rate / warmup / decay, on the same number of CPU
threads. The peer runs as a subprocess in its own virtual environment (SAELens pins transformer-lens
etc., which we do not want in ours). Reported: training throughput (vectors/s over the whole fit,
including each tool's normalisation estimate) and held-out FVU of both, computed here with one formula
(float64 numerator and denominator summed separately) from each tool's reconstructions. SAELens is run
twice: dense activations (its default) and `use_sparse_activations=True` (its sparse decoder); the
faster one is the reference for the speed-up.

    python analyses/bench_sae.py --steps 120 --peer-python /work/.bench/saelens-venv/bin/python

Final line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PEER_SCRIPT = r'''
import json, sys, time, os
import numpy as np
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(args["seed"])
from importlib import metadata
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import SAETrainerConfig, LoggingConfig
from sae_lens.training.sae_trainer import SAETrainer

X = np.load(args["train"], mmap_mode="r")
H = np.load(args["heldout"])
B = args["batch"]

class Provider:
    """Shuffled batches over the whole training array (one permutation per epoch)."""
    def __init__(self):
        self.epoch, self.pos, self.perm = 0, 0, None
    def __iter__(self):
        return self
    def __next__(self):
        out = []
        need = B
        while need:
            if self.perm is None or self.pos >= len(self.perm):
                self.perm = np.random.default_rng([args["seed"], self.epoch]).permutation(X.shape[0])
                self.epoch += 1
                self.pos = 0
            take = self.perm[self.pos:self.pos + need]
            self.pos += take.size
            need -= take.size
            out.append(np.sort(take))
        idx = np.concatenate(out)
        return torch.from_numpy(np.asarray(X[idx], dtype=np.float32))

cfg = TopKTrainingSAEConfig(d_in=X.shape[1], d_sae=args["n_latents"], k=args["k"], dtype="float32", device="cpu",
                            normalize_activations="expected_average_only_in",
                            use_sparse_activations=args["sparse"])
sae = TopKTrainingSAE(cfg)
tcfg = SAETrainerConfig(total_training_samples=args["steps"] * B, train_batch_size_samples=B, lr=args["lr"],
                        lr_end=0.0, lr_warm_up_steps=args["warmup"], lr_decay_steps=args["decay"],
                        device="cpu", dead_feature_window=args["dead_window_steps"],
                        feature_sampling_window=10**9,
                        logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=args["norm_batches"])
trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=Provider())
t0 = time.perf_counter()
trainer.fit()
fit_s = time.perf_counter() - t0
sae.eval()
outs = []
with torch.no_grad():
    for s in range(0, H.shape[0], 4096):
        outs.append(sae(torch.from_numpy(H[s:s + 4096])).numpy())
np.save(args["recon"], np.concatenate(outs).astype(np.float32))
print("PEER_RESULT " + json.dumps({"fit_s": fit_s, "steps": trainer.n_training_steps,
                                   "vectors": trainer.n_training_samples, "sae_lens": metadata.version("sae-lens"),
                                   "torch": torch.__version__, "threads": torch.get_num_threads()}))
'''


def synthetic(n: int, d: int, seed: int = 0, n_atoms: int = 8192, s: int = 24, massive: int = 0,
              offset_scale: float = 1.0) -> np.ndarray:
    """Planted sparse structure: Zipf-frequent atoms, per-dimension offsets, noise. `massive` dimensions
    get a +25 offset, like the "massive activation" dimensions of PLM embeddings."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((n_atoms, d)).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    p = 1.0 / np.arange(1, n_atoms + 1) ** 0.8
    p /= p.sum()
    offset = (offset_scale * rng.normal(0, 1.0, d)).astype(np.float32)
    if massive:
        offset[rng.choice(d, massive, replace=False)] = 25.0
    X = np.empty((n, d), dtype=np.float32)
    for a in range(0, n, 20000):
        m = min(20000, n - a)
        idx = rng.choice(n_atoms, size=(m, s), p=p)
        coef = rng.exponential(1.0, (m, s)).astype(np.float32)
        X[a:a + m] = np.einsum("ms,msd->md", coef, D[idx]) + 0.05 * rng.standard_normal((m, d)).astype(np.float32)
    return X + offset


def decoder_microbench(B: int, n: int, d: int, k: int, repeats: int = 3) -> dict[str, float]:
    """ms per forward+backward of the TopK decode x_hat = sum_j v[b,j] W_dec[idx[b,j]] (+ encoder gather):
    dense scatter + matmul (what autograd through topk does), embedding_bag with autograd's backward,
    and ours (embedding_bag forward, CSR backward shared by encoder and decoder)."""
    import torch
    import torch.nn.functional as F

    from rd_interp.sae.model import _Pattern, _SparseDecode

    g = torch.Generator().manual_seed(0)
    W = torch.randn(n, d, generator=g).requires_grad_()
    idx = torch.rand(B, n, generator=g).topk(k, dim=1).indices  # distinct latents per row
    vals = torch.rand(B, k, generator=g).requires_grad_()
    up = torch.randn(B, d, generator=g)

    def dense():
        z = torch.zeros(B, n).scatter(1, idx, vals)
        return torch.autograd.grad((z @ W * up).sum(), (vals, W))

    def ebag():
        return torch.autograd.grad((F.embedding_bag(idx, W, per_sample_weights=vals, mode="sum") * up).sum(), (vals, W))

    def ours():
        pat = _Pattern(idx, n)
        return torch.autograd.grad((_SparseDecode.apply(vals, W, pat) * up).sum(), (vals, W))

    ref = dense()
    out = {}
    for name, fn in (("dense_scatter_matmul", dense), ("embedding_bag_autograd", ebag), ("ours_csr_backward", ours)):
        res = fn()
        assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(res, ref)), name
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[name] = (time.perf_counter() - t) / repeats * 1000
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=480)
    ap.add_argument("--heldout", type=int, default=16384)
    ap.add_argument("--store", help="use rows of this embedding store instead of synthetic data")
    ap.add_argument("--columns", help="column subset of the store, 'a:b'")
    ap.add_argument("--massive-dims", type=int, default=0,
                    help="synthetic: dimensions with a +25 offset (PLM-like); SAELens starts b_dec at 0 and "
                         "needs many steps to absorb them, so 0 (default) compares the optimisers fairly")
    ap.add_argument("--offset-scale", type=float, default=1.0,
                    help="synthetic: std of the per-dimension offsets (0 = centred data)")
    ap.add_argument("--n-latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the shared .npy inputs go (default: a temp dir)")
    ap.add_argument("--peer-python", default="/work/.bench/saelens-venv/bin/python")
    ap.add_argument("--peer-modes", default="dense,sparse", help="SAELens variants to run: dense,sparse")
    args = ap.parse_args()

    import torch

    from rd_interp.io.provenance import versions
    from rd_interp.sae.metrics import fvu
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import TrainConfig, default_lr, train_sae

    torch.set_num_threads(args.threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sae_"))
    work.mkdir(parents=True, exist_ok=True)

    # -- data: one saved input for both tools ------------------------------------------------------
    t = time.perf_counter()
    if args.store:
        from rd_interp.io.store import EmbeddingStore
        from rd_interp.sae.data import parse_columns

        store = EmbeddingStore(args.store)
        rng = np.random.default_rng(args.seed)
        n = min(store.n_rows, args.rows + args.heldout)
        rows = np.sort(rng.choice(store.n_rows, n, replace=False))
        X_all = store.take(rows, parse_columns(args.columns))
        source = f"store {args.store} columns {args.columns or 'all'}"
    else:
        X_all = synthetic(args.rows + args.heldout, args.dim, seed=args.seed, massive=args.massive_dims,
                          offset_scale=args.offset_scale)
        source = (f"synthetic planted {args.rows + args.heldout} x {args.dim}, per-dim offsets N(0, "
                  f"{args.offset_scale}^2), {args.massive_dims} massive dims")
    perm = np.random.default_rng([args.seed, 1]).permutation(X_all.shape[0])
    H = np.ascontiguousarray(X_all[perm[: args.heldout]])
    Xtr = np.ascontiguousarray(X_all[perm[args.heldout:]])
    del X_all
    np.save(work / "train.npy", Xtr)
    np.save(work / "heldout.npy", H)
    print(f"data: {source}; train {Xtr.shape}, held-out {H.shape}; prepared in {time.perf_counter() - t:.1f}s")

    steps, B = args.steps, args.batch
    lr = default_lr(args.n_latents)
    warmup = min(1000, steps // 20)
    decay = int(round(0.2 * steps))
    dead_window = max(B, min(10_000_000, Xtr.shape[0], steps * B // 5))
    common = dict(steps=steps, batch=B, lr=lr, warmup=warmup, decay=decay, seed=args.seed, threads=args.threads)
    print(f"settings: n_latents={args.n_latents} k={args.k} batch={B} steps={steps} lr={lr:.3g} warmup={warmup} "
          f"decay={decay} threads={args.threads}")

    # -- ours ------------------------------------------------------------------------------------------
    Xtr_mm = np.load(work / "train.npy", mmap_mode="r")
    t0 = time.perf_counter()
    sae = train_sae(Xtr_mm, SAEConfig("topk", n_latents=args.n_latents, k=args.k),
                    TrainConfig(batch_size=B, n_steps=steps, lr=lr, warmup_steps=warmup, decay_fraction=0.2,
                                seed=args.seed, dead_window=dead_window, device="cpu"), progress=False)
    ours_s = time.perf_counter() - t0
    with torch.no_grad():
        rec = np.concatenate([sae.forward(H[s:s + 4096]).numpy() for s in range(0, H.shape[0], 4096)])
    ours = {"fit_s": ours_s, "vectors_per_s": steps * B / ours_s, "fvu": fvu(H, rec)}
    print(f"ours     : {ours['vectors_per_s']:9.0f} vectors/s  fit {ours_s:7.1f}s  held-out FVU {ours['fvu']:.4f}")

    # -- peer ------------------------------------------------------------------------------------------
    peers: dict[str, dict] = {}
    peer_errors: dict[str, str] = {}
    for mode in [m for m in args.peer_modes.split(",") if m]:
        pargs = dict(common, n_latents=args.n_latents, k=args.k, train=str(work / "train.npy"),
                     heldout=str(work / "heldout.npy"), recon=str(work / f"recon_{mode}.npy"),
                     sparse=(mode == "sparse"), dead_window_steps=max(1, dead_window // B), norm_batches=10)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), WANDB_MODE="disabled", TQDM_DISABLE="1")
        t1 = time.perf_counter()
        proc = subprocess.run([args.peer_python, "-c", PEER_SCRIPT, json.dumps(pargs)], capture_output=True,
                              text=True, env=env)
        wall = time.perf_counter() - t1
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PEER_RESULT ")]
        if proc.returncode != 0 or not line:
            err_lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if "Error" in ln]
            peer_errors[mode] = err_lines[-1][:300] if err_lines else (proc.stderr or proc.stdout)[-300:]
            print(f"SAELens ({mode}) failed: {peer_errors[mode]}")
            continue
        res = json.loads(line[0][len("PEER_RESULT "):])
        rec_p = np.load(work / f"recon_{mode}.npy")
        res.update(vectors_per_s=res["vectors"] / res["fit_s"], fvu=fvu(H, rec_p), subprocess_wall_s=wall)
        peers[mode] = res
        print(f"SAELens {mode:6s}: {res['vectors_per_s']:9.0f} vectors/s  fit {res['fit_s']:7.1f}s  "
              f"held-out FVU {res['fvu']:.4f}  (sae-lens {res['sae_lens']}, {res['threads']} threads)")

    best = max(peers.values(), key=lambda r: r["vectors_per_s"]) if peers else None
    best_mode = next((m for m, r in peers.items() if r is best), None)
    speedup = ours["vectors_per_s"] / best["vectors_per_s"] if best else None
    print()
    print(f"{'tool':22s} {'vectors/s':>10s} {'fit s':>8s} {'held-out FVU':>13s}")
    print(f"{'rd_interp topk':22s} {ours['vectors_per_s']:10.0f} {ours['fit_s']:8.1f} {ours['fvu']:13.4f}")
    for m, r in peers.items():
        print(f"{'SAELens topk ' + m:22s} {r['vectors_per_s']:10.0f} {r['fit_s']:8.1f} {r['fvu']:13.4f}")
    if best:
        print(f"speed-up vs fastest SAELens ({best_mode}): {speedup:.2f}x; FVU ours {ours['fvu']:.4f} vs "
              f"{best['fvu']:.4f}")
    micro = decoder_microbench(B, args.n_latents, Xtr.shape[1], args.k)
    print("decoder fwd+bwd, ms per batch: " + ", ".join(f"{k} {v:.1f}" for k, v in micro.items()))
    env_info = {"cpu_threads": args.threads, "cpu": platform.processor() or platform.machine(),
                "nproc": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], **versions()}
    result = {
        "bench": "sae_topk_training", "data": source, "n_train": int(Xtr.shape[0]), "n_heldout": int(H.shape[0]),
        "dim": int(Xtr.shape[1]), "n_latents": args.n_latents, "k": args.k, "batch": B, "steps": steps, "lr": lr,
        "ours": ours, "saelens": peers, "saelens_errors": peer_errors, "fastest_peer": best_mode,
        "speedup_vs_fastest_peer": speedup,
        "fvu_ours_minus_peer": (ours["fvu"] - best["fvu"]) if best else None,
        "decoder_fwd_bwd_ms": micro, "env": env_info,
    }
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
