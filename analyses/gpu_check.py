"""The prepared device check: rd_interp's CUDA paths against its CPU paths, and GPU figures, in ONE run.

A GPU is lent to some sessions only, for about 15 minutes in all, so what needs one is prepared here and
rehearsed on the CPU by the tests (`--device cpu --quick`). Each section is timed and recorded as "ok",
"skipped" (with why) or "failed" (with its one-line error); a failing section does not stop the others.

- env: torch, CUDA and the device.
- embed_equal: the shipped mini-L on the device vs the CPU (fp32: max relative difference; bf16 autocast:
  max abs difference and minimum per-residue cosine vs fp32).
- embed_speed: residues/s of random-initialised ESM-2 shapes (35M, 150M; 650M with --big) through
  `embed_sequences`, fp32 and bf16, and of transformers' EsmModel (sdpa, weights converted from the same
  model) on the very batches ours builds, where transformers imports (outputs compared on the first batch;
  fp32 must agree to --tolerance).
- sae_equal: one TopK and one BatchTopK training step with AuxK on the device vs the CPU, every gradient
  relative to its norm: in float64 (both generic paths, to 1e-9) and in float32 (the CPU runs rd_interp's
  numba kernels, the device torch's sparse products; to 1e-4 where both select the same latents).
- sae_speed: TopK training throughput and median step on the device against the step floor measured
  in the same run (encoder matmul + torch.topk), fp32 and with the bf16 encoder matmul.
- distill: ReverseDistiller fitted on the device vs the CPU (same significant PCs, equal transforms) and
  both fit times.

    python analyses/gpu_check.py --out runs/gpu_check                  # on a CUDA machine
    python analyses/gpu_check.py --device cpu --quick --out DIR       # rehearsal on a CPU (the tests run it)

On the lent machine (Python 3.12 with torch, numba, scipy and transformers, no network): fair-esm travels as a
wheel, `make gpu-wheels` puts it in .whl/ (README, "GPU check"). Writes DIR/gpu_check.json and prints ONE JSON
line; exit status 1 when any section failed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from bench_embed import HEADS_35M, compare, hf_config, hf_state_dict, pick_proteins, token_batches

#: ESM-2 shapes (layers, dim) rehearsed with random weights; 20 heads each, as the released models
SHAPES = {"35M": (12, 480), "150M": (30, 640), "650M": (33, 1280)}


class Skip(Exception):
    """A section that cannot run here (the reason is recorded, not counted as a failure)."""


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(dev: torch.device, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, fn's result), the device synchronised before and after."""
    _sync(dev)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync(dev)
    return time.perf_counter() - t, out


def section_env(dev: torch.device, args) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(dev)}
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        out.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
    else:
        out["name"] = benchlib.cpu_model()
    return out


def _embed_all(model, alphabet, seqs: list[str], dev: torch.device, autocast, max_tokens: int) -> list[np.ndarray]:
    from rd_interp.plm.embed import embed_sequences

    out: list[np.ndarray] = [np.empty(0)] * len(seqs)
    for i, e in embed_sequences(model, alphabet, seqs, device=dev, autocast=autocast, max_tokens=max_tokens):
        out[i] = e
    return out


def section_embed_equal(dev: torch.device, args) -> dict:
    from rd_interp.plm.esm import load_model

    model, alphabet, _ = load_model("mini-L")
    seqs = [s for _, s in pick_proteins(2_000 if args.quick else 20_000, 1022, alphabet, 8192)]
    cpu = np.concatenate(_embed_all(model, alphabet, seqs, torch.device("cpu"), None, 8192))
    model.to(dev)
    on_dev = np.concatenate(_embed_all(model, alphabet, seqs, dev, None, 8192))
    out = {"proteins": len(seqs), "residues": int(cpu.shape[0]), "fp32_vs_cpu": compare(on_dev, cpu)}
    if dev.type == "cuda":
        bf16 = np.concatenate(_embed_all(model, alphabet, seqs, dev, torch.bfloat16, 8192))
        out["bf16_vs_fp32"] = compare(bf16, on_dev)
    out["fp32_equal"] = out["fp32_vs_cpu"]["max_rel"] <= args.tolerance
    if not out["fp32_equal"]:
        raise AssertionError(f"mini-L on {dev} differs from the CPU: max rel {out['fp32_vs_cpu']['max_rel']:.2e}")
    return out


def _transformers_model(model, alphabet, dev: torch.device):
    try:
        from transformers import EsmConfig, EsmModel
    except ImportError as exc:
        raise Skip(f"transformers does not import: {exc}") from None
    hf = EsmModel(EsmConfig(**hf_config(model, alphabet), attn_implementation="sdpa"), add_pooling_layer=False)
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    if [k for k in missing if not k.startswith("contact_head.")] or unexpected:
        raise AssertionError(f"weight mapping: missing {missing}, unexpected {unexpected}")
    return hf.eval().to(dev)


def _peer_pass(hf, batches, dev: torch.device, autocast) -> list[np.ndarray]:
    """transformers' final hidden states of each protein (BOS, EOS and padding dropped), in batch order."""
    out = []
    cast = torch.autocast(dev.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        for tokens, lengths in batches:
            t = torch.from_numpy(tokens).to(dev)
            h = hf(input_ids=t, attention_mask=t.ne(hf.config.pad_token_id)).last_hidden_state.float().cpu().numpy()
            out += [h[b, 1:L + 1] for b, L in enumerate(lengths.tolist())]
    return out


def section_embed_speed(dev: torch.device, args) -> dict:
    from rd_interp.plm.family import MemberSpec, alphabet, build_model

    abc = alphabet()
    names = ["35M"] if args.quick else ["35M", "150M"] + (["650M"] if args.big else [])
    max_tokens = 2048 if args.quick else args.max_tokens
    seqs = [s for _, s in pick_proteins(args.residues, 1022, abc, max_tokens)]
    batches, order = token_batches(seqs, abc, max_tokens)
    n_res = sum(len(s) for s in seqs)
    out: dict[str, Any] = {"proteins": len(seqs), "residues": n_res, "max_tokens": max_tokens, "shapes": {}}
    modes = [("fp32", None)] + ([("bf16", torch.bfloat16)] if dev.type == "cuda" else [])
    for name in names:
        layers, dim = SHAPES[name]
        model = build_model(MemberSpec(f"esm2-{name}-shape", layers, dim, HEADS_35M, 0), abc, seed=0).eval().to(dev)
        res: dict[str, Any] = {"layers": layers, "dim": dim}
        ours: dict[str, list[np.ndarray]] = {}
        for mode, ac in modes:
            _embed_all(model, abc, seqs[:8], dev, ac, max_tokens)  # warm-up: kernels, allocator
            dt, ours[mode] = _timed(dev, _embed_all, model, abc, seqs, dev, ac, max_tokens)
            res[f"ours_{mode}_residues_per_s"] = round(n_res / dt)
        try:
            hf = _transformers_model(model, abc, dev)
            for mode, ac in modes:
                first = _peer_pass(hf, batches[:1], dev, ac)  # warm-up, and the outputs compared
                mine = [ours[mode][i] for i in order[:len(first)]]
                res[f"{mode}_vs_transformers"] = compare(np.concatenate(mine), np.concatenate(first))
                dt, hs = _timed(dev, _peer_pass, hf, batches, dev, ac)
                res[f"transformers_{mode}_residues_per_s"] = round(sum(map(len, hs)) / dt)
                res[f"ratio_{mode}"] = round(res[f"ours_{mode}_residues_per_s"] / res[f"transformers_{mode}_residues_per_s"], 2)
            if not res["fp32_vs_transformers"]["max_rel"] <= args.tolerance:
                raise AssertionError(f"{name} shape: ours and transformers differ (max rel "
                                     f"{res['fp32_vs_transformers']['max_rel']:.2e})")
        except Skip as why:
            res["transformers"] = f"skipped: {why}"
        out["shapes"][name] = res
        model = hf = None  # freed before the next shape is built
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _sae_grads(arch: str, dev: torch.device, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every parameter's gradient after one training step with AuxK (float64, on the CPU), and which
    (row, latent) pairs were selected."""
    from rd_interp.sae.model import SAEConfig, SparseAutoencoder

    g = torch.Generator().manual_seed(1)
    x = torch.randn(1024, 64, generator=g)
    dead = torch.zeros(512, dtype=torch.bool)
    dead[torch.randperm(512, generator=g)[:100]] = True
    sae = SparseAutoencoder(SAEConfig(arch, d_in=64, n_latents=512, k=8), seed=3)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(512, generator=g))
    sae.to(device=dev, dtype=dtype)
    out = sae.train_forward(x.to(device=dev, dtype=dtype), dead_mask=dead.to(dev), k_aux=16)
    (out["loss"] + out["aux"]).backward()
    with torch.no_grad():  # the selection, recomputed: TopK per row, BatchTopK over the batch
        xp = sae.preprocess(x.to(device=dev, dtype=dtype))
        pre = F.relu((xp - sae.b_dec) @ sae.W_enc + sae.b_enc)
        selected = torch.zeros_like(pre, dtype=torch.bool)
        if arch == "topk":
            selected.scatter_(1, pre.topk(8, dim=1).indices, True)
        else:
            selected.view(-1)[pre.reshape(-1).topk(8 * x.shape[0]).indices] = True
        selected = (selected & (pre > 0)).cpu()
    return {n: p.grad.detach().double().cpu() for n, p in sae.named_parameters()}, selected


def section_sae_equal(dev: torch.device, args) -> dict:
    """float64: the device's generic path against the CPU's, to 1e-9. float32: the CPU's numba kernels against
    the device's sparse products, to 1e-4 where both selected the same latents (a near-tie that float32
    rounding breaks differently on the two devices is reported, not failed)."""
    out: dict[str, Any] = {}
    for arch in ("topk", "batchtopk"):
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            (ref, sel_ref), (got, sel_got) = _sae_grads(arch, torch.device("cpu"), dtype), _sae_grads(arch, dev, dtype)
            err = {n: float((got[n] - ref[n]).norm() / ref[n].norm().clamp_min(1e-30)) for n in ref}
            same = bool(torch.equal(sel_ref, sel_got))
            out[f"{arch}_{str(dtype).removeprefix('torch.')}"] = {"relative_error": err, "same_selection": same}
            worst = max(err.values())
            if (same or dtype == torch.float64) and not worst <= tol:
                raise AssertionError(f"{arch} {dtype} gradients on {dev} differ from the CPU's: relative error "
                                     f"{worst:.2e} (tolerance {tol:g}; same selection: {same})")
    return out


def _step_floor(dev: torch.device, B: int, d: int, n: int, k: int, bf16: bool, repeats: int = 7) -> float:
    g = torch.Generator().manual_seed(0)
    x, W = torch.randn(B, d, generator=g).to(dev), (torch.randn(d, n, generator=g) / d ** 0.5).to(dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            pre = (x @ W).float()
        return pre.topk(k, dim=1, sorted=False)

    step()
    return benchlib.median([_timed(dev, step)[0] for _ in range(repeats)]) * 1e3


def section_sae_speed(dev: torch.device, args) -> dict:
    from rd_interp.sae.model import SAEConfig
    from rd_interp.sae.train import TrainConfig, train_sae

    sizes = [(64, 256, 8, 256)] if args.quick else [(480, 4096, 32, 4096), (1280, 32768, 64, 4096)]
    steps = 6 if args.quick else args.sae_steps
    out = {}
    rng = np.random.default_rng(0)
    for d, n, k, B in sizes:
        X = rng.standard_normal((B * 4, d), dtype=np.float32) * rng.uniform(0.5, 2.0, d).astype(np.float32)
        res: dict[str, Any] = {"batch": B, "steps": steps}
        for mode, bf16 in (("fp32", False), ("bf16", True)):
            if bf16 and dev.type != "cuda":
                continue
            cfg = TrainConfig(batch_size=B, n_steps=steps, autocast=bf16, lr=2e-4)
            dt, sae = _timed(dev, train_sae, X, SAEConfig("topk", n_latents=n, k=k), cfg, progress=False, seed=0,
                             device=str(dev))
            tr = sae.provenance.train
            floor = _step_floor(dev, B, d, n, k, bf16)
            res[mode] = {"fit_s": round(dt, 3), "vectors_per_s": round(tr["vectors_per_s_this_call"] or 0.0),
                         "step_ms_median": round(tr["step_ms_median_this_call"] or math.nan, 3),
                         "step_floor_ms": round(floor, 3), "last_batch_fvu": tr["last_batch_fvu"]}
            res[mode]["floor_fraction"] = round(floor / res[mode]["step_ms_median"], 3)
        out[f"{d}x{n}_k{k}"] = res
    return out


def section_distill(dev: torch.device, args) -> dict:
    from rd_interp.distill import ReverseDistiller

    n, p, q = (4_000, 32, 48) if args.quick else (args.distill_rows, 320, 480)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p)).astype(np.float32)
    Y = np.concatenate([X @ rng.standard_normal((p, p)).astype(np.float32),
                        rng.standard_normal((n, q - p)).astype(np.float32)], 1) * np.float32(0.5)
    Y += 0.1 * rng.standard_normal((n, q)).astype(np.float32)
    t_cpu, a = _timed(torch.device("cpu"), ReverseDistiller().fit, X, Y)
    t_dev, b = _timed(dev, ReverseDistiller(device=str(dev)).fit, X, Y)
    ta, tb = a.transform(X, Y), b.transform(X, Y)
    diff = float(np.abs(ta - tb).max() / max(np.abs(ta).max(), 1e-30))
    out = {"rows": n, "dims": [p, q], "fit_s_cpu": round(t_cpu, 3), "fit_s_device": round(t_dev, 3),
           "pcs": [int(a.n_significant_pcs_), int(b.n_significant_pcs_)], "transform_max_rel_diff": diff}
    if a.n_significant_pcs_ != b.n_significant_pcs_ or not diff <= 1e-6:
        raise AssertionError(f"distillation on {dev} differs from the CPU: PCs {out['pcs']}, max rel {diff:.2e}")
    return out


SECTIONS = {"env": section_env, "embed_equal": section_embed_equal, "embed_speed": section_embed_speed,
            "sae_equal": section_sae_equal, "sae_speed": section_sae_speed, "distill": section_distill}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a rehearsal of the script)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the tests' rehearsal)")
    ap.add_argument("--big", action="store_true", help="also the 650M shape")
    ap.add_argument("--only", default="", help="comma list of sections (default: all)")
    ap.add_argument("--residues", type=int, default=60_000, help="residues per embedding-speed run")
    ap.add_argument("--max-tokens", type=int, default=32_768, help="token budget per embedding batch on the device")
    ap.add_argument("--sae-steps", type=int, default=40, help="training steps per SAE throughput run")
    ap.add_argument("--distill-rows", type=int, default=200_000, help="rows of the distillation fit")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max relative difference of fp32 embeddings")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch sees no CUDA device; use --device cpu to rehearse",
              file=sys.stderr)
        return 2
    if args.quick:
        args.residues = min(args.residues, 1_500)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"gpu_check: --only: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    torch.manual_seed(0)
    result: dict[str, Any] = {"bench": "gpu_check", "quick": args.quick, "sections": {}}
    for name in only:
        t = time.perf_counter()
        try:
            rec = {"status": "ok", **SECTIONS[name](dev, args)}
        except Skip as why:
            rec = {"status": "skipped", "why": str(why)}
        except Exception as exc:  # noqa: BLE001 - any failure is recorded, and the other sections still run
            rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                   "where": traceback.format_exc().strip().splitlines()[-3:]}
        rec["seconds"] = round(time.perf_counter() - t, 2)
        result["sections"][name] = rec
        print(f"{name:12s} {rec['status']:8s} {rec['seconds']:7.1f} s  "
              f"{rec.get('error') or rec.get('why') or ''}", flush=True)
    result["failed"] = [n for n, r in result["sections"].items() if r["status"] == "failed"]
    result["machine"] = benchlib.machine(torch.get_num_threads())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from rd_interp.io.atomic import write_json

    write_json(out_dir / "gpu_check.json", result)
    benchlib.emit(result)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
