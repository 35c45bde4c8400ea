"""Benchmark the io layer against its peers on the same inputs, in the same run.

* FASTA: rd_interp.io.fasta.read_fasta (streaming, validating) vs fair-esm's
  ``esm.data.FastaBatchedDataset.from_file`` (the ESM reference loader: reads everything into lists,
  no residue validation) on a synthetic plain FASTA of --n sequences. Each runs in a fresh
  subprocess so peak RSS is its own, --rounds times in alternation (ours, peer, ours, peer, ...); the
  medians are reported (one run of a ~0.4 s read swung by 0.55x-1.13x between runs on a shared machine).
* GO: rd_interp.io.go.Ontology.load (gz cache + line-numbered validation + obsolete index + goatools)
  vs goatools ``GODag(optional_attrs={"relationship"})`` alone on the same plain OBO.
* Annotations: read_annotations on the shipped TSV (169k rows) with resolution bookkeeping.

Prints its figures and ends with ONE JSON line.
    python analyses/bench_io.py [--n 200000] [--length 300]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

PROBE = textwrap.dedent("""
    import json, resource, sys, time
    which, path = sys.argv[1], sys.argv[2]
    if which == "rd_interp":
        from rd_interp.io.fasta import read_fasta
    else:
        from esm.data import FastaBatchedDataset
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    if which == "rd_interp":
        n = res = 0
        for rec in read_fasta(path):
            n += 1
            res += len(rec.sequence)
    else:
        ds = FastaBatchedDataset.from_file(path)
        n, res = len(ds), sum(len(s) for s in ds.sequence_strs)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "residues": res, "seconds": dt, "rss_after_imports_mb": rss0, "peak_rss_mb": peak,
                      "peak_rss_growth_mb": peak - rss0}))
""")


def run_probe(which: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, which, str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_run(rs: list[dict]) -> dict:
    """The run with the median time (the lower middle one for an even count), with every run's seconds."""
    return {**benchlib.median_item(rs, key=lambda r: r["seconds"]), "seconds_all": [r["seconds"] for r in rs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="synthetic sequences")
    ap.add_argument("--length", type=int, default=300, help="residues per synthetic sequence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs of each reader (median reported)")
    args = ap.parse_args()
    meter = benchlib.LoadMeter()

    results: dict = {"bench": "io", "n_sequences": args.n, "length": args.length}
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "bench.fasta"
        rng = random.Random(args.seed)
        aa = "ACDEFGHIKLMNPQRSTVWY"
        with open(fasta, "w") as fh:
            for i in range(args.n):
                fh.write(f">sp|Q{i:07d}|BENCH_HUMAN synthetic {i}\n")
                seq = "".join(rng.choices(aa, k=args.length))
                fh.writelines(seq[j:j + 60] + "\n" for j in range(0, len(seq), 60))
        size_mb = fasta.stat().st_size / 1e6
        runs: dict[str, list[dict]] = {"rd_interp": [], "esm": []}
        for _ in range(max(1, args.rounds)):
            for which in runs:
                runs[which].append(run_probe(which, fasta))
        ours, peer = (_median_run(runs[w]) for w in runs)
        assert all(r["n"] == args.n and r["residues"] == ours["residues"] for rs in runs.values() for r in rs)
        print(f"FASTA {args.n:,} x {args.length} aa ({size_mb:.0f} MB); RSS growth = peak minus after imports")
        for name, r in (("rd_interp read_fasta (streaming, validated)", ours),
                        ("fair-esm FastaBatchedDataset.from_file", peer)):
            print(f"  {name:45s} {r['seconds']:6.2f} s  {r['n'] / r['seconds']:9,.0f} rec/s  "
                  f"RSS growth {r['peak_rss_growth_mb']:6.0f} MB (peak {r['peak_rss_mb']:.0f}); "
                  f"runs {', '.join(f'{x:.2f}' for x in r['seconds_all'])} s")
        results["fasta"] = {"size_mb": round(size_mb, 1), "rd_interp": ours, "fair_esm": peer}

    from goatools.obo_parser import GODag

    from rd_interp.io import datasets, go
    from rd_interp.io.annotations import read_annotations

    with tempfile.TemporaryDirectory() as cache:
        import os

        os.environ["RD_INTERP_CACHE"] = cache
        t = time.perf_counter()
        onto = go.Ontology.load()  # cold: decompress + verify + scan + goatools
        cold = time.perf_counter() - t
        go._LOADED.clear()
        t = time.perf_counter()
        onto = go.Ontology.load()  # warm cache file, fresh parse
        warm = time.perf_counter() - t
        t = time.perf_counter()
        GODag(str(onto.path), optional_attrs={"relationship"}, prt=None)
        peer_go = time.perf_counter() - t
    print(f"GO {onto.release}: Ontology.load cold {cold:.2f} s, warm {warm:.2f} s; goatools GODag alone {peer_go:.2f} s")
    results["go"] = {"ontology_load_cold_s": cold, "ontology_load_warm_s": warm, "goatools_godag_s": peer_go,
                     "terms": len(onto)}

    t = time.perf_counter()
    ann = read_annotations(datasets.shipped_annotations(), ontology=onto)
    dt = time.perf_counter() - t
    print(f"annotations: {ann.report.n_ids:,} rows read+resolved in {dt:.2f} s "
          f"({ann.report.n_ids / dt:,.0f} rows/s)")
    results["annotations"] = {"rows": ann.report.n_ids, "seconds": dt}
    f = results["fasta"]
    results["headline"] = {"ours_s": round(f["rd_interp"]["seconds"], 2), "peer_s": round(f["fair_esm"]["seconds"], 2),
                           "rounds": len(f["rd_interp"]["seconds_all"]),
                           "ratio": round(f["fair_esm"]["seconds"] / f["rd_interp"]["seconds"], 2), "equal": True,
                           "ours_rss_growth_mb": round(f["rd_interp"]["peak_rss_growth_mb"]),
                           "peer_rss_growth_mb": round(f["fair_esm"]["peak_rss_growth_mb"])}
    results["load"] = meter.stop()
    results["machine"] = benchlib.machine(1)
    benchlib.emit(results)


if __name__ == "__main__":
    main()
