"""Benchmark: rd_interp TopK SAE training vs EleutherAI sparsify (`eai-sparsify`) and SAELens, same data, same run.

All train n_latents=4096, k=32 TopK SAEs with batch 4096 for the same number of steps on the same saved
.npy (synthetic 200k x 480 with planted sparse structure and per-dimension offsets, or rows of an
embedding store), with the same learning rate, warmup and final linear decay, AuxK weight 1/32 and dead
window, on the same number of CPU threads. Peers run as subprocesses in their own environments
(.bench/sparsify, .bench/saelens; created on first use with pinned versions, on the same torch).
Reported: training throughput (vectors/s of the whole fit) and held-out FVU of every tool, computed here
with one formula from each tool's reconstructions; ours and sparsify are run twice in alternation
(ours, sparsify, SAELens..., ours, sparsify) and the median is used. Also measured in the same run: the
per-step floor (dense encoder matmul + top-k on one batch, by the faster of torch.topk and our kernel,
which our training uses; median of 7, measured before and after each of our fits, so the floor sees
the machine as the fit did) against our median training step (steps 2..N; the first loads
the compiled kernels), and the decoder forward+backward with embedding_bag autograd vs our decoder's
CSR backward at 480 and 1,280 dims, and a profiled short fit that splits our step into its parts (encoder
matmul, decode, sparse backward products, Adam, the rest): where the time beyond the floor goes.

What differs between the tools (by design of each, not by our settings):
- sparsify: its `SparseCoder` and `fused_encoder` (encoder init = nn.Linear default, decoder = normalised
  copy; b_dec = mean of the first batch; no input normalisation; loss = FVU of the batch), driven by the
  loop of its `Trainer.fit` for loss_fn="fvu", optimizer="adam" (torch Adam, eps 1e-8, no gradient
  clipping) with our lr schedule instead of its warmup-then-linear-to-zero; its AuxK term trains the
  decoder only (its fused encoder ignores gradients reaching the pre-activations); on CPU its decoder is
  the `embedding_bag` fallback (no Triton). The Trainer itself needs a Hugging Face model to hook, so its
  step is reproduced here on the saved vectors.
- SAELens: `TopKTrainingSAE` + `SAETrainer` with `normalize_activations="expected_average_only_in"`,
  dense activations (its default; `--peers saelens-sparse` tries `use_sparse_activations=True`).
- ours: inputs centred and scaled inside the SAE, encoder = decoder^T / sqrt(3), Adam eps 6.25e-10 (fused),
  gradient clip 1.0.

    python analyses/bench_sae.py                     # ~6 min on 2 cores after the peers are provisioned
    python analyses/bench_sae.py --steps 300 --rows 1000000 --peers sparsify   # bigger run

Final line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

SPARSIFY_SCRIPT = r'''
import json, sys, time
import numpy as np
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(args["seed"])
from importlib import metadata
from sparsify import SparseCoder, SparseCoderConfig

X = np.load(args["train"], mmap_mode="r")
H = np.load(args["heldout"])
B, steps = args["batch"], args["steps"]

def batch_rows(step, cache={}):
    """Same shuffled order as the SAELens provider: one permutation per epoch."""
    n = X.shape[0]
    start, out, need = step * B, [], B
    while need:
        epoch, off = divmod(start, n)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([args["seed"], epoch]).permutation(n)
        take = cache[epoch][off:off + need]
        out.append(np.sort(take))
        start += take.size
        need -= take.size
    return np.concatenate(out)

def lr_factor(step):  # rd_interp's schedule: linear warmup, linear decay to 0 over the final fraction
    f = 1.0
    if args["warmup"] > 0 and step < args["warmup"]:
        f = (step + 1) / args["warmup"]
    if args["decay"] > 0 and step >= steps - args["decay"]:
        f = min(f, (steps - step) / args["decay"])
    return f

sae = SparseCoder(X.shape[1], SparseCoderConfig(num_latents=args["n_latents"], k=args["k"]), "cpu", dtype=torch.float32)
opt = torch.optim.Adam(sae.parameters(), lr=args["lr"])  # Trainer "adam" branch without bitsandbytes
sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
t0 = time.perf_counter()
for step in range(steps):
    x = torch.from_numpy(np.asarray(X[batch_rows(step)], dtype=np.float32))
    if step == 0:
        sae.b_dec.data = x.mean(0)  # Trainer: b_dec = mean of the first batch
    sae.set_decoder_norm_to_unit_norm()
    dead = since_fired > args["dead_window"] if args["auxk_alpha"] > 0 else None
    out = sae(x, dead_mask=dead)
    (out.fvu + args["auxk_alpha"] * out.auxk_loss).backward()
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    fired[out.latent_indices.flatten()] = True
    sae.remove_gradient_parallel_to_decoder_directions()
    opt.step()
    opt.zero_grad()
    sched.step()
    since_fired += B
    since_fired[fired] = 0
fit_s = time.perf_counter() - t0
sae.set_decoder_norm_to_unit_norm()
outs = []
with torch.no_grad():
    for s in range(0, H.shape[0], 4096):
        outs.append(sae(torch.from_numpy(H[s:s + 4096])).sae_out.numpy())
np.save(args["recon"], np.concatenate(outs).astype(np.float32))
print("PEER_RESULT " + json.dumps({"fit_s": fit_s, "steps": steps, "vectors": steps * B,
                                   "version": metadata.version("eai-sparsify"), "threads": torch.get_num_threads()}))
'''

SAELENS_SCRIPT = r'''
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
                                   "vectors": trainer.n_training_samples, "version": metadata.version("sae-lens"),
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


def split(X_all: np.ndarray, heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): the one seeded split every tool (and sweep_sae_init.py) sees."""
    perm = np.random.default_rng([seed, 1]).permutation(X_all.shape[0])
    return np.ascontiguousarray(X_all[perm[heldout:]]), np.ascontiguousarray(X_all[perm[:heldout]])


def shared_schedule(steps: int, batch: int, n_train: int) -> dict[str, int]:
    """Warmup steps, final linear-decay steps and AuxK dead window shared by every tool."""
    return {"warmup": min(1000, steps // 20), "decay": int(round(0.2 * steps)),
            "dead_window": max(batch, min(10_000_000, n_train, steps * batch // 5))}


def our_train_config(steps: int, batch: int, lr: float, n_train: int):
    """rd_interp's TrainConfig with the shared schedule (decay over the final 20% of steps)."""
    from rd_interp.sae.train import TrainConfig

    sch = shared_schedule(steps, batch, n_train)
    return TrainConfig(batch_size=batch, n_steps=steps, lr=lr, warmup_steps=sch["warmup"], decay_fraction=0.2,
                       dead_window=sch["dead_window"])


def decoder_microbench(B: int, n: int, d: int, k: int, repeats: int = 3) -> dict[str, float]:
    """ms per forward+backward of the TopK decode x_hat = sum_j v[b,j] W_dec[idx[b,j]]: dense scatter + matmul
    (what autograd through topk does), embedding_bag with autograd's own backward (what rd_interp used
    until this benchmark showed it slower here), and rd_interp's decoder (model._decode: embedding_bag
    forward, W_dec's gradient as one CSR product over the latent-sorted pattern; the pattern's sort is done
    once outside the timing, since in training the encoder's backward needs it anyway); and that gradient
    product alone, by torch's sparse-CSR product and by rd_interp.sae.spmm's kernel."""
    import torch
    import torch.nn.functional as F

    from rd_interp.sae.model import _decode, _Pattern

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

    pat = _Pattern(idx, n)

    def csr_bwd():
        return torch.autograd.grad((_decode(idx, vals, W, pat) * up).sum(), (vals, W))

    ref = dense()
    out = {}
    for name, fn in (("dense_scatter_matmul", dense), ("embedding_bag_autograd", ebag), ("csr_backward", csr_bwd)):
        res = fn()
        assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(res, ref)), name
        out[name] = _ms(fn, repeats)
    # W_dec's gradient product alone (S^T up): torch's sparse-CSR product vs our kernel (rd_interp.sae.spmm)
    v = vals.detach()
    S = torch.sparse_csr_tensor(pat.crow, pat.rows_sorted, v.reshape(-1)[pat.order], size=(n, B),
                                check_invariants=True)
    assert torch.equal(S @ up, pat.st_mm(v, up))  # the same sums in the same order
    out["grad_product_torch_csr"] = _ms(lambda: torch.sparse_csr_tensor(
        pat.crow, pat.rows_sorted, v.reshape(-1)[pat.order], size=(n, B), check_invariants=False) @ up, repeats)
    out["grad_product_ours"] = _ms(lambda: pat.st_mm(v, up), repeats)
    return out


def _ms(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats * 1000


def run_peer(python: str, script: str, pargs: dict, threads: int) -> dict:
    # sparsify imports its Triton decoder whenever triton is installed (torch pulls it in) and then fails
    # without a GPU driver; its documented switch selects the eager embedding_bag decoder.
    env = dict(benchlib.thread_env(threads), SPARSIFY_DISABLE_TRITON="1")
    proc = subprocess.run([python, "-c", script, json.dumps(pargs)], capture_output=True, text=True, env=env,
                          check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PEER_RESULT ")]
    if proc.returncode != 0 or not line:
        err = [ln for ln in (proc.stderr or proc.stdout).splitlines() if "Error" in ln]
        raise benchlib.PeerError(err[-1][:300] if err else (proc.stderr or proc.stdout)[-300:])
    return json.loads(line[0][len("PEER_RESULT "):])


def step_floor(B: int, d: int, n: int, k: int, repeats: int = 7) -> dict[str, float]:
    """ms of the unavoidable per-step work: the dense encoder product [B, d] x [d, n] (no bias, into a buffer
    allocated once) and the top-k of its rows by the faster of torch.topk and our kernel (rd_interp.sae.topk,
    which training uses). Medians over `repeats` (what is compared with our median step) and minima."""
    import torch

    from rd_interp.sae.topk import topk_ascending

    g = torch.Generator().manual_seed(0)
    x, W = torch.randn(B, d, generator=g), torch.randn(d, n, generator=g) / d ** 0.5
    mm, tk_torch, tk_ours = [], [], []
    with torch.no_grad():
        pre = torch.mm(x, W)
        topk_ascending(pre, k)  # first call loads the compiled kernel
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(x, W, out=pre)
            t1 = time.perf_counter()
            pre.topk(k, dim=1, sorted=False)
            t2 = time.perf_counter()
            topk_ascending(pre, k)
            t3 = time.perf_counter()
            mm.append(t1 - t0)
            tk_torch.append(t2 - t1)
            tk_ours.append(t3 - t2)
    med = {name: benchlib.median(v) * 1e3 for name, v in (("mm", mm), ("torch", tk_torch), ("ours", tk_ours))}
    tk = min(med["torch"], med["ours"])
    return {"matmul_ms": med["mm"], "topk_ms": tk, "topk_torch_ms": med["torch"], "topk_ours_ms": med["ours"],
            "floor_ms": med["mm"] + tk, "floor_min_ms": (min(mm) + min(min(tk_torch), min(tk_ours))) * 1e3}


#: Parts of a training step: (the profiler's operator names, inclusive?): an op's self time, or an autograd node's
#: total (its kernels included).
_STEP_PARTS = {"encoder_matmul": ({"aten::mm"}, False),
               "decode": ({"aten::_embedding_bag"}, False),
               "sparse_backward": ({"_DecodeBackward", "_GatherPreBackward"}, True),
               "adam": ({"aten::_fused_adam_"}, False)}


def step_breakdown(train: Callable[[], Any], steps: int) -> dict[str, float]:
    """ms per step of each part of our training step, from torch's profiler over a short fit (`train()` returns
    the fitted SAE): the encoder matmul, the decode (embedding_bag), the sparse backward products (the values',
    decoder's and encoder's gradients) and Adam; `rest` is the fit's mean step minus those (top-k, which runs
    outside torch's operators, the elementwise passes, the projection and normalisation of the decoder, Python)."""
    with benchlib.cpu_profile() as prof:
        sae = train()
    out = {part: benchlib.op_seconds(prof, names.__contains__, inclusive=inclusive) * 1e3 / steps
           for part, (names, inclusive) in _STEP_PARTS.items()}
    tr = sae.provenance.train
    out["step_mean"] = tr["batch_size"] / tr["vectors_per_s_this_call"] * 1e3
    out["rest"] = out["step_mean"] - sum(out[p] for p in _STEP_PARTS)
    return {k: round(v, 2) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=480)
    ap.add_argument("--heldout", type=int, default=16384)
    ap.add_argument("--store", help="use rows of this embedding store instead of synthetic data")
    ap.add_argument("--columns", help="column subset of the store, 'a:b'")
    ap.add_argument("--massive-dims", type=int, default=0, help="synthetic: dimensions with a +25 offset (PLM-like)")
    ap.add_argument("--offset-scale", type=float, default=1.0,
                    help="synthetic: std of the per-dimension offsets (0 = centred data)")
    ap.add_argument("--n-latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="alternated runs of ours and sparsify (median used)")
    ap.add_argument("--peers", default="sparsify,saelens-dense",
                    help="comma list of: sparsify, saelens-dense, saelens-sparse (SAELens' sparse mode fails "
                         "on torch 2.14 CPU: 'aten::view' has no SparseCPU kernel)")
    ap.add_argument("--micro-dims", default="480,1280", help="dims of the decoder micro-benchmark")
    args = ap.parse_args()

    import torch

    from rd_interp.sae.metrics import fvu
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import default_lr, train_sae

    torch.set_num_threads(args.threads)
    import torch._dynamo  # (torch.optim imports it on first use: 2-3 s once per process, not training)
    meter = benchlib.LoadMeter()
    peers = [p for p in args.peers.split(",") if p]
    envs = {p: benchlib.peer_python("sparsify" if p == "sparsify" else "saelens") for p in peers}
    tmp = tempfile.TemporaryDirectory(prefix="bench_sae_")
    work = Path(tmp.name)

    # -- data: one saved input for every tool ------------------------------------------------------
    t = time.perf_counter()
    if args.store:
        from rd_interp.io.store import EmbeddingStore
        from rd_interp.sae.data import parse_columns

        store = EmbeddingStore(args.store)
        rng = np.random.default_rng(args.seed)
        n = min(store.n_rows, args.rows + args.heldout)
        rows = np.sort(rng.choice(store.n_rows, n, replace=False))
        X_all = store.take(rows, parse_columns(args.columns))
        source = f"store {Path(args.store).name} columns {args.columns or 'all'}"
    else:
        X_all = synthetic(args.rows + args.heldout, args.dim, seed=args.seed, massive=args.massive_dims,
                          offset_scale=args.offset_scale)
        source = (f"synthetic planted {args.rows + args.heldout} x {args.dim}, per-dim offsets N(0, "
                  f"{args.offset_scale}^2), {args.massive_dims} massive dims")
    Xtr, H = split(X_all, args.heldout, args.seed)
    del X_all
    np.save(work / "train.npy", Xtr)
    np.save(work / "heldout.npy", H)
    print(f"data: {source}; train {Xtr.shape}, held-out {H.shape}; prepared in {time.perf_counter() - t:.1f}s")

    steps, B, d = args.steps, args.batch, int(Xtr.shape[1])
    lr = default_lr(args.n_latents)
    sch = shared_schedule(steps, B, Xtr.shape[0])
    warmup, decay, dead_window = sch["warmup"], sch["decay"], sch["dead_window"]
    common = dict(steps=steps, batch=B, lr=lr, warmup=warmup, decay=decay, seed=args.seed, threads=args.threads,
                  n_latents=args.n_latents, k=args.k, train=str(work / "train.npy"), heldout=str(work / "heldout.npy"))
    print(f"settings: n_latents={args.n_latents} k={args.k} batch={B} steps={steps} lr={lr:.3g} warmup={warmup} "
          f"decay={decay} dead_window={dead_window} aux_coeff=1/32 threads={args.threads}")

    Xtr_mm = np.load(work / "train.npy", mmap_mode="r")
    floors: list[dict] = []

    def run_ours() -> dict:
        floors.append(step_floor(B, d, args.n_latents, args.k))
        t0 = time.perf_counter()
        sae = train_sae(Xtr_mm, SAEConfig("topk", n_latents=args.n_latents, k=args.k),
                        our_train_config(steps, B, lr, Xtr.shape[0]), progress=False, seed=args.seed, device="cpu")
        fit_s = time.perf_counter() - t0
        floors.append(step_floor(B, d, args.n_latents, args.k))  # bracketing the fit: a host that slows during it
        with torch.no_grad():
            rec = np.concatenate([sae.forward(H[s:s + 4096]).numpy() for s in range(0, H.shape[0], 4096)])
        loop_vps = sae.provenance.train["vectors_per_s_this_call"]
        return {"fit_s": fit_s, "vectors": steps * B, "vectors_per_s": steps * B / fit_s, "fvu": fvu(H, rec),
                "step_ms": sae.provenance.train["step_ms_median_this_call"], "step_ms_mean": B / loop_vps * 1e3}

    def run_tool(tool: str) -> dict:
        if tool == "ours":
            return run_ours()
        pargs = dict(common, recon=str(work / f"recon_{tool}.npy"))
        if tool == "sparsify":
            res = run_peer(envs[tool], SPARSIFY_SCRIPT, dict(pargs, dead_window=dead_window, auxk_alpha=1 / 32),
                           args.threads)
        else:
            res = run_peer(envs[tool], SAELENS_SCRIPT, dict(pargs, sparse=tool.endswith("sparse"),
                                                           dead_window_steps=max(1, dead_window // B),
                                                           norm_batches=10), args.threads)
        res.update(vectors_per_s=res["vectors"] / res["fit_s"], fvu=fvu(H, np.load(work / f"recon_{tool}.npy")))
        return res

    repeat = ["ours"] + [p for p in peers if p == "sparsify"]
    schedule = repeat + [p for p in peers if p != "sparsify"]
    for r in range(args.rounds - 1):
        schedule += repeat[::-1] if r % 2 == 0 else repeat
    runs: dict[str, list[dict]] = {}
    errors: dict[str, str] = {}
    for tool in schedule:
        if tool in errors:
            continue
        try:
            res = run_tool(tool)
        except benchlib.PeerError as exc:
            errors[tool] = str(exc)
            print(f"{tool} failed: {exc}")
            continue
        runs.setdefault(tool, []).append(res)
        print(f"{tool:15s} {res['vectors_per_s']:9.0f} vectors/s  fit {res['fit_s']:7.1f}s  "
              f"held-out FVU {res['fvu']:.4f}", flush=True)

    def summary(tool: str) -> dict:
        rs = runs[tool]
        out = {"vectors_per_s": benchlib.median([r["vectors_per_s"] for r in rs]),
               "fit_s": [round(r["fit_s"], 2) for r in rs], "fvu": rs[0]["fvu"]}
        if "version" in rs[0]:
            out["version"] = rs[0]["version"]
        if "step_ms" in rs[0]:
            out["step_ms"] = benchlib.median([r["step_ms"] for r in rs])
            out["step_ms_mean"] = benchlib.median([r["step_ms_mean"] for r in rs])
        return out

    tools = {t: summary(t) for t in runs}
    ours = tools["ours"]
    peer_names = [t for t in tools if t != "ours"]
    best = max(peer_names, key=lambda t: tools[t]["vectors_per_s"]) if peer_names else None
    # the floor's median (over its repeats; the middle of the floors measured around our fits) over our median
    # step (steps 2..N of each fit; the middle of the fits): one statistic on both sides. Also kept: the best
    # floor over the whole fit's mean step (the first step included), the stricter and noisier figure of earlier
    # results files.
    floor = benchlib.median_item(floors, key=lambda f: f["floor_ms"])
    floor_frac = floor["floor_ms"] / ours["step_ms"]
    floor_min = min(f["floor_min_ms"] for f in floors)
    floor_frac_min_mean = floor_min / ours["step_ms_mean"]
    profiled_steps = min(10, steps)
    breakdown = step_breakdown(
        lambda: train_sae(Xtr_mm, SAEConfig("topk", n_latents=args.n_latents, k=args.k),
                          our_train_config(profiled_steps, B, lr, Xtr.shape[0]), progress=False, seed=args.seed,
                          device="cpu"), profiled_steps)
    micro = {}
    for dim in [int(x) for x in args.micro_dims.split(",") if x]:
        micro[str(dim)] = {k: round(v, 2) for k, v in decoder_microbench(B, args.n_latents, dim, args.k).items()}
    print()
    print(f"{'tool':16s} {'vectors/s':>10s} {'held-out FVU':>13s}  fits (s)")
    for t, r in tools.items():
        print(f"{t:16s} {r['vectors_per_s']:10.0f} {r['fvu']:13.4f}  {r['fit_s']}")
    ratio = ours["vectors_per_s"] / tools[best]["vectors_per_s"] if best else None
    if best:
        print(f"speed-up vs the fastest peer ({best}): {ratio:.2f}x; FVU ours {ours['fvu']:.4f} vs "
              f"{tools[best]['fvu']:.4f}")
    print(f"top-k of one batch: torch.topk {floor['topk_torch_ms']:.1f} ms, rd_interp.sae.topk {floor['topk_ours_ms']:.1f} ms")
    print(f"per-step floor, medians (encoder matmul {floor['matmul_ms']:.0f} ms + top-k {floor['topk_ms']:.0f} ms) = "
          f"{floor['floor_ms']:.0f} ms; our median training step {ours['step_ms']:.0f} ms -> {floor_frac:.1%} of the "
          f"floor (best floor {floor_min:.0f} ms over the whole fit's mean step "
          f"{ours['step_ms_mean']:.0f} ms: {floor_frac_min_mean:.1%})")
    print(f"where a step goes ({profiled_steps} profiled steps, mean {breakdown['step_mean']:.0f} ms): "
          + ", ".join(f"{k.replace('_', ' ')} {v:.1f} ms" for k, v in breakdown.items() if k != "step_mean"))
    for dim, m in micro.items():
        print(f"decoder fwd+bwd at {dim} dims, ms per batch: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
    load = meter.stop()
    print(f"other processes kept {load['other_processes_cores_busy']} cores busy on average")
    tmp.cleanup()
    benchlib.emit({
        "bench": "sae_topk_training", "data": source, "n_train": int(Xtr.shape[0]), "n_heldout": int(H.shape[0]),
        "dim": d, "n_latents": args.n_latents, "k": args.k, "batch": B, "steps": steps, "lr": lr,
        "warmup": warmup, "decay_steps": decay, "dead_window": dead_window, "tools": tools, "errors": errors,
        "fastest_peer": best, "speedup_vs_fastest_peer": ratio,
        "fvu_ours_minus_fastest_peer": (ours["fvu"] - tools[best]["fvu"]) if best else None,
        "step_floor_ms": floor, "step_floor_fraction": floor_frac,
        "step_floor_fraction_min_over_mean": floor_frac_min_mean, "decoder_fwd_bwd_ms": micro,
        "step_breakdown_ms": breakdown, "step_breakdown_steps": profiled_steps,
        "headline": {"ours_vectors_per_s": ours["vectors_per_s"], "peer": best,
                     "peer_vectors_per_s": tools[best]["vectors_per_s"] if best else None, "ratio": ratio,
                     "fvu_ours": ours["fvu"], "fvu_peer": tools[best]["fvu"] if best else None,
                     "step_floor_fraction": floor_frac},
        "load": load, "machine": benchlib.machine(args.threads),
    })
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
