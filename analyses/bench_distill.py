"""Benchmark: reverse distillation fit, ours vs the reference package `reverse-distillation` 0.1.0.

Same saved input for both (seeded synthetic embeddings with ESM-like structure: a shared low-rank
signal with power-law spectrum, a block only the large model sees, a nonlinear term, per-dimension
noise and a few large-offset "massive activation" dimensions), 300,000 x (320 -> 480) by default.
Each method runs in its own subprocess so peak RSS is its own; the reference runs in a side venv
.bench/rdref (`pip install --no-deps reverse-distillation==0.1.0` + scikit-learn, fbpca, loguru,
huggingface_hub; created on first use by analyses/benchlib.py) with its defaults: rdScaler(regressor_type="pcr", pca_type="fbpca").
Then our streamed fit at 300k and at 3,000,000 rows generated on the fly shows the peak memory does
not grow with N.

    python analyses/bench_distill.py            # full run (~5-10 min on 2 shared cores)
    python analyses/bench_distill.py --rows 30000 --big-rows 60000   # quick smoke run

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

ROOT = Path(__file__).resolve().parents[1]
ENV_THREADS = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


# ------------------------------------------------------------------------------------------------
# Synthetic data (deterministic per (seed, chunk index), so streamed == saved)
# ------------------------------------------------------------------------------------------------
class Synth:
    def __init__(self, p: int, q: int, seed: int):
        rng = np.random.default_rng([seed, 10**6])
        self.p, self.q, self.seed = p, q, seed
        self.r_f, self.r_px, self.r_py, self.r_nl = 96, 32, (q - p), 16
        f32 = np.float32
        self.s_f = (4.0 * (1 + np.arange(self.r_f)) ** -0.6).astype(f32)
        self.s_px = (1.0 * (1 + np.arange(self.r_px)) ** -0.5).astype(f32)
        self.s_py = (2.0 * (1 + np.arange(self.r_py)) ** -0.6).astype(f32)
        g = lambda a, b: (rng.standard_normal((a, b)) / np.sqrt(a)).astype(f32)
        self.Ax, self.Bx = g(self.r_f, p), g(self.r_px, p)
        self.Ay, self.By, self.Cy = g(self.r_f, q), g(self.r_py, q), g(self.r_nl, q)
        self.nx = (0.3 * np.exp(0.3 * rng.standard_normal(p))).astype(f32)
        self.ny = (0.3 * np.exp(0.3 * rng.standard_normal(q))).astype(f32)
        self.mx = rng.standard_normal(p).astype(f32)
        self.my = rng.standard_normal(q).astype(f32)
        for m, sc in ((self.mx, self.nx), (self.my, self.ny)):  # ESM-like large-offset dimensions
            m[:2] = [25.0, -18.0]
            sc[:2] *= 6

    def chunk(self, i: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])
        n = lambda k: rng.standard_normal((rows, k), dtype=np.float32)
        F = n(self.r_f) * self.s_f
        X = F @ self.Ax + (n(self.r_px) * self.s_px) @ self.Bx + n(self.p) * self.nx + self.mx
        Y = (F @ self.Ay + np.tanh(F[:, : self.r_nl]) @ self.Cy + (n(self.r_py) * self.s_py) @ self.By
             + n(self.q) * self.ny + self.my)
        return X, Y

    def chunks(self, total: int, chunk_rows: int):
        for i, start in enumerate(range(0, total, chunk_rows)):
            yield self.chunk(i, min(chunk_rows, total - start))


# ------------------------------------------------------------------------------------------------
# Memory probes (peak RSS of the process, and of one phase via clear_refs)
# ------------------------------------------------------------------------------------------------
PROBE = textwrap.dedent('''
    import os, resource
    def _status(key):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return None
    def rss_now():
        return _status("VmRSS")
    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False
    def peak():
        v = _status("VmHWM")
        return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
''')

REF_WORKER = PROBE + textwrap.dedent('''
    import json, sys, time, io, contextlib
    import numpy as np, torch
    torch.set_num_threads(2)
    wd = sys.argv[1]
    from reverse_distillation.scaler.rd import rdScaler
    X = np.load(wd + "/X.npy"); Y = np.load(wd + "/Y.npy")
    before = rss_now(); reset_peak()
    sc = rdScaler("8M", "35M", regressor_type="pcr")   # package defaults otherwise (pca_type="fbpca")
    t = time.perf_counter(); c = time.process_time(); sc.fit(X, Y); fit_s = time.perf_counter() - t
    fit_cpu = time.process_time() - c
    fit_peak = peak()
    t = time.perf_counter(); out = sc.step(torch.from_numpy(X), torch.from_numpy(Y)).numpy(); tr_s = time.perf_counter() - t
    np.save(wd + "/out_ref.npy", out)
    state = {k: np.asarray(v) for k, v in sc.get_state_dict().items() if v is not None}
    np.savez(wd + "/ref_scaler.npz", **state)
    print(json.dumps({"fit_s": fit_s, "fit_cpu_s": fit_cpu, "transform_s": tr_s, "rss_before_fit": before, "fit_peak_rss": fit_peak,
                      "peak_rss": peak(), "n_significant_pcs": int(sc.regressor.n_significant_pcs_),
                      "sigma_sq": float(sc.regressor.sigma_sq_)}))
''')

OURS_WORKER = PROBE + textwrap.dedent('''
    import json, sys, time
    import numpy as np, torch
    torch.set_num_threads(2)
    wd, mode, rows, big, p, q, seed, chunk, device = sys.argv[1:10]
    rows, p, q, seed, chunk = int(rows), int(p), int(q), int(seed), int(chunk)
    sys.path.insert(0, big)  # analyses dir, for Synth
    from bench_distill import Synth
    from rd_interp.distill import ReverseDistiller
    if mode == "arrays":
        X = np.load(wd + "/X.npy"); Y = np.load(wd + "/Y.npy")
        before = rss_now(); reset_peak()
        rd = ReverseDistiller(device=device, chunk_rows=chunk)
        t = time.perf_counter(); c = time.process_time(); rd.fit(X, Y); fit_s = time.perf_counter() - t
        fit_cpu = time.process_time() - c
        fit_peak = peak()
        t = time.perf_counter(); out = rd.transform(X, Y); tr_s = time.perf_counter() - t
        np.save(wd + "/out_ours.npy", out)
        rd.save(wd + "/ours_model")
    else:
        syn = Synth(p, q, seed)
        before = rss_now(); reset_peak()
        rd = ReverseDistiller(device=device)
        t = time.perf_counter(); c = time.process_time(); rd.fit(syn.chunks(rows, chunk))
        fit_s = time.perf_counter() - t; fit_cpu = time.process_time() - c
        fit_peak = peak(); tr_s = None
    print(json.dumps({"fit_s": fit_s, "fit_cpu_s": fit_cpu, "transform_s": tr_s, "rss_before_fit": before, "fit_peak_rss": fit_peak,
                      "peak_rss": peak(), "n_significant_pcs": rd.n_significant_pcs_, "sigma_sq": rd.sigma_sq_,
                      "n_samples": rd.n_samples_, "r2": rd.r2_}))
''')


def run_worker(python: str, code: str, args: list[str], label: str) -> dict:
    env = {**os.environ, **ENV_THREADS, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1])
    res["process_wall_s"] = wall
    return res


def align_signs(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Flip reference residual columns to agree in sign with ours (sign of their inner product)."""
    s = np.sign(np.einsum("ij,ij->j", ours.astype(np.float64), ref.astype(np.float64)))
    s[s == 0] = 1
    return ref * s.astype(ref.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--big-rows", type=int, default=3_000_000)
    ap.add_argument("--small", type=int, default=320)
    ap.add_argument("--large", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default=None, help="where the shared .npy inputs go (default: a temp dir)")
    args = ap.parse_args()
    meter = benchlib.LoadMeter()
    tmp = tempfile.TemporaryDirectory(prefix="bench_distill_") if args.workdir is None else None
    if (args.small, args.large) != (320, 480):
        print("note: the reference scaler is built for 8M->35M (320->480); other widths skip the reference")
    wd = Path(args.workdir) if args.workdir else Path(tmp.name)
    wd.mkdir(parents=True, exist_ok=True)
    syn = Synth(args.small, args.large, args.seed)

    t = time.perf_counter()
    X = np.empty((args.rows, args.small), dtype=np.float32)
    Y = np.empty((args.rows, args.large), dtype=np.float32)
    for i, (a, b) in enumerate(syn.chunks(args.rows, args.chunk_rows)):
        s = i * args.chunk_rows
        X[s:s + len(a)], Y[s:s + len(b)] = a, b
    np.save(wd / "X.npy", X)
    np.save(wd / "Y.npy", Y)
    del X, Y
    print(f"input: {args.rows} x ({args.small} -> {args.large}) float32, generated in {time.perf_counter() - t:.1f} s")

    here = str(Path(__file__).resolve().parent)
    common = [str(args.rows), here, str(args.small), str(args.large), str(args.seed), str(args.chunk_rows),
              args.device]
    ours = run_worker(sys.executable, OURS_WORKER, [str(wd), "arrays", *common], "ours")
    print(f"ours fit {ours['fit_s']:.2f} s", flush=True)
    ref_py = benchlib.peer_python("rdref")  # .bench/rdref, created on first use
    ref = run_worker(ref_py, REF_WORKER, [str(wd)], "reference")
    print(f"reference fit {ref['fit_s']:.2f} s", flush=True)
    stream_small = run_worker(sys.executable, OURS_WORKER, [str(wd), "stream", *common], "ours streamed")
    common_big = [str(args.big_rows)] + common[1:]
    stream_big = run_worker(sys.executable, OURS_WORKER, [str(wd), "stream", *common_big], "ours streamed big")

    # -- agreement ----------------------------------------------------------------------------
    sys.path.insert(0, str(ROOT))
    import scipy.linalg

    from rd_interp.distill import ReverseDistiller, load_reference_npz

    X = np.load(wd / "X.npy", mmap_mode="r")
    Y = np.load(wd / "Y.npy", mmap_mode="r")
    o = np.load(wd / "out_ours.npy", mmap_mode="r")
    r = np.load(wd / "out_ref.npy", mmap_mode="r")
    p = args.small
    prefix_ours = float(np.max(np.abs(o[:, :p] - X)))
    prefix_ref = float(np.max(np.abs(r[:, :p] - X)))
    ra = align_signs(o[:, p:], np.asarray(r[:, p:]))
    diff = np.abs(o[:, p:] - ra)
    max_abs = float(diff.max())
    scale = float(np.abs(o[:, p:]).max())
    col_max = diff.max(axis=0)
    ours_m = ReverseDistiller.load(wd / "ours_model")
    refs = load_reference_npz(wd / "ref_scaler.npz")
    angles = scipy.linalg.subspace_angles(ours_m.components_.T, refs.pca_components.T)
    # regression part (the reference's PCR is exact): compare the linear maps directly
    W_ref = refs.linear_map()
    coef_rel = float(np.abs(ours_m.coef_ - W_ref).max() / np.abs(W_ref).max())
    # variance each residual block captures (exact top-d eigenvalues are the maximum possible)
    var_ours = float(np.var(o[:, p:].astype(np.float64), axis=0, ddof=1).sum())
    var_ref = float(np.var(r[:, p:].astype(np.float64), axis=0, ddof=1).sum())
    # importing the reference's own npz reproduces its own outputs
    imp = ReverseDistiller.from_reference(wd / "ref_scaler.npz", chunk_rows=args.chunk_rows)
    imp_out = imp.transform(np.asarray(X), np.asarray(Y))
    import_max_abs = float(np.abs(imp_out - r).max())
    # leading components, which the randomised PCA resolves well, agree closely
    k10 = min(10, o.shape[1] - p)
    max_abs_top10 = float(col_max[:k10].max())

    speedup = ref["fit_s"] / ours["fit_s"]
    gb = lambda v: v / 2**30
    rows = [
        ("ours (arrays in RAM)", args.rows, ours),
        ("reference rdScaler pcr/fbpca", args.rows, ref),
        ("ours streamed (generated)", args.rows, stream_small),
        ("ours streamed (generated)", args.big_rows, stream_big),
    ]
    print()
    print(f"{'method':32s} {'rows':>9s} {'fit s':>8s} {'fit CPU s':>10s} {'transform s':>12s} {'peak RSS GB':>12s} "
          f"{'fit extra GB':>13s}")
    for name, n, res in rows:
        tr = f"{res['transform_s']:.2f}" if res.get("transform_s") is not None else "-"
        extra = gb(res["fit_peak_rss"] - res["rss_before_fit"])
        print(f"{name:32s} {n:9d} {res['fit_s']:8.2f} {res['fit_cpu_s']:10.2f} {tr:>12s} {gb(res['peak_rss']):12.2f} "
              f"{extra:13.2f}")
    print()
    cpu_speedup = ref["fit_cpu_s"] / ours["fit_cpu_s"]
    print(f"fit speed-up vs reference: {speedup:.1f}x wall, {cpu_speedup:.1f}x CPU time (target >= 10x)")
    print(f"n significant PCs: ours {ours['n_significant_pcs']}, reference {ref['n_significant_pcs']}; "
          f"sigma^2 ours {ours['sigma_sq']:.6g}, reference {ref['sigma_sq']:.6g}")
    print(f"regression map max rel diff: {coef_rel:.2e}")
    print(f"prefix max abs diff vs H_small: ours {prefix_ours}, reference {prefix_ref}")
    print(f"residual block max abs diff after sign alignment: {max_abs:.4g} (scale {scale:.4g}); "
          f"top-{k10} components: {max_abs_top10:.4g}")
    print(f"principal angles ours vs reference residual subspace: max {np.degrees(angles.max()):.3f} deg, "
          f"median {np.degrees(np.median(angles)):.4f} deg")
    print(f"residual variance captured: ours {var_ours:.6g}, reference {var_ref:.6g} "
          f"(exact top-{o.shape[1] - p} is the maximum)")
    print(f"reference npz imported into ours vs the reference's own step(): max abs diff {import_max_abs:.3g}")
    print(f"peak RSS of our streamed fit: {gb(stream_small['peak_rss']):.2f} GB at {args.rows} rows, "
          f"{gb(stream_big['peak_rss']):.2f} GB at {args.big_rows} rows")
    result = {
        "bench": "distill",
        "shape": [args.rows, args.small, args.large],
        "threads": 2,
        "ours_fit_s": round(ours["fit_s"], 3),
        "ours_transform_s": round(ours["transform_s"], 3),
        "ours_peak_rss_gb": round(gb(ours["peak_rss"]), 3),
        "ours_fit_extra_rss_gb": round(gb(ours["fit_peak_rss"] - ours["rss_before_fit"]), 3),
        "ref_fit_s": round(ref["fit_s"], 3),
        "ref_transform_s": round(ref["transform_s"], 3),
        "ref_peak_rss_gb": round(gb(ref["peak_rss"]), 3),
        "ref_fit_extra_rss_gb": round(gb(ref["fit_peak_rss"] - ref["rss_before_fit"]), 3),
        "fit_speedup": round(speedup, 2),
        "fit_cpu_speedup": round(cpu_speedup, 2),
        "ours_fit_cpu_s": round(ours["fit_cpu_s"], 3),
        "ref_fit_cpu_s": round(ref["fit_cpu_s"], 3),
        "n_pcs_ours": ours["n_significant_pcs"],
        "n_pcs_ref": ref["n_significant_pcs"],
        "sigma_sq_rel_diff": abs(ours["sigma_sq"] - ref["sigma_sq"]) / abs(ref["sigma_sq"]),
        "coef_max_rel_diff": coef_rel,
        "prefix_max_abs_diff_ours": prefix_ours,
        "residual_max_abs_diff": max_abs,
        "residual_max_abs_diff_top10": max_abs_top10,
        "residual_scale": scale,
        "max_principal_angle_deg": float(np.degrees(angles.max())),
        "captured_var_ours": var_ours,
        "captured_var_ref": var_ref,
        "import_max_abs_diff": import_max_abs,
        "stream_rows": [args.rows, args.big_rows],
        "stream_fit_s": [round(stream_small["fit_s"], 3), round(stream_big["fit_s"], 3)],
        "stream_peak_rss_gb": [round(gb(stream_small["peak_rss"]), 3), round(gb(stream_big["peak_rss"]), 3)],
    }
    result["ref_version"] = benchlib.peer_versions(ref_py, ["reverse-distillation"])["reverse-distillation"]
    result["headline"] = {"ours_fit_s": result["ours_fit_s"], "peer_fit_s": result["ref_fit_s"],
                          "ratio": result["fit_speedup"], "equal": bool(result["n_pcs_ours"] == result["n_pcs_ref"])}
    if tmp is not None:
        tmp.cleanup()
    result["load"] = meter.stop()
    result["machine"] = benchlib.machine(2)
    benchlib.emit(result)


if __name__ == "__main__":
    main()
