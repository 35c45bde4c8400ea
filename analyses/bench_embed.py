"""Benchmark: our ESM-2 embedding forward vs Hugging Face `transformers` EsmModel (SDPA) and a plain fair-esm loop.

Same proteins, same weights, same threads, in the same run, timed in alternation:
- ours: `rd_interp.plm.embed.embed_sequences` (length-sorted token-budget batches, fused forward of
  plm/fast.py), per-protein float32 rows out;
- transformers: `EsmModel(attn_implementation="sdpa", add_pooling_layer=False)` in its own environment
  (.bench/transformers, created on first use), weights converted from the fair-esm checkpoint by the
  mapping below, fed the very batches ours builds (same token budget), `last_hidden_state` rows out;
- fair-esm: the README loop (BatchConverter, batches of 8 in file order, `repr_layers=[final]`).
Outputs of all three are compared (max abs / max relative difference, minimum per-residue cosine).

Models: the shipped `mini-L` and a random-initialised ESM-2 35M shape (12 layers x 480, 20 heads, saved in
fair-esm format and loaded through the same loader as real weights). The machine's fp32 GEMM ceiling is
measured in the same run (torch.mm at the model's GEMM shapes and a square one); the roofline time is the
model's useful FLOPs (linear layers and attention products on real tokens only; padding not counted)
at that ceiling, and we report roofline time / our time. One profiled pass of our forward then splits its
time into the linear layers' GEMMs, attention and the rest, each part's speed against the ceiling: what keeps
the whole from the roofline.

    python analyses/bench_embed.py                      # both models, ~8 min on 2 shared cores
    python analyses/bench_embed.py --bf16               # also the optional bf16 CPU path, with its deviation
    python analyses/bench_embed.py --residues-35m 100000 --rounds 5   # bigger run

Prints the figures, then ONE final JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

PEER_CODE = r'''
import json, time
from importlib import metadata
import numpy as np
import torch
from transformers import EsmConfig, EsmModel

S = {}

def handle(req):
    op = req["op"]
    if op == "load":
        torch.set_num_threads(req["threads"])
        cfg = EsmConfig(**req["config"], attn_implementation="sdpa")
        model = EsmModel(cfg, add_pooling_layer=False).eval()
        sd = torch.load(req["weights"], map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("contact_head.")]
        if missing or unexpected:
            raise ValueError(f"weight mapping: missing {missing}, unexpected {unexpected}")
        with np.load(req["batches"], allow_pickle=False) as z:
            n = int(z["n_batches"])
            S["batches"] = [(torch.from_numpy(z[f"tokens_{i}"]), z[f"lengths_{i}"]) for i in range(n)]
        S["model"], S["pad"] = model, req["config"]["pad_token_id"]
        S["starts"] = np.concatenate([[0], np.cumsum([int(n.sum()) for _, n in S["batches"]])]).tolist()
        S["out"] = torch.empty(int(req["n_residues"]), cfg.hidden_size)
        return {"transformers": metadata.version("transformers"), "attn": model.config._attn_implementation,
                "threads": torch.get_num_threads()}
    if op == "run_batch":
        model, out, pad = S["model"], S["out"], S["pad"]
        toks, lens = S["batches"][req["i"]]
        pos = S["starts"][req["i"]]
        t0 = time.perf_counter()
        with torch.inference_mode():
            h = model(input_ids=toks, attention_mask=toks.ne(pad)).last_hidden_state
            for b, L in enumerate(lens.tolist()):
                out[pos:pos + L] = h[b, 1:L + 1]
                pos += L
        return {"seconds": time.perf_counter() - t0}
    if op == "dump":
        np.save(req["path"], S["out"].numpy())
        return {}
    raise ValueError(op)
'''

HEADS_35M = 20


# ------------------------------------------------------------------------------------------------
# fair-esm -> transformers weights (our own mapping; names checked strictly by the peer)
# ------------------------------------------------------------------------------------------------
def hf_config(model, alphabet) -> dict:
    C = int(model.embed_dim)
    return {"vocab_size": len(alphabet.all_toks), "hidden_size": C, "num_hidden_layers": int(model.num_layers),
            "num_attention_heads": int(model.attention_heads), "intermediate_size": int(model.layers[0].fc1.out_features),
            "position_embedding_type": "rotary", "token_dropout": bool(model.token_dropout),
            "mask_token_id": int(alphabet.mask_idx), "pad_token_id": int(alphabet.padding_idx),
            "emb_layer_norm_before": False, "max_position_embeddings": 1026, "layer_norm_eps": 1e-5,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def hf_state_dict(model) -> dict[str, torch.Tensor]:
    sd = {"embeddings.word_embeddings.weight": model.embed_tokens.weight,
          "rotary_embeddings.inv_freq": model.layers[0].self_attn.rot_emb.inv_freq,
          "encoder.emb_layer_norm_after.weight": model.emb_layer_norm_after.weight,
          "encoder.emb_layer_norm_after.bias": model.emb_layer_norm_after.bias}
    pairs = {"self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
             "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
             "self_attn_layer_norm": "attention.LayerNorm", "fc1": "intermediate.dense",
             "fc2": "output.dense", "final_layer_norm": "LayerNorm"}
    for i, layer in enumerate(model.layers):
        for ours, theirs in pairs.items():
            mod = layer.get_submodule(ours)
            sd[f"encoder.layer.{i}.{theirs}.weight"] = mod.weight
            sd[f"encoder.layer.{i}.{theirs}.bias"] = mod.bias
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}


# ------------------------------------------------------------------------------------------------
# workload
# ------------------------------------------------------------------------------------------------
def pick_proteins(residues: int, max_residues: int, alphabet, max_tokens: int) -> list[tuple[str, str]]:
    """Proteins of whole batches sampled evenly from a full run over the shipped 20,000 proteins.

    A real run batches the whole file by length, so each batch holds proteins of nearly equal length
    (little padding). Taking the first N proteins instead would put a wide length range into each batch
    of a small sample; sampling every k-th batch of the full run keeps the benchmark's batches like a
    real run's while covering short and long proteins. Returned in file order.
    """
    from rd_interp.io.datasets import shipped_proteins
    from rd_interp.io.fasta import read_fasta

    recs = [(r.id, r.sequence[:max_residues]) for r in read_fasta(shipped_proteins())]
    batches, order = token_batches([s for _, s in recs], alphabet, max_tokens, with_groups=True)
    total = sum(len(s) for _, s in recs)
    n_pick = max(1, min(len(batches), round(residues / (total / len(batches)))))
    chosen = np.unique(((np.arange(n_pick) + 0.5) * len(batches) / n_pick).astype(int))  # centred, evenly spaced
    keep = np.sort(np.concatenate([batches[i] for i in chosen]))
    return [recs[i] for i in keep]


def token_batches(seqs: list[str], alphabet, max_tokens: int, with_groups: bool = False):
    """The batches embed_sequences builds: stable length sort, packed while n * (longest + 2) <= max_tokens.

    Returns ([(tokens [B, T], lengths [B])], length order), or with_groups: ([protein indices per batch], order).
    """
    from rd_interp.plm.family import _byte_table

    table = _byte_table(alphabet)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    groups, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * (len(seqs[i]) + 2) > max_tokens:
            groups.append(cur)
            cur = []
        cur.append(int(i))
    if cur:
        groups.append(cur)
    if with_groups:
        return [np.asarray(g) for g in groups], order
    batches = []
    for g in groups:
        T = max(len(seqs[i]) for i in g) + 2
        arr = np.full((len(g), T), alphabet.padding_idx, dtype=np.int64)
        for b, i in enumerate(g):
            n = len(seqs[i])
            arr[b, 0], arr[b, n + 1] = alphabet.cls_idx, alphabet.eos_idx
            arr[b, 1:n + 1] = table[np.frombuffer(seqs[i].encode("ascii"), dtype=np.uint8)]
        batches.append((arr, np.array([len(seqs[i]) for i in g], dtype=np.int64)))
    return batches, order


def flops_by_part(lengths: list[int], n_layers: int, C: int, ffn: int) -> dict[str, float]:
    """Matmul FLOPs on real tokens (BOS/EOS included) of the linear layers (q,k,v,o 8C^2 and FFN 4C*ffn per
    token) and of attention's two products (4CT per token of a length-T protein)."""
    T = np.asarray(lengths, dtype=np.float64) + 2
    return {"linear": float(n_layers * (8.0 * C * C + 4.0 * C * ffn) * T.sum()),
            "attention": float(n_layers * 4.0 * C * (T * T).sum())}


def useful_flops(lengths: list[int], n_layers: int, C: int, ffn: int) -> float:
    """All matmul FLOPs on real tokens (flops_by_part summed): the roofline's numerator."""
    return sum(flops_by_part(lengths, n_layers, C, ffn).values())


#: Profiler names of the linear layers' GEMMs (attention is any scaled_dot_product kernel); self time is summed.
_LINEAR_OPS = frozenset({"aten::addmm", "aten::addmm_", "aten::mm"})


def time_breakdown(run, lengths: list[int], n_layers: int, C: int, ffn: int, gflops_ceiling: float) -> dict:
    """Where one pass of `run` (our forward over the proteins) spends its time, by torch's profiler: the
    linear layers' GEMMs, attention (the fused SDPA kernel) and the rest (norms, GELU, rotary, copies, Python),
    with the speed of each part against the machine's fp32 GEMM ceiling. This says which part keeps the
    whole forward from the roofline. The profiled pass is a little slower than an unprofiled one."""
    with benchlib.cpu_profile() as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    secs = {"linear": benchlib.op_seconds(prof, _LINEAR_OPS.__contains__),
            "attention": benchlib.op_seconds(prof, lambda name: "scaled_dot_product" in name)}
    flops = flops_by_part(lengths, n_layers, C, ffn)
    out: dict = {"wall_s": round(wall, 3), "other_s": round(max(0.0, wall - sum(secs.values())), 3)}
    for part, s in secs.items():
        rate = flops[part] / s / 1e9 if s > 0 else None
        out[part] = {"seconds": round(s, 3), "share_of_time": round(s / wall, 3), "gflop": round(flops[part] / 1e9, 2),
                     "gflops": None if rate is None else round(rate, 1),
                     "fraction_of_ceiling": None if rate is None else round(rate / gflops_ceiling, 3)}
    return out


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return {"max_abs": float(d.max()), "max_rel": float(d.max() / max(np.abs(b).max(), 1e-30)),
            "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def build_35m_shape(path: Path, seed: int = 0) -> None:
    """A random-initialised ESM-2 35M shape (12 x 480, 20 heads) in fair-esm checkpoint format, fp32."""
    from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint

    model = build_model(MemberSpec("esm2-35M-shape", 12, 480, HEADS_35M, 0), alphabet(), seed=seed)
    save_esm2_checkpoint(model, path, half=False)


# ------------------------------------------------------------------------------------------------
def bench_model(label: str, ckpt: str, residues: int, args, worker_py: str, tmp: Path, ceiling: dict) -> dict:
    from rd_interp.plm.embed import embed_sequences
    from rd_interp.plm.esm import MAX_RESIDUES, load_model

    model, alphabet, info = load_model(ckpt, device="cpu", with_sha256=False)
    records = pick_proteins(residues, MAX_RESIDUES, alphabet, args.max_tokens)
    seqs = [s for _, s in records]
    n_res = sum(len(s) for s in seqs)
    batches, order = token_batches(seqs, alphabet, args.max_tokens)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)  # rows of each protein in length-sorted output
    offsets[1:] = np.cumsum([len(seqs[i]) for i in order])
    rank = np.empty(len(seqs), dtype=np.int64)
    rank[order] = np.arange(len(seqs))
    C, L = info.embed_dim, info.n_layers
    ffn = int(model.layers[0].fc1.out_features)
    flops = useful_flops([len(s) for s in seqs], L, C, ffn)
    padded = sum(int(a.size) for a, _ in batches)
    print(f"\n== {label}: {info.n_layers} layers x {C}, {info.n_params:,} params; {len(seqs)} proteins, {n_res:,} residues, "
          f"{len(batches)} batches of <= {args.max_tokens} tokens ({padded - n_res - 2 * len(seqs):,} padding tokens)")

    np.savez(tmp / "batches.npz", n_batches=np.array(len(batches)),
             **{f"tokens_{i}": a for i, (a, _) in enumerate(batches)},
             **{f"lengths_{i}": n for i, (_, n) in enumerate(batches)})
    torch.save(hf_state_dict(model), tmp / "hf.pt")

    groups, _ = token_batches(seqs, alphabet, args.max_tokens, with_groups=True)
    out_ours = np.empty((n_res, C), dtype=np.float32)
    out_bf16 = np.empty((n_res, C), dtype=np.float32)

    def ours_unit(g: np.ndarray, out: np.ndarray, bf16: bool = False):
        sub = [seqs[i] for i in g]
        kw = {"autocast": torch.bfloat16} if bf16 else {}  # CPU autocast: bf16 matmuls, fp32 norms/softmax

        def run() -> None:
            for j, x in embed_sequences(model, alphabet, sub, device="cpu", max_tokens=args.max_tokens,
                                        max_residues=MAX_RESIDUES, **kw):
                r = rank[g[j]]
                out[offsets[r]:offsets[r + 1]] = x
        return run

    out_esm = np.empty((n_res, C), dtype=np.float32)
    conv = alphabet.get_batch_converter(truncation_seq_length=MAX_RESIDUES)

    def esm_unit(s: int):
        def run() -> None:
            chunk = records[s:s + args.peer_batch]
            with torch.no_grad():
                _, _, toks = conv(chunk)
                rep = model(toks, repr_layers=[L])["representations"][L]
            for j, (_, seq) in enumerate(chunk):
                r = rank[s + j]
                out_esm[offsets[r]:offsets[r + 1]] = rep[j, 1:len(seq) + 1].numpy()
        return run

    gemm_rates: list[float] = []
    ga, gb = torch.randn(args.max_tokens, C), torch.randn(C, ffn)

    def gemm_unit() -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            torch.mm(ga, gb)
            best = min(best, time.perf_counter() - t0)
        gemm_rates.append(2.0 * ga.shape[0] * C * ffn / best / 1e9)
        return best

    with benchlib.PeerWorker(worker_py, PEER_CODE, args.threads) as peer:
        meta = peer.call(op="load", threads=args.threads, config=hf_config(model, alphabet), weights=str(tmp / "hf.pt"),
                         batches=str(tmp / "batches.npz"), n_residues=n_res)
        units = {"ours": [ours_unit(g, out_ours) for g in groups],
                 "transformers": [(lambda i=i: peer.call(op="run_batch", i=i)["seconds"]) for i in range(len(groups))]}
        if not args.no_fair_esm:
            units["fair-esm"] = [esm_unit(s) for s in range(0, len(records), args.peer_batch)]
        if args.bf16:
            units["ours-bf16"] = [ours_unit(g, out_bf16, bf16=True) for g in groups]
        units["gemm"] = [gemm_unit for _ in groups]
        ours_unit(groups[0], out_ours)()  # warm-up (first-call allocations), not timed
        peer.call(op="run_batch", i=0)
        times = benchlib.interleave(units, args.rounds)
        peer.call(op="dump", path=str(tmp / "peer_out.npy"))
    out_hf = np.load(tmp / "peer_out.npy", allow_pickle=False)
    tools = [k for k in units if k != "gemm"]
    best = {k: times[k]["best_s"] for k in tools}
    rps = {k: n_res / v for k, v in best.items()}
    gflops = max([ceiling["gflops"], *gemm_rates])
    roof_s = flops / (gflops * 1e9)
    res = {"model": label, "layers": L, "dim": C, "heads": int(model.attention_heads), "n_params": info.n_params,
           "n_proteins": len(seqs), "n_residues": n_res, "n_batches": len(batches), "max_tokens": args.max_tokens,
           "padding_tokens": padded - n_res - 2 * len(seqs), "rounds": args.rounds,
           "seconds": {k: {"best": round(times[k]["best_s"], 3), "rounds": times[k]["round_s"]} for k in tools},
           "residues_per_s": {k: round(v, 1) for k, v in rps.items()},
           "residues_per_s_median_round": {k: round(n_res / times[k]["median_s"], 1) for k in tools},
           "speedup_vs_transformers": round(rps["ours"] / rps["transformers"], 3),
           "speedup_vs_transformers_median_round": round(times["transformers"]["median_s"] / times["ours"]["median_s"], 3),
           "ours_vs_transformers": compare(out_ours, out_hf), "transformers_attn": meta["attn"],
           "gemm_ceiling_gflops": round(gflops, 1), "gemm_interleaved_gflops": [round(x, 1) for x in gemm_rates],
           "useful_gflop": round(flops / 1e9, 2), "roofline_seconds": round(roof_s, 3),
           "roofline_fraction": round(roof_s / best["ours"], 3),
           "transformers_roofline_fraction": round(roof_s / best["transformers"], 3)}
    if "fair-esm" in rps:
        res["speedup_vs_fair_esm"] = round(rps["ours"] / rps["fair-esm"], 3)
        res["ours_vs_fair_esm"] = compare(out_ours, out_esm)
    res["time_breakdown"] = bd = time_breakdown(lambda: [u() for u in units["ours"]], [len(s) for s in seqs], L, C,
                                                ffn, gflops)
    tol = args.tolerance
    res["outputs_equal"] = bool(res["ours_vs_transformers"]["max_rel"] < tol
                                and res.get("ours_vs_fair_esm", {"max_rel": 0})["max_rel"] < tol)
    for k in tools:
        print(f"  {k:13s} {rps[k]:10.0f} residues/s  (sum of per-batch best of {args.rounds} rounds: {best[k]:.2f} s; "
              f"round totals {', '.join(f'{x:.2f}' for x in times[k]['round_s'])})")
    print(f"  speed-up vs transformers {res['speedup_vs_transformers']:.2f}x (median round "
          f"{res['speedup_vs_transformers_median_round']:.2f}x)"
          + (f", vs fair-esm loop {res['speedup_vs_fair_esm']:.2f}x" if "fair-esm" in rps else ""))
    print(f"  roofline ({flops / 1e9:.1f} useful GFLOP at {gflops:.1f} GFLOP/s = {roof_s:.2f} s): ours "
          f"{res['roofline_fraction']:.1%}, transformers {res['transformers_roofline_fraction']:.1%}")
    print(f"  where our time goes (one profiled pass, {bd['wall_s']:.2f} s): "
          + "; ".join(f"{p} {bd[p]['seconds']:.2f} s ({bd[p]['share_of_time']:.0%}) at {bd[p]['gflops']} GFLOP/s "
                      f"= {bd[p]['fraction_of_ceiling']:.0%} of the ceiling" for p in ("linear", "attention")
                      if bd[p]["gflops"] is not None)
          + f"; other {bd['other_s']:.2f} s")
    print(f"  ours vs transformers: max abs {res['ours_vs_transformers']['max_abs']:.2e}, max rel "
          f"{res['ours_vs_transformers']['max_rel']:.2e}, min cosine {res['ours_vs_transformers']['min_cosine']:.7f}"
          + (f"; vs fair-esm max rel {res['ours_vs_fair_esm']['max_rel']:.2e}" if "fair-esm" in rps else ""))
    if args.bf16:
        bf = {"residues_per_s": round(rps["ours-bf16"], 1),
              "speedup_vs_transformers_fp32": round(best["transformers"] / best["ours-bf16"], 3),
              "speedup_vs_ours_fp32": round(best["ours"] / best["ours-bf16"], 3),
              "deviation_from_fp32": compare(out_bf16, out_ours)}
        res["bf16"] = bf
        print(f"  bf16 path: {bf['residues_per_s']:.0f} residues/s, {bf['speedup_vs_transformers_fp32']:.2f}x transformers "
              f"fp32; vs fp32 max abs {bf['deviation_from_fp32']['max_abs']:.3g}, min cosine "
              f"{bf['deviation_from_fp32']['min_cosine']:.5f}, mean cosine {bf['deviation_from_fp32']['mean_cosine']:.6f}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mini-L,35M-shape", help="comma list of: mini-L, 35M-shape, or checkpoint paths")
    ap.add_argument("--residues-mini", type=int, default=50_000, help="residue budget for small models")
    ap.add_argument("--residues-35m", type=int, default=12_000, help="residue budget for the 35M shape")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    ap.add_argument("--max-tokens", type=int, default=8192, help="token budget per batch (ours and transformers)")
    ap.add_argument("--peer-batch", type=int, default=8, help="fair-esm loop batch size")
    ap.add_argument("--no-fair-esm", action="store_true", help="skip the plain fair-esm loop")
    ap.add_argument("--bf16", action="store_true", help="also time the optional bf16 CPU path and report its deviation")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max relative difference counted as equal")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    meter = benchlib.LoadMeter()
    peer_py = benchlib.peer_python("transformers")
    peer_ver = benchlib.peer_versions(peer_py, ["transformers", "torch"])
    shapes = [(args.max_tokens, 480, 1920), (args.max_tokens, 1920, 480), (args.max_tokens, 480, 480),
              (args.max_tokens, 96, 384), (2048, 2048, 2048)]
    ceiling = benchlib.gemm_ceiling(shapes, args.threads)
    print(f"fp32 GEMM ceiling: {ceiling['gflops']} GFLOP/s ({ceiling['best_shape']}); by shape {ceiling['by_shape']}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp_s:
        tmp = Path(tmp_s)
        for m in [x.strip() for x in args.models.split(",") if x.strip()]:
            if m == "35M-shape":
                ckpt, budget = tmp / "esm2_35M_shape_random.pt", args.residues_35m
                build_35m_shape(ckpt)
            else:
                ckpt, budget = m, args.residues_mini
            results.append(bench_model(m, str(ckpt), budget, args, peer_py, tmp, ceiling))
    ceiling_end = benchlib.gemm_ceiling(shapes, args.threads)
    load = meter.stop()
    print(f"\nfp32 GEMM ceiling again at the end: {ceiling_end['gflops']} GFLOP/s; other processes kept "
          f"{load['other_processes_cores_busy']} cores busy on average (load avg {load['loadavg_1m_start']} -> "
          f"{load['loadavg_1m_end']})")
    ok = all(r["outputs_equal"] for r in results)
    big = next((r for r in results if r["model"] == "35M-shape"), results[-1])
    benchlib.emit({
        "bench": "embed", "threads": args.threads, "peer": "transformers EsmModel (sdpa)",
        "peer_versions": peer_ver, "models": results, "gemm_ceiling_start": ceiling, "gemm_ceiling_end": ceiling_end,
        "headline": {"model": big["model"], "ours_residues_per_s": big["residues_per_s"]["ours"],
                     "peer_residues_per_s": big["residues_per_s"]["transformers"],
                     "ratio": big["speedup_vs_transformers"], "roofline_fraction": big["roofline_fraction"],
                     "outputs_equal": ok},
        "outputs_equal": ok, "load": load, "machine": benchlib.machine(args.threads),
    })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
