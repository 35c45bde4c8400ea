"""Run every analyses/bench_*.py, collect their final JSON lines, write analyses/results/<date>.json and .md,
and regenerate the README's benchmark section (between `<!-- bench:start -->` and `<!-- bench:end -->`).

Why a script: benchmark figures in the README are generated from a run, never typed. Each benchmark
provisions its own peer environment under .bench/ on first use.

    python analyses/run_bench.py                    # all benchmarks, quick settings (what `make bench` runs)
    python analyses/run_bench.py --only embed,sae   # a subset (the results file then holds only those)
    python analyses/run_bench.py --big              # larger inputs, more rounds (slower)
    python analyses/run_bench.py --readme-from analyses/results/2026-12-01.json   # README only
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402

from rd_interp.io.atomic import write_json, write_text  # noqa: E402


#: name -> (script, quick arguments, --big arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "embed": ("bench_embed.py", ["--bf16"], ["--residues-mini", "200000", "--residues-35m", "60000", "--rounds", "3", "--bf16"]),
    "sae": ("bench_sae.py", [], ["--steps", "300", "--rows", "1000000", "--rounds", "3"]),
    "distill": ("bench_distill.py", ["--rows", "100000", "--big-rows", "1000000"], []),
    "enrich": ("bench_enrich.py", [], []),
    "io": ("bench_io.py", ["--n", "100000"], []),
}


def md(s: Any) -> str:
    """Escape text for a Markdown table cell."""
    return html.escape(str(s), quote=False).replace("|", "\\|").replace("\n", " ")


def _f(x: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def rows_of(name: str, r: dict) -> list[list[str]]:
    """Markdown table rows (what, command, ours, peer, ratio, check) from one benchmark's JSON line."""
    script, quick, _ = BENCHES[name]
    cmd = f"`{' '.join(['python', 'analyses/' + script, *quick])}`"
    if name == "embed":
        out = []
        for m in r["models"]:
            rps = m["residues_per_s"]
            eq = m["ours_vs_transformers"]
            extra = f"; fair-esm loop {_f(rps.get('fair-esm'))} /s ({m['speedup_vs_fair_esm']:.2f}x)" \
                if "fair-esm" in rps else ""
            out.append([f"embedding, {m['model']} ({m['layers']} x {m['dim']}), {m['n_residues']:,} residues",
                        cmd, f"{_f(rps['ours'])} residues/s ({m['roofline_fraction']:.0%} of fp32 roofline"
                        f"{_breakdown(m.get('time_breakdown'))})",
                        f"transformers EsmModel sdpa {_f(rps['transformers'])} /s{extra}",
                        f"{m['speedup_vs_transformers']:.2f}x",
                        f"max rel diff {eq['max_rel']:.1e}, min cosine {eq['min_cosine']:.6f}"])
            if "bf16" in m:
                b = m["bf16"]
                out.append([f"embedding bf16 (optional, `models.autocast = \"bf16\"`), {m['model']}", cmd,
                            f"{_f(b['residues_per_s'])} residues/s", "transformers fp32 (above)",
                            f"{b['speedup_vs_transformers_fp32']:.2f}x",
                            f"vs fp32: max abs {b['deviation_from_fp32']['max_abs']:.2g}, min cosine "
                            f"{b['deviation_from_fp32']['min_cosine']:.5f}"])
        return out
    if name == "sae":
        fl = r["step_floor_ms"]
        topk = (f"; top-k of a batch {fl['topk_ours_ms']:.1f} ms (torch.topk {fl['topk_torch_ms']:.1f} ms)"
                if "topk_ours_ms" in fl else "")
        t = r["tools"]
        ours = t["ours"]
        peers = "; ".join(f"{md(k)} {_f(v['vectors_per_s'])} /s, FVU {v['fvu']:.3f}" for k, v in t.items() if k != "ours")
        return [[f"TopK SAE training, {r['n_train']:,} x {r['dim']}, {r['n_latents']} latents, k={r['k']}, "
                 f"{r['steps']} steps", cmd,
                 f"{_f(ours['vectors_per_s'])} vectors/s, FVU {ours['fvu']:.3f} "
                 f"(median step: {r['step_floor_fraction']:.0%} of step floor"
                 f"{_step_parts(r.get('step_breakdown_ms'))})",
                 peers,
                 f"{_f(r['speedup_vs_fastest_peer'], '.2f')}x vs {md(r['fastest_peer'])}",
                 f"held-out FVU ours - peer {_f(r['fvu_ours_minus_fastest_peer'], '+.1e')}" + topk]]
    if name == "distill":
        return [[f"reverse distillation fit, {r['stream_rows'][0]:,} x (320 -> 480)", cmd,
                 f"{r['ours_fit_s']:.1f} s, {r['ours_peak_rss_gb']:.1f} GB peak",
                 f"reverse-distillation {md(r.get('ref_version'))} {r['ref_fit_s']:.1f} s, {r['ref_peak_rss_gb']:.1f} GB",
                 f"{r['fit_speedup']:.1f}x", f"PCs {r['n_pcs_ours']} vs {r['n_pcs_ref']}"]]
    if name == "enrich":
        return [[f"GO enrichment, {r['n_proteins']:,} proteins, {r['n_latents']} latents", cmd,
                 f"{r['ours_seconds']:.1f} s" + (f"; + {r['null_permutations']} label permutations "
                                                 f"{r['null_seconds']:.1f} s" if r.get("null_permutations") else ""),
                 f"goatools run_study loop {r['goatools_extrapolated_seconds']:,.0f} s (extrapolated from "
                 f"{r['goatools_sample_latents']} latents)", f"{r['speedup']:.0f}x",
                 f"{r['mismatches']} mismatches in {r['records_compared']:,} records"]]
    if name == "io":
        h = r["headline"]
        runs = len(r["fasta"]["rd_interp"].get("seconds_all", [0]))
        med = f" (median of {runs} runs)" if runs > 1 else ""
        return [[f"FASTA reading, {r['n_sequences']:,} x {r['length']} aa", cmd,
                 f"{h['ours_s']:.2f} s{med}, +{h['ours_rss_growth_mb']} MB RSS",
                 f"fair-esm FastaBatchedDataset {h['peer_s']:.2f} s, +{h['peer_rss_growth_mb']} MB",
                 f"{h['ratio']:.2f}x", "same records and residues"]]
    return []


def _breakdown(bd: dict | None) -> str:
    """The profiled split of our forward's time, which says what keeps it from the roofline ("" if absent)."""
    if not bd or bd["linear"]["gflops"] is None or bd["attention"]["gflops"] is None:
        return ""
    lin, att = bd["linear"], bd["attention"]
    return (f"; linear layers {lin['fraction_of_ceiling']:.0%} of the GEMM ceiling, attention "
            f"{att['gflops']:.0f} GFLOP/s in {att['share_of_time']:.0%} of the time")


def _step_parts(bd: dict | None) -> str:
    """A profiled SAE step split into its parts, which says where the time beyond the floor goes ("" if absent)."""
    if not bd:
        return ""
    return (f"; a profiled step of {bd['step_mean']:.0f} ms: encoder matmul {bd['encoder_matmul']:.0f}, "
            f"sparse backward products {bd['sparse_backward']:.0f}, decode {bd['decode']:.0f}, "
            f"Adam {bd['adam']:.0f}, rest (top-k, elementwise, Python) {bd['rest']:.0f} ms")


def _ceiling_note(results: dict) -> str:
    """The embedding benchmark's fp32 GEMM ceiling readings: the machine's speed during the run. A shared host's
    other tenants do not show as processes, but they slow this reading and every absolute figure with it."""
    e = results["benchmarks"].get("embed", {})
    start, end = (e.get(k, {}).get("gflops") for k in ("gemm_ceiling_start", "gemm_ceiling_end"))
    if start is None or end is None:
        return ""
    return (f" This machine's fp32 GEMM ceiling, measured by the embedding benchmark, was {start:.1f} GFLOP/s at its "
            f"start and {end:.1f} at its end: absolute speeds scale with it, the ratios come from the same run.")


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    lines = [f"Generated by `make bench` (analyses/run_bench.py) on {md(results['date'])} from "
             f"`analyses/results/{md(results['date'])}.json`: {md(m.get('cpu_model'))}, {m.get('cpu_count')} CPUs, "
             f"torch {md(m.get('torch'))}, {results.get('threads', 2)} threads; ours and each peer run on the same "
             "input in the same run, in alternation. Other processes on the machine during each benchmark are "
             "stated in the last column (CPU cores they kept busy on average)." + _ceiling_note(results), "",
             "| what | command | rd_interp | peer (same input, same run) | ratio | check | other load |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in [n for n in BENCHES if n in results["benchmarks"]]:
        r = results["benchmarks"][name]
        if "error" in r:
            lines.append(f"| {md(name)} | `python analyses/{BENCHES[name][0]}` | failed: {md(r['error'])} | | | | |")
            continue
        load = r.get("load", {}).get("other_processes_cores_busy")
        for row in rows_of(name, r):
            lines.append("| " + " | ".join(row) + f" | {_f(load, '.1f')} cores |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma list of: {', '.join(BENCHES)}")
    ap.add_argument("--big", action="store_true", help="larger inputs and more rounds")
    ap.add_argument("--readme-from", help="only regenerate the README section from this results file")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)
    if args.readme_from:
        results = json.loads(Path(args.readme_from).read_text())
        benchlib.replace_section("bench", markdown(results))
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown}; known: {list(BENCHES)}")
    date = dt.date.today().isoformat()
    out = HERE / "results"
    previous = out / f"{date}.json"
    # --only re-measures some benchmarks: today's other entries are kept (each records its own load and commit).
    results: dict[str, Any] = (json.loads(previous.read_text()) if previous.is_file() and set(names) != set(BENCHES)
                               else {"date": date, "benchmarks": {}})
    for n in names:
        script, quick, big = BENCHES[n]
        cmd = [sys.executable, str(HERE / script), *(big if args.big else quick)]
        print(f"== {n}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
        print(proc.stdout.rstrip().rsplit("\n", 1)[0] if "\n" in proc.stdout else "", flush=True)
        try:
            r = benchlib.last_json_line(proc.stdout)
        except ValueError:
            r = {"error": f"exit {proc.returncode}, no JSON line"}
        r["exit_code"] = proc.returncode
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        results["benchmarks"][n] = r
        print(f"== {n}: exit {proc.returncode} in {r['wall_s']} s", flush=True)
    results["machine"] = benchlib.machine(2)
    results["threads"] = 2
    out.mkdir(exist_ok=True)
    write_json(out / f"{date}.json", results)
    table = markdown(results)
    write_text(out / f"{date}.md", table)
    print(f"wrote analyses/results/{date}.json and .md")
    if not args.no_readme:
        benchlib.replace_section("bench", table)
        print("README benchmark section regenerated")
    failed = [n for n, r in results["benchmarks"].items() if r.get("exit_code") != 0]
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
