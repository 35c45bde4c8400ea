"""Benchmark: our extractor (embed_fasta) vs a plain fair-esm loop, on the same proteins and model.

Peer = the loop in fair-esm's README: BatchConverter, fixed batches of 8 in file order,
``model(tokens, repr_layers=[final])["representations"]`` under ``torch.no_grad``, residues 1..L
sliced out per protein; same truncation (1022 residues). Ours = ``embed_fasta`` end to end
(FASTA reading, model loading, length-sorted token-budget batches, store writes in float32 so the
outputs can be compared exactly). Both run on the same device with the same torch thread count.

    python analyses/bench_embed.py [--n 2000] [--model mini-L] [--threads 1] [--device cpu]

Prints the figures, then ONE final JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fasta", default=None, help="default: the shipped evaluation proteins")
    ap.add_argument("--n", type=int, default=2000, help="first N proteins of the file")
    ap.add_argument("--model", default=None, help="default: the largest shipped family member")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--peer-batch", type=int, default=8)
    args = ap.parse_args(argv)

    from rd_interp.io.datasets import shipped_proteins
    from rd_interp.io.fasta import read_fasta, write_fasta
    from rd_interp.io.provenance import versions
    from rd_interp.plm.embed import EmbedConfig, embed_fasta
    from rd_interp.plm.esm import MAX_RESIDUES, load_model
    from rd_interp.plm.family import SHIPPED_FAMILY

    torch.set_num_threads(args.threads)
    model_name = args.model or SHIPPED_FAMILY[-1]
    src = Path(args.fasta) if args.fasta else shipped_proteins()
    records = []
    for rec in read_fasta(src):
        records.append((rec.id, rec.sequence))
        if len(records) == args.n:
            break
    n_res = sum(min(len(s), MAX_RESIDUES) for _, s in records)
    print(f"{len(records)} proteins, {n_res} residues (after truncation to {MAX_RESIDUES}) from {src}")

    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "bench.fasta"
        write_fasta(fasta, records)

        # --- peer: plain fair-esm loop -----------------------------------------------------------
        model, alphabet, info = load_model(model_name, device=args.device)
        conv = alphabet.get_batch_converter(truncation_seq_length=MAX_RESIDUES)
        final = info.n_layers
        peer: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(records), args.peer_batch):
                batch = records[i:i + args.peer_batch]
                _, strs, toks = conv(batch)
                rep = model(toks.to(args.device), repr_layers=[final])["representations"][final]
                for j, (pid, seq) in enumerate(batch):
                    peer[pid] = rep[j, 1:min(len(seq), MAX_RESIDUES) + 1].cpu().numpy()
        t_peer = time.perf_counter() - t0
        del model

        # --- ours -------------------------------------------------------------------------------
        cfg = EmbedConfig(model=model_name, dtype="float32", device=args.device, max_tokens=args.max_tokens,
                          max_residues=MAX_RESIDUES)
        t0 = time.perf_counter()
        store = embed_fasta(fasta, Path(tmp) / "store", cfg, progress=False)
        t_ours = time.perf_counter() - t0

        max_abs = 0.0
        max_rel = 0.0
        for pid, _ in records:
            a, b = store.get(pid), peer[pid]
            if a.shape != b.shape:
                raise SystemExit(f"shape mismatch for {pid}: ours {a.shape}, fair-esm {b.shape}")
            d = float(np.abs(a - b).max())
            max_abs = max(max_abs, d)
            max_rel = max(max_rel, d / max(float(np.abs(b).max()), 1e-12))
        equal = bool(max_rel < 1e-4)

    rps_ours, rps_peer = n_res / t_ours, n_res / t_peer
    print(f"model {info.name} ({info.n_layers} layers, dim {info.embed_dim}, {info.n_params} params), "
          f"device {args.device}, torch threads {args.threads}")
    print(f"fair-esm loop (batch {args.peer_batch}, file order): {t_peer:.1f} s, {rps_peer:.0f} residues/s")
    print(f"rd_interp embed_fasta (length-sorted token batches, end to end): {t_ours:.1f} s, {rps_ours:.0f} residues/s")
    print(f"speed-up {rps_ours / rps_peer:.2f}x; outputs equal within fp tolerance: {equal} "
          f"(max abs diff {max_abs:.2e}, max rel {max_rel:.2e})")
    print(json.dumps({
        "bench": "embed", "model": info.name, "n_proteins": len(records), "n_residues": n_res,
        "device": args.device, "threads": args.threads, "peer": "fair-esm batch-of-8 loop",
        "peer_residues_per_s": round(rps_peer, 1), "ours_residues_per_s": round(rps_ours, 1),
        "speedup": round(rps_ours / rps_peer, 3), "peer_seconds": round(t_peer, 2), "ours_seconds": round(t_ours, 2),
        "max_abs_diff": max_abs, "max_rel_diff": max_rel, "outputs_equal": equal,
        "versions": {k: versions()[k] for k in ("torch", "fair-esm", "rd_interp")},
    }))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
