"""The distill stage: fit the reverse-distillation chain along the family, write the rd store.

Inputs: "embed" (the analysis set's embed stages, smallest model first) and, optionally, "fit" (the embed
stages of the fit set, same models in the same order: the fitset stage's FASTA, disjoint from the analysis
set). With "fit" the chain is fitted on the fit set and every analysis protein is transformed and held
out; without it (distill.fasta = "analysis") it is fitted on a seeded subset of the analysis set.

Outputs: chain/ (the fitted chain, rd_interp.distill.chain format), rd_store/ (the last step's rd
embedding of every analysis protein; its first columns are exactly the previous rd space), distill.json
(widths per step, the fit set and its overlap with the analysis set, per-step fit diagnostics, and the
held-out leakage diagnostics with their definitions under "leakage").
"""

from __future__ import annotations

import time
from pathlib import Path

from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.config import DistillConfig
from rd_interp.distill.fitset import FitData, fit_data
from rd_interp.distill.leakage import N_CANONICAL, leakage
from rd_interp.distill.stores import check_aligned
from rd_interp.io.atomic import write_json
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.io.split import seeded_subset

STAGE = "distill"
RD_STORE = "rd_store"
CHAIN = "chain"
OUTPUTS = (CHAIN, RD_STORE, "distill.json")


def run(inputs: dict, cfg: DistillConfig, out_dir: str | Path, *, seed: int = 0, device: str = "cpu",
        dtype: str | None = None) -> Manifest:
    """inputs: {"embed": analysis embed manifests, smallest first; "fit": fit-set embed manifests (optional)}."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    embeds = list(inputs["embed"])
    names = [m.params["model"] for m in embeds]
    fd = fit_data(inputs, cfg, seed=seed).limit(cfg.max_fit_residues, seed)
    chain = cfg.chain(names, device=device)
    chain.fit(fd.fit_sources())
    chain.save(d / CHAIN)
    stores = fd.analysis_stores
    rd = chain.transform_stores(stores, d / RD_STORE, dtype=dtype or str(stores[-1].dtype))
    leak = held_out_leakage(chain, fd, chunk_rows=cfg.chunk_rows)
    dims = [s.dim for s in stores] if cfg.mode == "chain" else [stores[0].dim, stores[-1].dim]
    result = {"dims": dims, "mode": cfg.mode, "regressor": cfg.regressor, "fit_set": fd.info,
              "train_proteins": fd.info["proteins"], "train_rows": fd.info["rows"],
              "steps": chain.summary()["steps"], "store": RD_STORE, "blocks": rd.manifest["blocks"],
              "leakage": leak}
    write_json(d / "distill.json", result)
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=dict(inputs), outputs=OUTPUTS,
                          params={"seed": seed}, result=result, seconds=time.perf_counter() - t0)


def held_out_leakage(chain: ReverseDistillationChain, fd: FitData, *, chunk_rows: int = 65536,
                     n_canonical: int = N_CANONICAL) -> dict:
    """Leakage diagnostics of every step on the analysis rows the chain was not fitted on."""
    held = fd.info.get("held_out_proteins", 0) > 0
    label = "held-out analysis rows (not used in the fit)" if held else "training rows (nothing held out)"
    out = leakage(chain, fd.held_out_blocks(chunk_rows=chunk_rows), n_canonical=n_canonical, rows=label)
    out["n_proteins"] = int(fd.held_out.size)
    return out


def fit_chain(stores: list, cfg: DistillConfig, names: list[str], *, seed: int = 0,
              device: str = "cpu") -> tuple[ReverseDistillationChain, dict[str, int]]:
    """Fit the chain on a seeded subset of cfg.train_proteins proteins of `stores` (0: all, streamed).

    The plain-stores entry point (`rd-interp distill fit`): the stores given are the fit set.
    """
    check_aligned(stores)  # same proteins, same lengths, same order in every model's store
    chain = cfg.chain(names, device=device)
    n = stores[0].n_proteins
    if cfg.train_proteins and cfg.train_proteins < n:
        rows = stores[0].protein_rows(seeded_subset(stores[0].ids, cfg.train_proteins, seed))
        chain.fit([s.take(rows) for s in stores])
        return chain, {"proteins": int(cfg.train_proteins), "rows": int(rows.size)}
    chain.fit(stores)
    return chain, {"proteins": int(n), "rows": int(stores[0].n_rows)}
