"""SAE on disk: ``sae.safetensors`` (SAELens tensor names) + ``cfg.json``.

sae.safetensors: W_enc [d_in, n_latents], b_enc [n_latents], W_dec [n_latents, d_in], b_dec [d_in], and
`threshold` [] for BatchTopK. cfg.json: architecture, d_in, n_latents, k, l1_coeff, the pre-processing
(mean per dimension and global scale, applied inside encode so users pass raw embeddings), the source
store and columns, seed, training settings, versions, metrics and the tensor file's sha256. Floats go
through JSON's shortest round-trip repr, so a loaded SAE is bit-identical to the saved one.
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rd_interp.io.atomic import atomic_path, read_json, sha256_file, write_json
from rd_interp.io.integrity import CorruptFileError, reading
from rd_interp.io.provenance import versions
from rd_interp.io.serialize import ConfigError
from rd_interp.sae.model import SAEConfig, SparseAutoencoder

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "load_sae", "read_checkpoint", "save_sae"]

FORMAT = "rd_interp.sae/1"
WEIGHTS = "sae.safetensors"
CONFIG = "cfg.json"
#: How to get a damaged SAE back (said in every integrity error).
FIX = ("retrain it: `rd-interp run` recomputes a damaged stage (`rd-interp verify OUT` lists them); an SAE of "
       "`rd-interp sae train`: rerun that command into a new folder")


def save_sae(sae: SparseAutoencoder, directory: str | Path, extra_cfg: dict[str, Any] | None = None) -> Path:
    """Write the SAE atomically (tensors first, cfg.json last: a directory with cfg.json is complete)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        "W_enc": sae.W_enc.detach().cpu().contiguous(),
        "b_enc": sae.b_enc.detach().cpu().contiguous(),
        "W_dec": sae.W_dec.detach().cpu().contiguous(),
        "b_dec": sae.b_dec.detach().cpu().contiguous(),
    }
    thr = float(sae.threshold)
    if sae.cfg.architecture == "batchtopk" and not math.isnan(thr):
        tensors["threshold"] = sae.threshold.detach().cpu().reshape(())
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    cfg: dict[str, Any] = {
        "format": FORMAT,
        "architecture": sae.cfg.architecture,
        "d_in": sae.cfg.d_in,
        "n_latents": sae.cfg.n_latents,
        "k": sae.cfg.k,
        "l1_coeff": sae.cfg.l1_coeff,
        "preprocessing": {
            "mean": [float(v) for v in sae.pre_mean.detach().cpu().numpy()],
            "scale": float(sae.pre_scale),
            **({"dim_scale": [float(v) for v in sae.pre_dim_scale.detach().cpu().numpy()]}
               if bool((sae.pre_dim_scale != 1).any()) else {}),
            "note": "x' = (x - mean) * dim_scale * scale is applied inside encode(); pass raw embeddings",
        },
        "source": sae.provenance.source,
        "train": sae.provenance.train,
        "split": sae.provenance.split,
        "seed": (sae.provenance.train or {}).get("seed"),
        "versions": versions(),
        "sha256": {WEIGHTS: sha256_file(out / WEIGHTS)},
    }
    if extra_cfg:
        cfg.update(extra_cfg)
    write_json(out / CONFIG, cfg)
    return out


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by `save_sae`; checks the checksum and every tensor's shape against cfg.json."""
    d = Path(directory)
    if not (d / CONFIG).is_file() and (d / "sae" / CONFIG).is_file():  # a stage folder of `rd-interp sae train`
        d = d / "sae"
    cpath, wpath = d / CONFIG, d / WEIGHTS
    if not cpath.is_file():
        raise FileNotFoundError(f"{d}: not a saved SAE (no {CONFIG})")
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath}: missing; {FIX}")
    cfg = read_json(cpath)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"{cpath}: unknown SAE format {got!r}, expected {FORMAT!r}")
    want = (cfg.get("sha256") or {}).get(WEIGHTS)
    if want and sha256_file(wpath) != want:
        raise CorruptFileError(f"{wpath}: checksum does not match {CONFIG} (truncated, edited or corrupt); {FIX}")
    try:
        scfg = SAEConfig(architecture=cfg["architecture"], d_in=int(cfg["d_in"]), n_latents=int(cfg["n_latents"]),
                         k=int(cfg["k"]), l1_coeff=float(cfg.get("l1_coeff", 5.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{cpath}: missing or malformed key ({exc})") from None
    try:
        sae = SparseAutoencoder(scfg, seed=0)
    except ConfigError as exc:
        raise ValueError(f"{cpath}: {exc}") from None
    with reading(wpath, "SAE weights file", FIX, also=(SafetensorError,)):
        tensors = load_file(str(wpath))
    shapes = {"W_enc": (scfg.d_in, scfg.n_latents), "b_enc": (scfg.n_latents,),
              "W_dec": (scfg.n_latents, scfg.d_in), "b_dec": (scfg.d_in,)}
    with torch.no_grad():
        for name, shape in shapes.items():
            if name not in tensors:
                raise ValueError(f"{wpath}: tensor {name!r} missing")
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"{wpath}: {name} has shape {tuple(t.shape)}, {CONFIG} implies {shape}")
            getattr(sae, name).copy_(t.float())
        if "threshold" in tensors:
            sae.threshold.copy_(tensors["threshold"].float().reshape(()))
        pre = cfg.get("preprocessing") or {}
        mean = np.asarray(pre.get("mean", [0.0] * scfg.d_in), dtype=np.float32)
        if mean.shape != (scfg.d_in,):
            raise ValueError(f"{cpath}: preprocessing.mean has {mean.size} values, d_in is {scfg.d_in}")
        sae.pre_mean.copy_(torch.from_numpy(mean))
        dim_scale = np.asarray(pre.get("dim_scale", [1.0] * scfg.d_in), dtype=np.float32)
        if dim_scale.shape != (scfg.d_in,):
            raise ValueError(f"{cpath}: preprocessing.dim_scale has {dim_scale.size} values, d_in is {scfg.d_in}")
        sae.pre_dim_scale.copy_(torch.from_numpy(dim_scale))
        sae.pre_scale.fill_(float(np.float32(pre.get("scale", 1.0))))
    sae.provenance.source = cfg.get("source")
    sae.provenance.train = cfg.get("train")
    sae.provenance.split = cfg.get("split")
    sae.provenance.saved = cfg
    sae.eval()
    return sae.to(device)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """A training checkpoint's state, or None (with a warning) when the file is damaged.

    A checkpoint only saves time: training is deterministic, so a truncated or garbled one is discarded
    and training restarts from step 0 to the same result, instead of failing deep inside torch.load.
    """
    p = Path(path)
    try:
        with reading(p, "SAE training checkpoint", "it is discarded"):
            state = torch.load(p, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not {"model", "optimizer", "step", "fingerprint"} <= set(state):
            raise CorruptFileError(f"{p}: not an SAE training checkpoint (keys missing)")
    except (CorruptFileError, pickle.UnpicklingError) as exc:
        log.warning("%s; discarding it and training from step 0", str(exc).split("; ")[0])
        p.unlink(missing_ok=True)
        return None
    return state
