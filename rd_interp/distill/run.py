"""The distill stage: fit the reverse-distillation chain along the family, write the rd store.

Outputs: chain/ (the fitted chain, rd_interp.distill.chain format), rd_store/ (the last step's rd
embedding of every protein; its first columns are exactly the previous rd space), distill.json (widths
per step, fit size, per-step diagnostics).
"""

from __future__ import annotations

import time
from pathlib import Path

from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.config import DistillConfig
from rd_interp.distill.stores import check_aligned
from rd_interp.io.atomic import write_json
from rd_interp.io.inputs import open_store
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.io.split import seeded_subset

STAGE = "distill"
RD_STORE = "rd_store"
CHAIN = "chain"
OUTPUTS = (CHAIN, RD_STORE, "distill.json")


def run(inputs: dict, cfg: DistillConfig, out_dir: str | Path, *, seed: int = 0, device: str = "cpu",
        dtype: str | None = None) -> Manifest:
    """inputs["embed"]: the embed-stage manifests of the family, smallest first."""
    t0 = time.perf_counter()
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    embeds = list(inputs["embed"])
    stores = [open_store(m)[0] for m in embeds]
    chain, fit = fit_chain(stores, cfg, [m.params["model"] for m in embeds], seed=seed, device=device)
    chain.save(d / CHAIN)
    rd = chain.transform_stores(stores, d / RD_STORE, dtype=dtype or str(stores[-1].dtype))
    dims = [s.dim for s in stores] if cfg.mode == "chain" else [stores[0].dim, stores[-1].dim]
    result = {"dims": dims, "train_proteins": fit["proteins"], "train_rows": fit["rows"],
              "steps": chain.summary()["steps"], "mode": cfg.mode, "store": RD_STORE,
              "blocks": rd.manifest["blocks"]}
    write_json(d / "distill.json", result)
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs={"embed": embeds}, outputs=OUTPUTS,
                          params={"seed": seed}, result=result, seconds=time.perf_counter() - t0)



def fit_chain(stores: list, cfg: DistillConfig, names: list[str], *, seed: int = 0,
              device: str = "cpu") -> tuple[ReverseDistillationChain, dict[str, int]]:
    """Fit the chain on a seeded subset of cfg.train_proteins proteins (0: all, streamed from the stores)."""
    check_aligned(stores)  # same proteins, same lengths, same order in every model's store
    chain = cfg.chain(names, device=device)
    n = stores[0].n_proteins
    if cfg.train_proteins and cfg.train_proteins < n:
        rows = stores[0].protein_rows(seeded_subset(stores[0].ids, cfg.train_proteins, seed))
        chain.fit([s.take(rows) for s in stores])
        return chain, {"proteins": int(cfg.train_proteins), "rows": int(rows.size)}
    chain.fit(stores)
    return chain, {"proteins": int(n), "rows": int(stores[0].n_rows)}
