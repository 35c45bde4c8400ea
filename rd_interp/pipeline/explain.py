"""Single-sequence lookup in a finished run: which latents a new protein activates, and their GO terms.

Nothing is re-fitted: the run's models embed the query, its saved distillation chain projects it, its
SAE encodes it, and the enrichment tables of that SAE name the terms. Users of peer toolkits ask for
exactly this ("what does the model see in my protein?") without rerunning the analysis.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from rd_interp.config import RunConfig
from rd_interp.io.fasta import FastaRecord, read_fasta


def _records(query: str) -> list[FastaRecord]:
    path = Path(query)
    if path.is_file():
        return list(read_fasta(path))
    with tempfile.TemporaryDirectory() as tmp:  # validate a bare sequence exactly like a FASTA record
        f = Path(tmp) / "query.fasta"
        f.write_text(f">query\n{query.strip()}\n", encoding="utf-8")
        return list(read_fasta(f))


def explain(run_dir: Path, query: str, *, space: str = "rd", seed: int | None = None, top: int = 10,
            n_terms: int = 5) -> list[dict]:
    from rd_interp.enrich.result import EnrichmentResult
    from rd_interp.pipeline.run import Pipeline
    from rd_interp.plm.embed import embed_sequences
    from rd_interp.plm.esm import load_model
    from rd_interp.sae.encode import encode_sequence_activations
    from rd_interp.sae.io import load_sae

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no config.json; is this the output folder of `rd-interp run`?")
    cfg = RunConfig.load(cfg_path)
    cfg.out_dir = str(run_dir)
    if space not in cfg.sae.spaces:
        raise ValueError(f"space {space!r} was not analysed in {run_dir}; it has {cfg.sae.spaces}")
    seed = cfg.sae.seeds[0] if seed is None else seed
    if seed not in cfg.sae.seeds:
        raise ValueError(f"SAE seed {seed} was not trained in {run_dir}; it has {cfg.sae.seeds}")

    pipe = Pipeline(cfg)
    data = pipe.data_stage(pipe.check_inputs())
    embeds = [pipe.embed_stage(data, m) for m in cfg.models.family]
    distill = pipe.distill_stage(embeds)
    spec, sources = pipe.spaces(embeds, distill)[space]
    sae_stage = pipe.sae_stage(space, sources, seed)
    enrich_stage = pipe.enrich_stage(sae_stage, data, space, seed)
    for st in (*embeds, distill, sae_stage, enrich_stage):
        if not st.done:
            raise ValueError(f"{run_dir}: stage {st.name} is not finished; run `rd-interp run` on its config first")

    records = _records(query)
    m = cfg.models
    family = cfg.models.family if space.startswith("rd") else (
        [cfg.models.family[-1]] if space == "large" else [cfg.models.family[0]])
    per_model: list[list[np.ndarray]] = []
    for name in family:
        model, alphabet, _ = load_model(name, weights_dir=m.weights_dir or None, device=pipe.device)
        out: list[np.ndarray | None] = [None] * len(records)
        for i, arr in embed_sequences(model, alphabet, [r.sequence for r in records], layer=m.layer,
                                      device=pipe.device, long_mode=m.long_mode):
            out[i] = arr
        per_model.append(out)
    if space.startswith("rd"):
        from rd_interp.distill.chain import ReverseDistillationChain

        chain = ReverseDistillationChain.load(distill.dir / "chain", device=pipe.device)
        vectors = [np.asarray(chain.transform_last([pm[i] for pm in per_model]), dtype=np.float32)
                   for i in range(len(records))]
    else:
        vectors = per_model[0]
    cols = spec.column_slice()
    sae = load_sae(sae_stage.dir / "sae")
    result = EnrichmentResult.load(enrich_stage.dir / "real")
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
        rows.append({"id": rec.id, "length": len(rec.sequence), "space": spec.label, "seed": seed,
                     "latents": latents})
    return rows
