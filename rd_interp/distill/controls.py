"""The controls stage: control spaces that go through the same SAE -> GO path as the rd space.

A user must see whether rd beats these, not only whether it beats the large space:

- random_subspace: (H_large - mean) Q with Q a seeded random orthonormal basis (Haar) of width d_res, the
  width of the rd residual block (k_K - k_(K-1) in chain mode, k_K - k_0 in direct mode); the mean is that
  of the fit rows, as the residual block is centred on them. It asks: does the residual block capture more
  than any subspace of the large embedding of the same width?
- naive_pca: PCA of the concatenation of the members the rd embedding draws on ([H_0, ..., H_K] in chain
  mode, [H_0, H_K] in direct mode), k_K columns (rd_interp.distill.naive.NaiveConcatPCA). It asks: does
  the rd structure beat the obvious linear alternative of the same width?

Both are fitted on exactly the fit rows of the distill stage (rd_interp.distill.fitset), so with a
separate fit set they are fitted on it and only transform the analysis proteins. The options are the
distill stage's (DistillConfig: fit set, mode, chunk_rows); which controls to write is a unit parameter.
The stores are written with transform_stores (resumable, aligned with the other stores).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.distill.config import DistillConfig
from rd_interp.distill.fitset import fit_data
from rd_interp.distill.naive import NaiveConcatPCA
from rd_interp.distill.stats import PairedMoments
from rd_interp.distill.stores import aligned_chunks, transform_stores
from rd_interp.io.atomic import write_json, write_npz
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict

STAGE = "controls"
RANDOM_SUBSPACE = "random_subspace"
NAIVE_PCA = "naive_pca"
CONTROLS = (RANDOM_SUBSPACE, NAIVE_PCA)
NAIVE_MODEL = "naive_model"
BASIS = "random_basis.npz"
OUTPUTS = (*CONTROLS, NAIVE_MODEL, BASIS, "controls.json")


def controls_params(seed: int = 0, which: Sequence[str] = CONTROLS) -> dict[str, Any]:
    """The unit parameters of a controls stage (what the pipeline's planner keys it with)."""
    bad = sorted(set(which) - set(CONTROLS))
    if bad or not which:
        raise ValueError(f"controls: unknown control(s) {bad}; choose from {list(CONTROLS)}" if bad
                         else "controls: no control space requested")
    return {"seed": int(seed), "controls": [c for c in CONTROLS if c in which]}


def residual_width(dims: Sequence[int], mode: str) -> int:
    """Width of the last rd step's residual block: k_K - k_(K-1) (chain) or k_K - k_0 (direct)."""
    return int(dims[-1] - (dims[-2] if mode == "chain" else dims[0]))


def naive_members(n_members: int, mode: str) -> list[int]:
    """Indices of the members the naive PCA concatenates: those the rd embedding draws on."""
    return list(range(n_members)) if mode == "chain" else [0, n_members - 1]


def random_basis(k: int, d: int, seed: int) -> np.ndarray:
    """A seeded k x d matrix with orthonormal columns, uniform (Haar) over such bases.

    QR of a Gaussian matrix with R's diagonal made positive (without the sign fix the distribution is
    not uniform); seeded by (seed, k, d) so other seeded draws of a run do not share its stream.
    """
    if not 1 <= d <= k:
        raise ValueError(f"random basis width must be in [1, {k}], got {d}")
    g = np.random.default_rng([int(seed), int(k), int(d)]).standard_normal((k, d))
    q, r = np.linalg.qr(g)
    return q * np.where(np.diagonal(r) < 0, -1.0, 1.0)


def fit_random_subspace(large_fit: Any, width: int, seed: int, *, chunk_rows: int = 65536) -> dict[str, Any]:
    """Basis, fit-row mean and the share of the fit rows' H_large variance the subspace holds."""
    mom = None
    for (block,) in aligned_chunks([large_fit], chunk_rows):
        if mom is None:
            mom = PairedMoments(block.shape[1], 0)
        mom.update(block)
    if mom is None:
        raise ValueError("controls: no fit rows")
    m = mom.finish()
    cov = m.cov_xx
    basis = random_basis(cov.shape[0], width, seed)
    total = float(np.trace(cov))
    held = float(np.trace(basis.T @ cov @ basis))
    return {"basis": basis, "mean": m.mean_x, "fit_variance_share": held / total if total > 0 else 0.0}


def _naive_pairs(sources: list, members: list[int], chunk_rows: int):
    for blocks in aligned_chunks([sources[i] for i in members], chunk_rows):
        yield np.concatenate(blocks[:-1], axis=1) if len(blocks) > 2 else blocks[0], blocks[-1]


def run(inputs: dict, cfg: DistillConfig, out_dir: str | Path, *, seed: int = 0, which: Sequence[str] = CONTROLS,
        dtype: str | None = None, device: str = "cpu") -> Manifest:
    """Write the control stores of `which` over the analysis proteins.

    inputs: {"embed": analysis embed manifests, smallest first; "fit": fit-set embed manifests (optional)},
    exactly as given to the distill stage (so both fit on the same rows). The result maps control names
    to store folders in "stores" (open one with rd_interp.io.inputs.open_store(manifest, name)).
    """
    t0 = time.perf_counter()
    params = controls_params(seed, which)
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    embeds = list(inputs["embed"])
    names = [str(m.params["model"]) for m in embeds]
    fd = fit_data(inputs, cfg, seed=seed)
    stores = fd.analysis_stores
    dims = [s.dim for s in stores]
    if len(stores) < 2:
        raise ValueError("controls: need at least two embeddings (small -> large)")
    width = residual_width(dims, cfg.mode)
    dtype = dtype or str(stores[-1].dtype)
    fit_src = fd.fit_sources()
    result: dict[str, Any] = {"stores": {}, "widths": {}, "mode": cfg.mode, "dims": dims, "fit_set": fd.info}
    if RANDOM_SUBSPACE in params["controls"]:
        rs = fit_random_subspace(fit_src[-1], width, seed, chunk_rows=cfg.chunk_rows)
        basis, mean = rs["basis"], rs["mean"]
        write_npz(d / BASIS, basis=basis, mean=mean)
        b32, m32 = basis.astype(np.float32), mean.astype(np.float32)
        transform_stores(lambda blocks: (blocks[0] - m32) @ b32, [stores[-1]], d / RANDOM_SUBSPACE, dim=width,
                         model=f"random_subspace:{names[-1]}[{width}]",
                         fingerprint=_digest(basis, mean),
                         dtype=dtype, chunk_rows=cfg.chunk_rows, kind=f"control:{RANDOM_SUBSPACE}")
        result["stores"][RANDOM_SUBSPACE] = RANDOM_SUBSPACE
        result["widths"][RANDOM_SUBSPACE] = width
        result[RANDOM_SUBSPACE] = {"of": names[-1], "k_large": dims[-1], "width": width, "seed": int(seed),
                                   "fit_variance_share": rs["fit_variance_share"],
                                   "expected_variance_share_isotropic": width / dims[-1]}
    if NAIVE_PCA in params["controls"]:
        members = naive_members(len(stores), cfg.mode)
        naive = NaiveConcatPCA(dims[-1], device=device, chunk_rows=cfg.chunk_rows)
        naive.fit(_naive_pairs(fit_src, members, cfg.chunk_rows))
        naive.save(d / NAIVE_MODEL)
        sub = [stores[i] for i in members]

        def fn(blocks: list) -> np.ndarray:
            small = np.concatenate(blocks[:-1], axis=1) if len(blocks) > 2 else blocks[0]
            return naive.transform(small, blocks[-1])

        transform_stores(fn, sub, d / NAIVE_PCA, dim=dims[-1],
                         model=f"naive_pca:{'+'.join(names[i] for i in members)}", fingerprint=_digest(naive.components_, naive.mean_), dtype=dtype,
                         chunk_rows=cfg.chunk_rows, kind=f"control:{NAIVE_PCA}")
        result["stores"][NAIVE_PCA] = NAIVE_PCA
        result["widths"][NAIVE_PCA] = dims[-1]
        result[NAIVE_PCA] = {**naive.summary(), "members": [names[i] for i in members]}
    write_json(d / "controls.json", result)
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=dict(inputs), outputs=OUTPUTS,
                          params=params, result=result, seconds=time.perf_counter() - t0)


def _digest(*arrays: np.ndarray) -> str:
    """sha256 of fitted arrays: identifies a control transform in its store's manifest (resume check)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
