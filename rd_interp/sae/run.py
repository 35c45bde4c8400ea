"""The SAE stages: train one SAE on a space (a store and a column block), and encode proteins with it.

train  -> sae/ (sae.safetensors + cfg.json), metrics.json (held-out metrics)
encode -> scores.npz (pooled activations [n_proteins, n_latents], scipy save_npz), proteins.txt (row ids),
          decoder_share.npy (when the SAE sees a whole rd store: each latent's decoder share on the base
          block), encode.json

A space's store comes from an upstream stage (its manifest names the store folder), a stage folder, or a
bare store folder. The held-out split is the package's one protein split (rd_interp.io.split), recorded in
the SAE's cfg.json, so `rd-interp sae eval` re-derives exactly the proteins training never saw.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rd_interp.io.atomic import atomic_path, read_json, write_json, write_text
from rd_interp.io.inputs import input_store, open_store
from rd_interp.io.integrity import CorruptFileError, load_npy, load_sparse_npz, reading
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.io.split import SPLIT_METHOD, protein_split, row_budget, split_digest
from rd_interp.io.store import EmbeddingStore
from rd_interp.sae.config import EncodeConfig, SAETrainConfig
from rd_interp.sae.data import columns_to_json, parse_columns
from rd_interp.sae.encode import TopStrips, decoder_share, encode_proteins
from rd_interp.sae.io import load_sae, save_sae
from rd_interp.sae.metrics import evaluate
from rd_interp.sae.model import SparseAutoencoder
from rd_interp.sae.train import train_sae

TRAIN_STAGE = "sae"
ENCODE_STAGE = "encode"
SAE_DIR = "sae"
TRAIN_OUTPUTS = (SAE_DIR, "metrics.json")
ENCODE_OUTPUTS = ("scores.npz", "proteins.txt", "decoder_share.npy", "strips.npz", "encode.json")
STRIP_ARRAYS = {"k": 0, "rows": 2, "scores": 2, "key": 1, "pos": 1, "value": 1}  # name -> ndim


# -- one protein split ----------------------------------------------------------------------------------------
def split_rows(store: EmbeddingStore, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train rows, held-out rows, record) of the protein split used by every SAE stage and `sae eval`."""
    train, held = protein_split(store.ids, fraction, seed)
    rec = {"fraction": fraction, "seed": seed, "method": SPLIT_METHOD, "n_heldout_proteins": int(held.size),
           "n_train_proteins": int(train.size), "heldout_sha256": split_digest(store.ids, held)}
    return store.protein_rows(train), store.protein_rows(held), rec


def heldout_rows(sae: SparseAutoencoder, store: EmbeddingStore) -> np.ndarray:
    """The held-out rows an SAE was evaluated on, re-derived from its recorded split and checked."""
    rec = sae.provenance.split
    if not rec:
        raise ValueError("this SAE records no held-out split (trained outside rd-interp?); use --rows all")
    _, held, again = split_rows(store, float(rec["fraction"]), int(rec["seed"]))
    if again["heldout_sha256"] != rec["heldout_sha256"]:
        raise ValueError(f"{store.path}: the held-out proteins recorded with the SAE are not those of this store "
                         "(different proteins?); use --rows all to evaluate on everything")
    return held


# -- train -------------------------------------------------------------------------------------------------------
def train(inputs: dict, cfg: SAETrainConfig, out_dir: str | Path, *, seed: int = 0, columns: Any = None,
          label: str | None = None, space: str | None = None, untrained: bool = False, store_name: str | None = None,
          device: str = "auto", progress: bool = True) -> Manifest:
    """Train one SAE on inputs["store"] (optionally on a column block) and evaluate it on held-out proteins.

    `columns`: None, a slice, "a:b" or {"start": a, "stop": b}; `label`/`space`: how reports name it.
    `untrained`: the control SAE (random initialisation, same shape and pre-processing, no training).
    `store_name`: which store of a stage holding several (the controls stage)."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, TRAIN_STAGE, TRAIN_OUTPUTS)
    store, src = open_store(inputs["store"], store_name)
    cols = parse_columns(columns)
    train_rows, held_rows, split = split_rows(store, cfg.heldout_fraction, cfg.split_seed)
    n_train_residues = int(train_rows.size)
    train_rows = row_budget(train_rows, cfg.max_train_residues, cfg.split_seed)  # held-out stays by protein
    ckpt = d / ".checkpoints"
    blocks = None
    if cfg.block_scaling == "per_block" and cols is None and store.manifest.get("blocks"):
        blocks = [tuple(store.manifest["blocks"][b]) for b in ("base", "residual")]
    sae = train_sae(store, cfg.sae_config(), cfg.train_config(), columns=cols, rows=train_rows,
                    checkpoint_dir=ckpt, progress=progress, seed=seed, device=device, blocks=blocks,
                    untrained=untrained)
    metrics = _jsonable(evaluate(sae, store, columns=cols, rows=held_rows))
    sae.provenance.split = split
    sae.provenance.source = {**(sae.provenance.source or {}),
                             "store": os.path.relpath(store.path.resolve(), (d / SAE_DIR).resolve())}
    cols_json = columns_to_json(cols, store.dim)
    save_sae(sae, d / SAE_DIR, extra_cfg={"space": label, "columns": cols_json, "metrics": metrics})
    write_json(d / "metrics.json", metrics)
    shutil.rmtree(ckpt, ignore_errors=True)  # only needed while training; the saved SAE is the result
    result = {"label": label, "seed": seed, "d_in": sae.d_in, "n_latents": sae.n_latents, "k": sae.cfg.k,
              "architecture": sae.cfg.architecture, "metrics": metrics, "block_scaling": blocks is not None,
              "untrained": untrained, "train_residues": int(train_rows.size),
              "train_residues_available": n_train_residues}
    params = {"seed": seed, "columns": cols_json, "label": label, "space": space,
              **({"untrained": True} if untrained else {}), **({"store_name": store_name} if store_name else {})}
    return write_manifest(d, stage=TRAIN_STAGE, config=key_dict(cfg), inputs={"store": src},
                          outputs=TRAIN_OUTPUTS, params=params, result=result,
                          seconds=time.perf_counter() - t0)


# -- encode ------------------------------------------------------------------------------------------------------
def encode(inputs: dict, cfg: EncodeConfig, out_dir: str | Path, *, store: Any = None,
           progress: bool = False) -> Manifest:
    """Pooled activations of every protein of the SAE's store (or of `store`) with inputs["sae"]."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, ENCODE_STAGE, ENCODE_OUTPUTS)
    sae_stage = inputs["sae"]
    sae = load_sae(sae_stage.path(SAE_DIR))
    if store is None:
        st = input_store(sae_stage, store=sae_stage.params.get("store_name"))
        record: Any = None
    else:
        st, record = open_store(store)
    columns = (sae.provenance.source or {}).get("columns")  # the block the SAE was trained on
    strips = TopStrips(cfg.strip_proteins, sae.n_latents) if cfg.strip_proteins else None
    scores = encode_proteins(sae, st, columns=columns, pooling=cfg.pooling, batch_rows=cfg.batch_rows,
                             chunk_rows=cfg.chunk_rows, progress=progress, strips=strips)
    save_scores(d, scores, st.ids, st.lengths)
    result = {"n_proteins": int(scores.shape[0]), "n_latents": int(scores.shape[1]), "nnz": int(scores.nnz),
              "label": sae_stage.result.get("label"), "seed": sae_stage.result.get("seed")}
    if strips is not None:
        with atomic_path(d / "strips.npz", suffix=".npz") as tmp:
            np.savez_compressed(tmp, **strips.arrays())
        result["strips"] = "strips.npz"
    blocks = st.manifest.get("blocks")
    if blocks and columns is None:  # an SAE on a whole rd space: how much each latent writes to each block
        share = decoder_share(sae, slice(*blocks["base"]))
        with atomic_path(d / "decoder_share.npy", suffix=".npy") as tmp:
            np.save(tmp, share, allow_pickle=False)
        result["decoder_share"] = "decoder_share.npy"
        result["blocks"] = blocks
        result["base_fraction"] = (blocks["base"][1] - blocks["base"][0]) / float(st.dim)
    write_json(d / "encode.json", result)
    ins = {"sae": sae_stage, **({"store": record} if record is not None else {})}
    return write_manifest(d, stage=ENCODE_STAGE, config=key_dict(cfg), inputs=ins, outputs=ENCODE_OUTPUTS,
                          params={}, result=result, seconds=time.perf_counter() - t0)


def save_scores(d: Path, scores: sp.csr_matrix, ids: list[str], lengths=None) -> None:
    """scores.npz (scipy save_npz) + proteins.txt (id, and residues encoded): what `rd-interp enrich` reads.

    The lengths let the enrichment's null permute labels within protein-length bins."""
    with atomic_path(d / "scores.npz", suffix=".npz") as tmp:
        sp.save_npz(tmp, scores.tocsr(), compressed=True)
    if lengths is None:
        write_text(d / "proteins.txt", "".join(f"{i}\n" for i in ids))
    else:
        write_text(d / "proteins.txt", "".join(f"{i}\t{int(n)}\n" for i, n in zip(ids, lengths)))


def _protein_lines(d: Path) -> list[list[str]]:
    return [line.split("\t") for line in (Path(d) / "proteins.txt").read_text(encoding="utf-8").splitlines()]


#: How to get damaged encode outputs back (said in every integrity error).
ENCODE_FIX = ("recompute them: `rd-interp run` recomputes a damaged stage (`rd-interp verify OUT` lists them); "
              "outputs of `rd-interp sae encode`: rerun that command into a new folder")


def load_scores(d: Path) -> tuple[sp.csr_matrix, list[str]]:
    """scores.npz + proteins.txt of an encode folder, checked against each other (errors name the file)."""
    d = Path(d)
    with reading(d / "proteins.txt", "protein list", ENCODE_FIX):
        ids = [row[0] for row in _protein_lines(d)]
    scores = load_sparse_npz(d / "scores.npz", "score matrix", ENCODE_FIX)
    if scores.shape[0] != len(ids):
        raise CorruptFileError(f"{d / 'scores.npz'}: {scores.shape[0]} rows but {d / 'proteins.txt'} lists "
                               f"{len(ids)} proteins; {ENCODE_FIX}")
    return scores, ids


def load_lengths(d: Path) -> np.ndarray | None:
    """Residues per protein as encoded (None for a proteins.txt without the length column)."""
    rows = _protein_lines(d)
    if not rows or any(len(r) < 2 for r in rows):
        return None
    return np.asarray([int(r[1]) for r in rows], dtype=np.int64)


def load_strips(d: Path) -> dict[str, np.ndarray] | None:
    """strips.npz of an encode folder (TopStrips.arrays), checked; None when the stage kept no strips."""
    path = Path(d) / "strips.npz"
    if not path.is_file():
        return None
    with reading(path, "atlas strips", ENCODE_FIX) as p, np.load(p, allow_pickle=False) as z:
        out = {name: z[name] for name in STRIP_ARRAYS}
    bad = [n for n, nd in STRIP_ARRAYS.items() if out[n].ndim != nd]
    n = out["key"].shape[0]
    if bad or out["pos"].shape[0] != n or out["value"].shape[0] != n or out["rows"].shape != out["scores"].shape:
        raise CorruptFileError(f"{path}: atlas strips have inconsistent arrays ({', '.join(bad) or 'lengths'}); "
                               f"{ENCODE_FIX}")
    return out


def read_decoder_share(encoded: Manifest) -> np.ndarray | None:
    name = encoded.result.get("decoder_share")
    return None if name is None else load_npy(encoded.path(name), "decoder share", ENCODE_FIX)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def read_metrics(stage: Manifest) -> dict:
    return read_json(stage.path("metrics.json"))
