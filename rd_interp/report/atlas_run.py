"""The latent atlas of finished stages: every latent of every SAE of a run, in one offline page.

Walks the same stage graph as the summary (enrich -> encode -> sae -> store -> data) and fills the atlas
payload (rd_interp.report.atlas) from it: the SAE, its pooled scores, its enrichment table, the residue
embeddings of each latent's top proteins (for the per-residue strips), the ontology (for the non-redundant
term list) and the analysed proteins' FASTA records (names and sequences).
"""

from __future__ import annotations

from pathlib import Path

from rd_interp.data.run import ONTOLOGY
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.fasta import read_fasta
from rd_interp.io.go import Ontology
from rd_interp.io.inputs import input_store
from rd_interp.io.manifest import Manifest
from rd_interp.report.atlas import AtlasSpace, SpaceBlock, build_atlas, build_sae_entry, write_atlas
from rd_interp.report.summary import collect
from rd_interp.sae.io import load_sae
from rd_interp.sae.run import SAE_DIR, load_lengths, load_scores, load_strips

ATLAS = "atlas.html"


def write_run_atlas(enrich: list[Manifest], path: str | Path, *, title: str = "rd_interp latent atlas",
                    top_k: int = 10) -> dict:
    """Build and write the atlas of the given enrich stages; returns write_atlas's size report."""
    spaces, data, _ = collect(enrich)
    if data is None:
        raise ValueError("the atlas needs the run's data stage (proteins and ontology); run `rd-interp run`")
    ontology = Ontology.load(data.path(ONTOLOGY))
    margin = float(enrich[0].config.get("stratum_margin", 0.5))
    out = []
    for key, sp in spaces.items():
        entries = []
        blocks = []
        for seed in sorted(sp.enrich):
            sae_stage = sp.sae[seed]
            sae = load_sae(sae_stage.path(SAE_DIR))
            store = input_store(sae_stage, store=sae_stage.params.get("store_name"))
            cols = sae_stage.params.get("columns")
            blocks = []
            if cols is None and store.manifest.get("blocks"):
                b = store.manifest["blocks"]
                blocks = [SpaceBlock("base", *b["base"]), SpaceBlock("residual", *b["residual"])]
            scores, ids = load_scores(sp.encode[seed].dir)
            strips = load_strips(sp.encode[seed].dir)
            lengths = load_lengths(sp.encode[seed].dir) if strips is not None else None
            res = EnrichmentResult.load(sp.enrich[seed].path("real"))
            entries.append(build_sae_entry(sae, scores, ids, seed=seed, enrichment=res, store=store,
                                           blocks=blocks, stratum_margin=margin, ontology=ontology, top_k=top_k,
                                           label=sp.label, strips=strips, lengths=lengths))
        out.append(AtlasSpace(key=key, label=sp.label, saes=entries, blocks=blocks,
                              description="control" if sp.kind == "control" else ""))
    records = {r.id: r for r in read_fasta(data.path("proteins.fasta"))}
    payload = build_atlas(out, records, title=title,
                          notes=["Terms: BH-adjusted p of the run's correction; most specific = highest IC among a "
                                 "latent's captured terms; the list drops terms implied by a listed descendant.",
                                 "Strips: per-residue activation of the latent over each top protein (quantised)."],
                          share_thresholds=(margin, -margin))
    return write_atlas(payload, path)
