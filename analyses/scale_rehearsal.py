"""Scale rehearsal: the whole pipeline at REAL ESM-2 shapes with RANDOMLY INITIALISED weights.

Random weights give meaningless biology: this tests shapes, memory and time only. Checkpoints of the
ESM-2 8M (6 x 320, 20 heads) and 35M (12 x 480, 20 heads) shapes (with --big also 150M, 30 x 640) are
built with fair-esm's ESM2 (rd_interp.plm.family.build_model), saved in fair-esm format (float32, as the
released files) and loaded by the normal loader (a .pt path in models.family). The pipeline (data ->
embed -> fitset -> fitembed -> distill -> sae -> encode -> enrich -> report; probes off, one SAE seed,
n_latents = 8 x the large width) runs once per protein count on the shipped Swiss-Prot proteins, each in
a fresh subprocess with its own out dir, so peak RSS is per run (and per stage, via /proc VmHWM: what a
stage peaks at includes memory that earlier stages of the same process left allocated).
A cost model per stage kind (time = a + b * residues, bytes = c0 + c * residues, non-negative least
squares) is fitted over the counts and predicts 20,000 and 100,000 proteins on this CPU at the large
shape; the embed stage of a 650M (33 x 1280) model is extrapolated by the ratio of per-token FLOPs.

    python analyses/scale_rehearsal.py                      # 100 / 200 / 400 proteins, 8M -> 35M shapes
    python analyses/scale_rehearsal.py --counts 20,40,80 --sae-steps 10    # quick smoke run
    python analyses/scale_rehearsal.py --big --threads 4    # 8M -> 35M -> 150M shapes

Options: --counts, --big, --threads (torch threads, default 2), --sae-steps (default 100), --fit-proteins
(distillation fit set, default 50), --spaces (SAE spaces, default large,rd), --out (default
runs/rehearsal), --reuse (keep counts finished by an earlier invocation with the same settings:
`--counts 100`, `--counts 200`, then `--counts 100,200,400 --reuse` runs only 400). Prints one table per
count, the cost model and its predictions, PASS/FAIL for "peak allocated memory grows < 20% from the
smallest to the largest count" (exit 1 on FAIL; allocated = RssAnon sampled every 20 ms, since VmHWM also
counts the memory-mapped store pages a stage has read, reported beside it), and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

ROOT = Path(__file__).resolve().parents[1]
#: name -> (layers, dim, heads): the real ESM-2 shapes
SHAPES = {"8M": (6, 320, 20), "35M": (12, 480, 20), "150M": (30, 640, 20), "650M": (33, 1280, 20)}
PREDICT_PROTEINS = (20_000, 100_000)
RSS_GROWTH_LIMIT = 0.20
ORDER = ["data", "embed", "fitset", "fitembed", "distill", "controls", "sae", "encode", "enrich", "report"]
NOTE = "RANDOM weights: this rehearsal tests shapes, memory and time only; its biology is meaningless."
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def flops_per_token(layers: int, dim: int, tokens: float) -> float:
    """Forward FLOPs per token: 2 x (12 L d^2 non-embedding weights) + 4 L d T (QK^T and AV over T tokens)."""
    return 2.0 * 12 * layers * dim**2 + 4.0 * layers * dim * tokens


def build_checkpoints(names: list[str], cache: Path) -> dict[str, dict[str, Any]]:
    """Random-init fair-esm checkpoints of the given shapes in `cache` (reused when present)."""
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    out = {}
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        layers, dim, heads = SHAPES[name]
        path, meta = cache / f"random-{name}.pt", cache / f"random-{name}.json"
        spec = {"layers": layers, "dim": dim, "heads": heads, "seed": 0, "half": False}
        if not (path.is_file() and meta.is_file() and json.loads(meta.read_text()).get("spec") == spec):
            model = build_model(MemberSpec(f"random-{name}", layers, dim, heads, 0), alphabet(), seed=0)
            n_params = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("contact_head"))
            save_esm2_checkpoint(model, path, half=False)
            meta.write_text(json.dumps({"spec": spec, "n_params": int(n_params)}))
            print(f"built random-{name}.pt ({n_params / 1e6:.1f}M parameters)", flush=True)
        out[name] = {"path": str(path), "n_params": json.loads(meta.read_text())["n_params"], **spec}
    return out


def _hwm() -> int:
    """Peak RSS (bytes) of this process since the last _reset_hwm()."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_hwm() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then each stage reports the run's peak so far


def _rss_anon() -> int:
    """Anonymous resident memory (bytes): what the process allocated, without file pages it has mapped."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class AnonPeak(threading.Thread):
    """Peak of RssAnon, sampled every 20 ms. Why beside VmHWM: VmHWM also counts the pages of the memory-mapped
    store files a stage has read, which grow with the store and which the kernel drops under pressure; the
    flat-memory check is about what the stages allocate."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, _rss_anon())

    def take(self) -> int:
        """The peak since the last take()."""
        peak, self.peak = max(self.peak, _rss_anon()), 0
        return peak


def _bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


def child(spec: dict[str, Any]) -> None:
    """One pipeline run (a fresh process): prints one JSON line of timings, CPU, peak RSS, disk, residues."""
    import torch

    torch.set_num_threads(spec["threads"])
    from rd_interp.config import RunConfig
    from rd_interp.pipeline.run import Pipeline

    cpu: dict[str, float] = {}
    peak: dict[str, int] = {}
    anon: dict[str, int] = {}
    mark = [time.process_time()]
    sampler = AnonPeak()

    class Metered(Pipeline):
        """Records each stage's CPU seconds (all threads) and peak RSS besides the pipeline's wall times."""

        def _run(self, stage, fn):
            m = super()._run(stage, fn)
            cpu[stage.name], peak[stage.name], anon[stage.name] = time.process_time() - mark[0], _hwm(), sampler.take()
            mark[0] = time.process_time()
            _reset_hwm()
            return m

    cfg = RunConfig(out_dir=spec["out"], device="cpu")
    cfg.models.family = spec["family"]
    cfg.data.max_proteins = spec["n"]
    cfg.distill.train_proteins = spec["fit_proteins"]
    cfg.sae.n_latents, cfg.sae.n_steps = spec["n_latents"], spec["sae_steps"]
    cfg.sae.seeds, cfg.sae.spaces = [0], spec["spaces"]
    cfg.probe.enabled = False
    cfg.workers = 1  # every stage in this process, where Metered sees its CPU time and memory
    cfg.validate()
    base, base_anon = _hwm(), _rss_anon()  # python + torch + rd_interp imported
    sampler.start()
    t0 = time.perf_counter()
    _reset_hwm()
    stages = Metered(cfg, progress=False).run()
    wall = time.perf_counter() - t0
    cpu["report"], peak["report"] = time.process_time() - mark[0], _hwm()  # what ran after the last stage
    anon["report"] = sampler.take()
    sampler.stop.set()
    root = Path(spec["out"])
    embeds = {name: m.result for name, m in stages.items() if name.startswith("embed-")}
    print(json.dumps({
        "timings": json.loads((root / ".rd_interp" / "timings.json").read_text())["timings"],
        "cpu_s": cpu, "stage_peak_rss": peak, "disk": {name: _bytes(m.dir) for name, m in stages.items()},
        "wall_s": wall, "peak_rss": max(base, *peak.values()), "import_rss": base, "out_bytes": _bytes(root),
        "stage_peak_anon": anon, "peak_anon": max(base_anon, *anon.values()), "import_anon": base_anon,
        "residues": {k: int(v["n_rows"]) for k, v in embeds.items()},
        "n_proteins": {k: int(v["n_proteins"]) for k, v in embeds.items()},
        "n_truncated": {k: int(v.get("n_truncated", 0)) for k, v in embeds.items()}}), flush=True)


def run_count(n: int, args: argparse.Namespace, ckpts: dict[str, dict[str, Any]], family: list[str]) -> dict:
    """The pipeline on `n` proteins in a fresh subprocess (its out dir wiped first) -> the child's JSON."""
    out = Path(args.out) / f"n{n}"
    spec = {"out": str(out), "n": n, "family": [ckpts[f]["path"] for f in family], "threads": args.threads,
            "n_latents": 8 * SHAPES[family[-1]][1], "sae_steps": args.sae_steps,
            "fit_proteins": args.fit_proteins, "spaces": args.spaces.split(",")}
    saved = out.parent / f"n{n}.json"
    if args.reuse and saved.is_file() and json.loads(saved.read_text())["spec"] == spec:
        print(f"\nreusing the {n}-protein run of {saved.name}", flush=True)
        return json.loads(saved.read_text())["result"]
    if out.exists():
        shutil.rmtree(out)  # cached stages would report no time
    out.mkdir(parents=True)
    env = {**os.environ, **{k: str(args.threads) for k in THREAD_VARS}, "RD_INTERP_OFFLINE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0, meter = time.perf_counter(), benchlib.LoadMeter()
    with open(out.parent / f"n{n}.log", "w") as log:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=False,
                              stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    if proc.returncode != 0:
        tail = (out.parent / f"n{n}.log").read_text()[-4000:]
        raise SystemExit(f"run with {n} proteins failed (exit {proc.returncode}):\n{tail}")
    res = benchlib.last_json_line(proc.stdout)
    res["process_wall_s"], res["load"] = time.perf_counter() - t0, meter.stop()
    saved.write_text(json.dumps({"spec": spec, "result": res}))
    return res


def kind_of(stage: str) -> str:
    """Cost-model kind: embed/fitembed per model shape, else the name's first part (sae-rd-s0 -> sae)."""
    head, _, rest = stage.partition("-")
    return f"{head}-{rest.replace('random-', '')}" if head in ("embed", "fitembed") else head


def order(stage: str) -> tuple[int, str]:
    """Pipeline order of a stage or kind name, for tables."""
    head = stage.split("-")[0]
    return (ORDER.index(head) if head in ORDER else len(ORDER), stage)


def fit_costs(res: list[dict], x: np.ndarray) -> dict[str, dict[str, float]]:
    """Per kind: time = a + b * residues, bytes = c0 + c * residues (least squares, coefficients >= 0, so a
    fixed-size stage gets b = c = 0 rather than a noisy negative slope), with max relative errors; and the
    same time model on CPU seconds (all threads), which other jobs on a shared machine disturb less."""
    from scipy.optimize import nnls

    X = np.stack([np.ones_like(x), x / 1e6], axis=1)  # per million residues: well-scaled columns

    def rel(pred: np.ndarray, meas: np.ndarray) -> float:
        return float(np.max(np.abs(pred - meas) / np.maximum(np.abs(meas), 1e-9)))

    model = {}
    for k in sorted({kind_of(s) for r in res for s in r["timings"]}, key=order):
        t = np.array([sum(v for s, v in r["timings"].items() if kind_of(s) == k) for r in res])
        tc = np.array([sum(v for s, v in r["cpu_s"].items() if kind_of(s) == k) for r in res])
        by = np.array([sum(v for s, v in r["disk"].items() if kind_of(s) == k) for r in res], dtype=float)
        (a, b), (ac, bc), (c0, c) = nnls(X, t)[0], nnls(X, tc)[0], nnls(X, by)[0]
        if k.startswith("fit"):  # the fit set does not depend on the analysed proteins: a constant
            (a, b), (ac, bc), (c0, c) = (t.mean(), 0.0), (tc.mean(), 0.0), (by.mean(), 0.0)
        model[k] = {"a_s": float(a), "b_s_per_residue": float(b / 1e6), "c0_bytes": float(c0),
                    "c_bytes_per_residue": float(c / 1e6), "time_rel_err": rel(X @ [a, b], t),
                    "bytes_rel_err": rel(X @ [c0, c], by) if by.any() else 0.0, "a_cpu_s": float(ac),
                    "b_cpu_s_per_residue": float(bc / 1e6), "cpu_rel_err": rel(X @ [ac, bc], tc)}
    return model


def print_run(n: int, r: dict, large: str) -> None:
    """The table of one count: per stage wall and CPU seconds, peak RSS and disk written."""
    print(f"\n== {n} proteins: {r['residues'][f'embed-random-{large}']:,} residues embedded per model; run "
          f"wall {r['wall_s']:.1f} s; peak RSS {r['peak_rss'] / 2**30:.2f} GiB (after imports "
          f"{r['import_rss'] / 2**30:.2f}), of it allocated (anonymous) {r['peak_anon'] / 2**30:.2f} GiB; out dir {r['out_bytes'] / 1e6:.1f} MB; other jobs kept "
          f"{r.get('load', {}).get('other_processes_cores_busy')} cores busy")
    print(f"{'stage':28s} {'wall s':>8s} {'CPU s':>8s} {'peak GiB':>9s} {'anon GiB':>9s} {'disk MB':>9s}")
    for s in sorted(r["timings"], key=order):
        print(f"{s:28s} {r['timings'][s]:8.2f} {r['cpu_s'].get(s, 0):8.2f} "
              f"{r['stage_peak_rss'].get(s, 0) / 2**30:9.2f} {r['stage_peak_anon'].get(s, 0) / 2**30:9.2f} "
              f"{r['disk'].get(s, 0) / 1e6:9.2f}")
    sys.stdout.flush()


def predict(model: dict, results: list[dict], args: argparse.Namespace, large: str) -> tuple[dict, dict]:
    """Time and disk at PREDICT_PROTEINS shipped-length proteins; the 650M embed by the FLOP ratio."""
    from rd_interp.config import RunConfig
    from rd_interp.io import datasets
    from rd_interp.io.fasta import read_fasta

    mean_res = float(np.mean([min(len(r.sequence), 1022) for r in read_fasta(datasets.shipped_proteins())]))
    fit_res = 1000 * float(np.mean([len(r.sequence) for r in read_fasta(datasets.shipped_train_pool())
                                    if 50 <= len(r.sequence) <= 1022]))  # the default fit set: 1,000 proteins
    (Ll, dl, _), (L650, d650, _) = SHAPES[large], SHAPES["650M"]
    ratio = flops_per_token(L650, d650, mean_res + 2) / flops_per_token(Ll, dl, mean_res + 2)
    n_sae = len(args.spaces.split(","))
    sae_s = min(sum(v for s, v in r["timings"].items() if kind_of(s) == "sae") for r in results)
    step_s = sae_s / (n_sae * args.sae_steps)  # includes the stage's fixed work: an upper bound
    sae = RunConfig().sae
    n_def = len(sae.spaces) * len(sae.seeds)
    print(f"\nPREDICTIONS on this CPU ({args.threads} threads), {large} shape, {mean_res:.1f} residues per "
          f"shipped protein; fitembed at the default 1,000 fit proteins ({fit_res:,.0f} residues); the "
          f"sae line is {n_sae} SAE(s) x {args.sae_steps} steps as rehearsed (its time follows steps). wall: "
          "the wall-time model; CPU: the CPU-seconds one (all threads; less disturbed by other jobs):")
    preds: dict[str, Any] = {}
    for n in PREDICT_PROTEINS:
        R = n * mean_res
        per = {}
        for k, m in model.items():  # the fit set does not grow with n: it costs as an embed stage of its size
            m, r_k = (model["embed" + k[8:]], fit_res) if k.startswith("fitembed") else (m, R)
            per[k] = {"time_s": m["a_s"] + m["b_s_per_residue"] * r_k,
                      "cpu_s": m["a_cpu_s"] + m["b_cpu_s_per_residue"] * r_k,
                      "bytes": m["c0_bytes"] + m["c_bytes_per_residue"] * r_k}
        emb = model[f"embed-{large}"]
        e650 = {"time_s": emb["a_s"] + emb["b_s_per_residue"] * ratio * R,
                "cpu_s": emb["a_cpu_s"] + emb["b_cpu_s_per_residue"] * ratio * R,
                "bytes": emb["c0_bytes"] + emb["c_bytes_per_residue"] * d650 / dl * R}
        steps = math.ceil(min(5 * (1 - sae.heldout_fraction) * R, 50_000_000) / sae.batch_size)
        tot_t, tot_b = sum(v["time_s"] for v in per.values()), sum(v["bytes"] for v in per.values())
        tot_c = sum(v["cpu_s"] for v in per.values())
        preds[str(n)] = {"residues": R, "stages": per, "total_time_s": tot_t, "total_cpu_s": tot_c,
                         "total_bytes": tot_b,
                         "embed_650M_extrapolated": e650, "sae_default_steps": steps,
                         "sae_default_s_each": steps * step_s}
        print(f"  {n:,} proteins ({R / 1e6:.2f}M residues): total {tot_t / 3600:.2f} h wall, "
              f"{tot_c / 3600:.2f} h CPU, {tot_b / 1e9:.1f} GB")
        for k, v in per.items():
            print(f"      {k:16s} {v['time_s'] / 60:9.1f} min wall {v['cpu_s'] / 60:9.1f} min CPU "
                  f"{v['bytes'] / 1e9:8.2f} GB")
        print(f"      SAE at the default n_steps ({steps:,} x {sae.batch_size}): "
              f"{steps * step_s / 3600:.2f} h per SAE ({step_s:.2f} s/step), x{n_def} for the default "
              f"{len(sae.spaces)} spaces x {len(sae.seeds)} seeds = {n_def * steps * step_s / 3600:.1f} h")
        print(f"      EXTRAPOLATION embed at 650M (33 x 1280; FLOP ratio {ratio:.1f}x {large}): "
              f"{e650['time_s'] / 3600:.2f} h wall, {e650['cpu_s'] / 3600:.2f} h CPU, "
              f"{e650['bytes'] / 1e9:.1f} GB")
    b8, bl = model["embed-8M"]["b_s_per_residue"], model[f"embed-{large}"]["b_s_per_residue"]
    r_meas = bl / b8 if b8 > 0 else None
    r_flop = flops_per_token(Ll, dl, mean_res + 2) / flops_per_token(6, 320, mean_res + 2)
    print(f"FLOP rule per token: 2 * 12 L d^2 (weights) + 4 L d T (QK^T and AV, T = mean tokens); check: "
          f"measured embed {large}/8M time per residue {r_meas or float('nan'):.2f}x, FLOPs {r_flop:.2f}x")
    return preds, {"mean_residues_per_protein": mean_res, "flop_ratio_650M": ratio, "sae_s_per_step": step_s,
                   "embed_ratio_vs_8M": {"measured": r_meas, "flops": r_flop}}


def readme_section(d: dict[str, Any]) -> str:
    """The README's rehearsal section from a result of this script (figures generated, never typed)."""
    large = d["family"][-1]
    m = d["machine"]
    runs = d["runs"]
    lines = [
        f"Generated by `{d['command']}` on {d['date']} (`analyses/results/rehearsal.json`): {m.get('cpu_model')}, "
        f"{m.get('cpu_count')} CPUs, {d['threads']} torch threads, torch {m.get('torch')}; other processes kept "
        f"{d['load'].get('other_processes_cores_busy')} cores busy on average. Pipeline with probes off, SAEs on "
        f"{' and '.join(f'`{s}`' for s in d['spaces'])} with {d['n_latents']:,} latents and {d['sae_steps']} steps, "
        f"randomly initialised fair-esm checkpoints at the real "
        + ", ".join(f"{f} ({d['checkpoints'][f]['layers']} x {d['checkpoints'][f]['dim']})" for f in d["family"])
        + f" shapes loaded by the normal path, each count in a fresh process. {NOTE}",
        "",
        "| proteins | residues per model | wall | peak allocated memory | peak RSS incl. mapped store pages | output |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, r in zip(d["counts"], runs):
        lines.append(f"| {n:,} | {r['residues'][f'embed-random-{large}']:,} | {r['wall_s']:.1f} s | "
                     f"{r['peak_anon'] / 2**30:.2f} GiB | {r['peak_rss'] / 2**30:.2f} GiB | {r['out_bytes'] / 1e6:,.0f} MB |")
    errs = ", ".join(f"{k} {v['time_rel_err']:.0%}" for k, v in d["cost_model"].items())
    lines += ["", f"Peak allocated memory grows {d['anon_growth']:+.1%} from {d['counts'][0]:,} to {d['counts'][-1]:,} "
              f"proteins ({'PASS' if d['memory_pass'] else 'FAIL'}: the script fails at +{RSS_GROWTH_LIMIT:.0%}); peak RSS "
              f"with the mapped store pages {d['rss_growth']:+.1%}. Cost model: time = a + b x residues per stage kind, "
              f"fitted on the {len(runs)} runs; largest relative error on the measured points: {errs}. "
              f"Its predictions on this CPU at the {large} shape ({d['mean_residues_per_protein']:.0f} residues per "
              "shipped protein):", ""]
    lines += ["| proteins | residues | " + " | ".join(d["cost_model"]) + " | total wall | disk | 650M embed (extrapolated) |",
              "| ---: | ---: | " + " | ".join("---:" for _ in d["cost_model"]) + " | ---: | ---: | ---: |"]

    def dur(sec: float) -> str:
        return f"{sec / 60:.1f} min" if sec < 5400 else f"{sec / 3600:.1f} h"

    for n, p in d["predictions"].items():
        lines.append(f"| {int(n):,} | {p['residues'] / 1e6:.1f}M | "
                     + " | ".join(dur(p["stages"][k]["time_s"]) for k in d["cost_model"])
                     + f" | {dur(p['total_time_s'])} | {p['total_bytes'] / 1e9:.1f} GB | "
                       f"{dur(p['embed_650M_extrapolated']['time_s'])} |")
    p20 = d["predictions"][str(PREDICT_PROTEINS[0])]
    lines += ["", f"The `sae` column is {len(d['spaces'])} SAEs x {d['sae_steps']} steps as rehearsed; at the default "
              f"step count one SAE costs {d['sae_s_per_step']:.2f} s per 4,096-vector step ({dur(p20['sae_default_s_each'])} "
              f"per SAE at {PREDICT_PROTEINS[0]:,} proteins): a run's many SAEs are where torchrun or a GPU pay off. "
              f"The 650M column scales the {large} embedding time by FLOPs per token ({d['flop_ratio_650M']:.1f}x): an "
              "extrapolation, not a measurement.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="100,200,400", help="protein counts, comma separated")
    ap.add_argument("--big", action="store_true", help="family 8M -> 35M -> 150M shapes (default 8M -> 35M)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run (default 2)")
    ap.add_argument("--sae-steps", type=int, default=100, help="SAE optimiser steps (default 100)")
    ap.add_argument("--fit-proteins", type=int, default=50, help="distillation fit-set proteins (default 50)")
    ap.add_argument("--spaces", default="large,rd", help="SAE spaces (default large,rd)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "rehearsal"), help="scratch folder (runs/rehearsal)")
    ap.add_argument("--reuse", action="store_true", help="keep counts finished before with the same settings")
    ap.add_argument("--no-readme", action="store_true", help="do not regenerate the README's rehearsal section")
    ap.add_argument("--readme-from", help="only regenerate the README section from this result file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.readme_from:
        benchlib.replace_section("rehearsal", readme_section(json.loads(Path(args.readme_from).read_text())))
        return None
    import torch

    torch.set_num_threads(args.threads)
    print(NOTE, flush=True)
    meter = benchlib.LoadMeter()
    counts = sorted(int(c) for c in args.counts.split(","))
    family = ["8M", "35M", "150M"] if args.big else ["8M", "35M"]
    large = family[-1]
    ckpts = build_checkpoints(family, Path(args.out) / "checkpoints")
    results = []
    for n in counts:
        results.append(run_count(n, args, ckpts, family))
        print_run(n, results[-1], large)
    x = np.array([r["residues"][f"embed-random-{large}"] for r in results], dtype=float)
    model = fit_costs(results, x)
    print(f"\ncost model over {len(counts)} counts: time = a + b * residues, bytes = c0 + c * residues "
          "(errors: max relative error on the measured points)")
    cols = ("a s", "b us/res", "c0 MB", "c B/res", "t err", "B err", "CPU a s", "b CPU us", "CPU err")
    print(f"{'kind':16s} " + " ".join(f"{c:>9s}" for c in cols))
    for k, m in model.items():
        print(f"{k:16s} {m['a_s']:9.2f} {m['b_s_per_residue'] * 1e6:9.1f} {m['c0_bytes'] / 1e6:9.2f} "
              f"{m['c_bytes_per_residue']:9.1f} {m['time_rel_err']:9.1%} {m['bytes_rel_err']:9.1%} "
              f"{m['a_cpu_s']:9.2f} {m['b_cpu_s_per_residue'] * 1e6:9.1f} {m['cpu_rel_err']:9.1%}")
    preds, extra = predict(model, results, args, large)
    rss = [r["peak_rss"] for r in results]
    anon = [r["peak_anon"] for r in results]
    rss_growth, growth = rss[-1] / rss[0] - 1, anon[-1] / anon[0] - 1
    ok = growth < RSS_GROWTH_LIMIT
    at = [max(r["stage_peak_anon"], key=r["stage_peak_anon"].get) for r in (results[0], results[-1])]
    print(f"\npeak RSS (VmHWM, includes the memory-mapped store pages read): {rss[0] / 2**30:.2f} -> "
          f"{rss[-1] / 2**30:.2f} GiB ({rss_growth:+.1%})")
    print(f"{'PASS' if ok else 'FAIL'}: peak allocated (anonymous) memory {anon[0] / 2**30:.2f} GiB at {counts[0]} "
          f"proteins (in {at[0]}) -> {anon[-1] / 2**30:.2f} GiB at {counts[-1]} (in {at[1]}): {growth:+.1%}; "
          f"limit +{RSS_GROWTH_LIMIT:.0%}")
    print(NOTE)
    shapes = {k: {kk: v[kk] for kk in ("layers", "dim", "heads", "n_params")} for k, v in ckpts.items()}
    result = {"bench": "scale_rehearsal", "note": NOTE, "family": family, "checkpoints": shapes,
                   "counts": counts, "residues": x.tolist(), "sae_steps": args.sae_steps,
                   "spaces": args.spaces.split(","), "fit_proteins": args.fit_proteins,
                   "n_latents": 8 * SHAPES[large][1], "runs": results, "peak_rss": rss, "rss_growth": rss_growth,
                   "peak_anon": anon, "anon_growth": growth, "memory_pass": ok, "cost_model": model, "predictions": preds, **extra,
                   "threads": args.threads, "load": meter.stop(), "machine": benchlib.machine(args.threads),
                   "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python analyses/scale_rehearsal.py",
                                                                             *sys.argv[1:]])}
    from rd_interp.io.atomic import write_json

    write_json(ROOT / "analyses" / "results" / "rehearsal.json", result)
    if not args.no_readme:
        benchlib.replace_section("rehearsal", readme_section(result))
    benchlib.emit(result)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
