"""Export an SAE to a folder SAELens loads with its own loader (`sae_lens.SAE.load_from_disk`).

Why fold: our SAEs apply the input pre-processing x' = (x - mean) * scale inside `encode`, and that
pre-processing lives in our cfg.json. A loader that only reads the tensors would encode raw embeddings as
if they were pre-processed. SAELens (>= 6) computes, with ``apply_b_dec_to_input`` and no normalisation,

    pre = (x - B) @ W + b,     x_hat = z @ D + B

and ours is pre = ((x - mean) * scale - b_dec) @ W_enc + b_enc, x_hat = (z @ W_dec + b_dec) / scale + mean.
These agree exactly for every x with

    W = scale * W_enc,   b = b_enc,   B = mean + b_dec / scale,   D = W_dec / scale

so the pre-activations (and hence the TopK selection, thresholds and values) are the same function of the
raw input; only float rounding differs. The products are formed in float64 and stored in float32.

Architectures: ``topk`` -> SAELens "topk" (same k, no decoder-norm rescaling); ``relu`` -> "standard";
``batchtopk`` -> "jumprelu" with every latent's threshold set to our global inference threshold clamped at
0 (our inference rule is pre * (pre > max(threshold, 0)), SAELens' is relu(pre) * (pre > threshold)).

Our own ``sae.safetensors`` + ``cfg.json`` stays the source of truth; this folder is a derived view.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rd_interp.io.atomic import atomic_path, write_json
from rd_interp.io.provenance import versions
from rd_interp.sae.model import SparseAutoencoder

__all__ = ["SAELENS_CFG", "SAELENS_WEIGHTS", "export_saelens", "folded_saelens_tensors"]

SAELENS_WEIGHTS = "sae_weights.safetensors"  # sae_lens.constants.SAE_WEIGHTS_FILENAME
SAELENS_CFG = "cfg.json"  # sae_lens.constants.SAE_CFG_FILENAME
# The cfg layout below is SAELens' 6.x schema (flat SAEConfig fields + a free-form "metadata" dict). A cfg
# without metadata.sae_lens_version >= 6 is routed through SAELens' pre-6 converter, which drops our metadata.
_SCHEMA_VERSION = "6.0.0"
_ARCH = {"topk": "topk", "relu": "standard", "batchtopk": "jumprelu"}


def folded_saelens_tensors(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """The SAELens tensors (float32, CPU) with our pre-processing folded in (see the module docstring)."""
    arch = sae.cfg.architecture
    if arch not in _ARCH:
        raise ValueError(f"architecture {arch!r} has no SAELens equivalent (known: {sorted(_ARCH)})")
    scale = float(sae.pre_scale)
    dim_scale = sae.pre_dim_scale.detach().cpu().double()
    if not (math.isfinite(scale) and scale > 0) or not bool(torch.isfinite(dim_scale).all() & (dim_scale > 0).all()):
        raise ValueError(f"pre-processing scale must be finite and positive to fold it, got {scale}")
    with torch.no_grad():
        W_enc = sae.W_enc.detach().cpu().double()
        W_dec = sae.W_dec.detach().cpu().double()
        b_enc = sae.b_enc.detach().cpu().double()
        b_dec = sae.b_dec.detach().cpu().double()
        mean = sae.pre_mean.detach().cpu().double()
        s = dim_scale * float(sae.pre_scale.detach().cpu())  # [d]: x' = (x - mean) * s, per dimension
        out = {
            "W_enc": (W_enc * s[:, None]).float().contiguous(),
            "b_enc": b_enc.float().contiguous(),
            "W_dec": (W_dec / s[None, :]).float().contiguous(),
            "b_dec": (mean + b_dec / s).float().contiguous(),
        }
        if arch == "batchtopk":
            thr = float(sae.threshold)
            if math.isnan(thr):
                raise ValueError("this BatchTopK SAE has no inference threshold yet (train it first)")
            out["threshold"] = torch.full((sae.n_latents,), max(thr, 0.0), dtype=torch.float32)
    return out


def export_saelens(sae: SparseAutoencoder, out_dir: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write `out_dir/sae_weights.safetensors` + `out_dir/cfg.json` for `sae_lens.SAE.load_from_disk(out_dir)`.

    `metadata` is merged into cfg["metadata"] (e.g. model_name, hook_name); our own provenance (source
    store and columns, seed, the folded pre-processing) is recorded under metadata["rd_interp"].
    Files are written atomically, weights first: a folder with cfg.json is complete.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    tensors = folded_saelens_tensors(sae)
    with atomic_path(out / SAELENS_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    arch = sae.cfg.architecture
    cfg: dict[str, Any] = {
        "architecture": _ARCH[arch],
        "d_in": sae.d_in,
        "d_sae": sae.n_latents,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
    }
    if arch == "topk":
        cfg.update(k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
    src = getattr(sae, "source_", None) or {}
    info = getattr(sae, "train_info_", None) or {}
    meta: dict[str, Any] = {
        "sae_lens_version": _SCHEMA_VERSION,
        "sae_lens_training_version": None,
        "model_name": src.get("model") or src.get("name"),
        "hook_name": src.get("name") or "rd_interp",
        "hook_head_index": None,
        "rd_interp": {
            "architecture": arch,
            "k": sae.cfg.k,
            "source": src or None,
            "seed": info.get("seed"),
            "preprocessing_folded": "W_enc*scale, W_dec/scale, b_dec/scale + mean: pass RAW embeddings",
            "pre_scale": float(sae.pre_scale),
            "threshold": (float(sae.threshold) if arch == "batchtopk" else None),
            "versions": versions(),
        },
    }
    if metadata:
        meta.update(metadata)
    cfg["metadata"] = meta
    write_json(out / SAELENS_CFG, cfg)
    return out
