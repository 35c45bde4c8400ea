"""Single-sequence lookup in a finished run: which latents a new protein activates, and their GO terms.

Nothing is re-fitted: the run's models embed the query, its saved distillation chain projects it, its
SAE encodes it, and the enrichment tables of that SAE name the terms. Users of peer toolkits ask for
exactly this ("what does the model see in my protein?") without rerunning the analysis. Only the run
folder (OUT) and the model weights are needed: it opens the stages recorded in OUT/.rd_interp/run.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from rd_interp.config import RunConfig
from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.run import CHAIN
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.atomic import read_json
from rd_interp.io.fasta import FastaRecord, read_fasta
from rd_interp.io.manifest import Manifest, load_manifest
from rd_interp.pipeline.run import META_DIR
from rd_interp.plm.embed import embed_sequences
from rd_interp.plm.esm import load_model
from rd_interp.sae.data import parse_columns
from rd_interp.sae.encode import encode_sequence_activations
from rd_interp.sae.io import load_sae
from rd_interp.sae.run import SAE_DIR


def _records(query: str) -> list[FastaRecord]:
    path = Path(query)
    if path.is_file():
        return list(read_fasta(path))
    with tempfile.TemporaryDirectory() as tmp:  # validate a bare sequence exactly like a FASTA record
        f = Path(tmp) / "query.fasta"
        f.write_text(f">query\n{query.strip()}\n", encoding="utf-8")
        return list(read_fasta(f))


def finished_stage(run_dir: Path, index: dict[str, str], name: str) -> Manifest:
    if name not in index:
        raise ValueError(f"{run_dir}: stage {name} was not run; run `rd-interp run` on its config first")
    m = load_manifest(run_dir / index[name])
    problems = m.verify()
    if problems:
        raise ValueError(f"{run_dir}: stage {name} fails verification ({problems[0]}); rerun `rd-interp run`")
    return m


def explain(run_dir: Path, query: str, *, space: str = "rd", seed: int | None = None, top: int = 10,
            n_terms: int = 5, device: str = "cpu") -> list[dict]:
    run_dir = Path(run_dir)
    meta = run_dir / META_DIR
    if not (meta / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no {META_DIR}/run.json; is this the output folder of `rd-interp run`?")
    cfg = RunConfig.load(meta / "config.json")
    index = read_json(meta / "run.json")["stages"]
    if space not in cfg.sae.spaces:
        raise ValueError(f"space {space!r} was not analysed in {run_dir}; it has {cfg.sae.spaces}")
    seed = cfg.sae.seeds[0] if seed is None else seed
    if seed not in cfg.sae.seeds:
        raise ValueError(f"SAE seed {seed} was not trained in {run_dir}; it has {cfg.sae.seeds}")
    sae_stage = finished_stage(run_dir, index, f"sae-{space}-s{seed}")
    enrich_stage = finished_stage(run_dir, index, f"enrich-{space}-s{seed}")

    records = _records(query)
    m = cfg.models
    family = m.family if space.startswith("rd") else ([m.family[-1]] if space == "large" else [m.family[0]])
    per_model: list[list[np.ndarray]] = []
    for name in family:
        model, alphabet, _ = load_model(name, weights_dir=m.weights_dir or None, device=device)
        out: list[np.ndarray | None] = [None] * len(records)
        for i, arr in embed_sequences(model, alphabet, [r.sequence for r in records], layer=m.layer,
                                      device=device, long_mode=m.long_mode, max_residues=m.max_residues,
                                      window_overlap=m.window_overlap):
            out[i] = arr
        per_model.append(out)
    if space.startswith("rd"):
        distill = finished_stage(run_dir, index, "distill")
        chain = ReverseDistillationChain.load(distill.path(CHAIN), device=device)
        vectors = [np.asarray(chain.transform_last([pm[i] for pm in per_model]), dtype=np.float32)
                   for i in range(len(records))]
    else:
        vectors = per_model[0]
    cols = parse_columns(sae_stage.params.get("columns"))
    sae = load_sae(sae_stage.path(SAE_DIR))
    result = EnrichmentResult.load(enrich_stage.path("real"))
    cap = result.captured()
    padj = "p_adj_global" if result.meta.get("correction") == "global" else "p_adj"

    rows = []
    for rec, X in zip(records, vectors):
        X = X if cols is None else X[:, cols]
        acts = encode_sequence_activations(sae, X)
        pooled = np.asarray(acts.max(axis=0).todense()).ravel()
        order = [int(i) for i in np.argsort(-pooled, kind="stable")[:top] if pooled[i] > 0]
        latents = []
        for lat in order:
            terms = cap[cap["latent"] == lat].sort_values([padj, "go_id"], kind="stable").head(n_terms)
            latents.append({"latent": lat, "activation": float(pooled[lat]),
                            "residues_active": int((acts[:, lat] > 0).sum()),
                            "terms": [{"go_id": t.go_id, "name": t.name, "namespace": t.namespace,
                                       "p_adj": float(getattr(t, padj)), "fold": float(t.fold)}
                                      for t in terms.itertuples()]})
        rows.append({"id": rec.id, "length": len(rec.sequence), "space": sae_stage.params.get("label"),
                     "seed": seed, "latents": latents})
    return rows
