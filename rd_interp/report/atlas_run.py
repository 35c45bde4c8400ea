"""The latent atlas of finished stages: every latent of every SAE of a run, in one offline page.

Walks the same stage graph as the summary (enrich -> encode -> sae -> store -> data) and fills the atlas
payload (rd_interp.report.atlas) from it: the SAE, its pooled scores, its enrichment table, the residue
embeddings of each latent's top proteins (for the per-residue strips), the ontology (for the non-redundant
term list) and the analysed proteins' FASTA records (names and sequences).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rd_interp.data.run import ONTOLOGY
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.fasta import read_fasta
from rd_interp.io.go import Ontology
from rd_interp.io.inputs import input_store
from rd_interp.io.manifest import Manifest
from rd_interp.report.atlas import AtlasSAE, AtlasSpace, SpaceBlock, build_atlas, build_sae_entry, write_atlas
from rd_interp.report.summary import collect
from rd_interp.sae.io import load_sae
from rd_interp.sae.run import SAE_DIR, load_lengths, load_scores, load_strips

ATLAS = "atlas.html"


def sae_entry(sae_stage: Manifest, encode_stage: Manifest, enrich_stage: Manifest, data: Manifest, label: str,
              seed: int, margin: float, top_k: int) -> tuple[AtlasSAE, list[SpaceBlock]]:
    """One SAE's atlas entry and its space's column blocks, from its stages alone (module-level, so that a
    run's worker processes can build the entries side by side)."""
    sae = load_sae(sae_stage.path(SAE_DIR))
    store = input_store(sae_stage, store=sae_stage.params.get("store_name"))
    blocks = []
    if sae_stage.params.get("columns") is None and store.manifest.get("blocks"):
        b = store.manifest["blocks"]
        blocks = [SpaceBlock("base", *b["base"]), SpaceBlock("residual", *b["residual"])]
    scores, ids = load_scores(encode_stage.dir)
    strips = load_strips(encode_stage.dir)
    lengths = load_lengths(encode_stage.dir) if strips is not None else None
    res = EnrichmentResult.load(enrich_stage.path("real"))
    entry = build_sae_entry(sae, scores, ids, seed=seed, enrichment=res, store=store, blocks=blocks,
                            stratum_margin=margin, ontology=Ontology.load(data.path(ONTOLOGY)), top_k=top_k,
                            label=label, strips=strips, lengths=lengths)
    return entry, blocks


def _in_process(fn: Callable[..., Any], jobs: list[tuple]) -> list[Any]:
    return [fn(*job) for job in jobs]


def write_run_atlas(enrich: list[Manifest], path: str | Path, *, title: str = "rd_interp latent atlas",
                    top_k: int = 10, map_jobs: Callable[[Callable, list[tuple]], list] | None = None) -> dict:
    """Build and write the atlas of the given enrich stages; returns write_atlas's size report.

    `map_jobs(fn, jobs)`: how the per-SAE entries are built (default: one after the other here; a run passes
    its worker pool's map)."""
    spaces, data, _ = collect(enrich)
    if data is None:
        raise ValueError("the atlas needs the run's data stage (proteins and ontology); run `rd-interp run`")
    margin = float(enrich[0].config.get("stratum_margin", 0.5))
    keys = [(key, seed) for key, sp in spaces.items() for seed in sorted(sp.enrich)]
    jobs = [(spaces[key].sae[seed], spaces[key].encode[seed], spaces[key].enrich[seed], data, spaces[key].label,
             seed, margin, top_k) for key, seed in keys]
    built = dict(zip(keys, (map_jobs or _in_process)(sae_entry, jobs)))
    out = []
    for key, sp in spaces.items():
        seeds = sorted(sp.enrich)
        out.append(AtlasSpace(key=key, label=sp.label, saes=[built[key, s][0] for s in seeds],
                              blocks=built[key, seeds[-1]][1] if seeds else [],
                              description="control" if sp.kind == "control" else ""))
    records = {r.id: r for r in read_fasta(data.path("proteins.fasta"))}
    payload = build_atlas(out, records, title=title,
                          notes=["Terms: BH-adjusted p of the run's correction; most specific = highest IC among a "
                                 "latent's captured terms; the list drops terms implied by a listed descendant.",
                                 "Strips: per-residue activation of the latent over each top protein (quantised)."],
                          share_thresholds=(margin, -margin))
    return write_atlas(payload, path)
