"""The embed stage: one model's per-residue embeddings of the analysis set, as an EmbeddingStore.

Outputs: store/ (rd_interp.io.store layout). The stage is keyed by the model's weights (sha256), not
its name, so retrained weights invalidate the cache; the input is the data stage's proteins.fasta.
"""

from __future__ import annotations

import time
from pathlib import Path

from rd_interp.io.atomic import sha256_file
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.plm.config import EmbedConfig
from rd_interp.plm.esm import resolve_checkpoint
from rd_interp.plm.sharded import embed

STAGE = "embed"
STORE = "store"


def model_label(name: str) -> str:
    """Short, path-safe label of a model: a checkpoint path's stem, else the name itself."""
    if name.endswith(".pt"):
        name = Path(name).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def model_params(model: str, cfg: EmbedConfig) -> dict[str, str]:
    """Unit parameters of an embed stage: the model's label and the sha256 of its weights."""
    _, path = resolve_checkpoint(model, weights_dir=cfg.weights_dir or None)
    return {"model": model_label(model), "model_sha256": sha256_file(path)}


def checkpoint_bytes(model: str, cfg: EmbedConfig) -> int:
    """Size of a model's checkpoint file: what a process holding it needs at least."""
    _, path = resolve_checkpoint(model, weights_dir=cfg.weights_dir or None)
    return Path(path).stat().st_size


def run(inputs: dict, cfg: EmbedConfig, out_dir: str | Path, *, model: str, device: str = "auto",
        fasta: str | Path | None = None, progress: bool = True) -> Manifest:
    """Embed the proteins of inputs["data"] (a data-stage Manifest) or of `fasta` (a plain file).

    Under torchrun the embedding is spread over the ranks (plm/sharded.py); the result records how many."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, STAGE, [STORE])
    if fasta is None:
        fasta = inputs["data"].path("proteins.fasta")
    params = model_params(model, cfg)
    store, spread = embed(fasta, d / STORE, cfg, model=model, device=device, progress=progress)
    result = {**spread, "dim": store.dim, "n_rows": store.n_rows, "n_proteins": store.n_proteins,
              "model": store.manifest.get("model"), "layer": store.manifest.get("layer"),
              "n_truncated": int(store.manifest.get("n_truncated", 0)), "store": STORE}
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=inputs, outputs=[STORE], params=params,
                          result=result, seconds=time.perf_counter() - t0)
