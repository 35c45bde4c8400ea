"""Single-sequence lookup in a finished run: which latents a new protein activates, and their GO terms.

Nothing is re-fitted: the run's models embed the query, its saved distillation chain projects it, its
SAE encodes it, and the enrichment tables of that SAE name the terms. For each latent it also says where
along the sequence the latent fires (1-based positions and activations), and `explain_page` draws the same
heat strips as the atlas for it. Users of peer toolkits ask for
exactly this ("what does the model see in my protein?") without rerunning the analysis. Only the run
folder (OUT) and the model weights are needed: it opens the stages recorded in OUT/.rd_interp/run.json.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rd_interp.config import RunConfig
from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.run import CHAIN
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.atomic import read_json
from rd_interp.io.fasta import ESM_RESIDUES, FastaRecord, protein_name, read_fasta
from rd_interp.io.manifest import Manifest, load_manifest
from rd_interp.pipeline.run import META_DIR
from rd_interp.plm.embed import embed_sequences
from rd_interp.plm.esm import load_model
from rd_interp.report.strip import StripProtein, StripTrack, write_strip_page
from rd_interp.sae.data import parse_columns
from rd_interp.sae.encode import encode_sequence_activations
from rd_interp.sae.io import load_sae
from rd_interp.sae.run import SAE_DIR


def query_records(query: str) -> list[FastaRecord]:
    """The proteins of a query: a bare sequence, or a FASTA file.

    A string of residue letters (whitespace ignored, any case) is a sequence, decided without touching the
    filesystem: a real protein is longer than a file name may be ("File name too long"). Anything else is
    a FASTA path (so a file named only with residue letters is given as ./NAME).
    """
    compact = "".join(query.split()).upper()
    if compact and compact.isascii() and ESM_RESIDUES.issuperset(compact):
        return [FastaRecord("query", "", compact, 1)]
    try:
        is_file = Path(query).expanduser().is_file()
    except (OSError, ValueError):  # e.g. too long for a path, or a NUL byte
        is_file = False
    if is_file:
        return list(read_fasta(Path(query).expanduser()))
    if compact and "/" not in query and os.sep not in query and "." not in query:  # meant as a sequence
        bad = next(c for c in compact if c not in ESM_RESIDUES)
        raise ValueError(f"query: invalid residue {bad!r} at position {compact.index(bad) + 1} of the sequence "
                         f"(allowed: 20 standard amino acids and X, B, U, Z, O), and no file of that name")
    raise FileNotFoundError(f"{query if len(query) <= 80 else query[:77] + '...'}: not a protein sequence and no "
                            "such FASTA file")


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
    """One row per query protein: its most active latents and their terms. Rows say how many residues
    were used: a protein longer than the run's max_residues is truncated (long_mode = "truncate")."""
    records = query_records(query)  # a bad query fails before anything is loaded
    run_dir = Path(run_dir).expanduser()
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

    m = cfg.models
    family = m.family if space.startswith("rd") else ([m.family[-1]] if space == "large" else [m.family[0]])
    embedded = {load_manifest(run_dir / d).params.get("model_sha256") for n, d in index.items() if n.startswith("embed-")}
    per_model: list[list[np.ndarray]] = []
    for name in family:
        model, alphabet, info = load_model(name, weights_dir=m.weights_dir or None, device=device)
        if embedded and info.sha256 not in embedded:  # replaced weights would give silently different latents
            raise ValueError(f"{info.source_path}: not the weights {run_dir} was computed with (sha256 differs); "
                             "restore them or rerun `rd-interp run`")
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
            col = np.asarray(acts[:, lat].todense(), dtype=np.float64).ravel()
            pos = np.flatnonzero(col > 0)
            latents.append({"latent": lat, "activation": float(pooled[lat]),
                            "residues_active": int(pos.size),
                            "max_position": int(np.argmax(col)) + 1,
                            "positions": [int(i) + 1 for i in pos], "values": [float(col[i]) for i in pos],
                            "terms": [{"go_id": t.go_id, "name": t.name, "namespace": t.namespace,
                                       "p_adj": float(getattr(t, padj)), "fold": float(t.fold)}
                                      for t in terms.itertuples()]})
        used = len(rec.sequence) if m.long_mode == "window" else min(len(rec.sequence), m.max_residues)
        rows.append({"id": rec.id, "name": protein_name(rec.description), "sequence": rec.sequence,
                     "length": len(rec.sequence), "residues_used": used,
                     "truncated": used < len(rec.sequence), "space": sae_stage.params.get("label"),
                     "seed": seed, "latents": latents})
    return rows


def position_ranges(positions: list[int]) -> str:
    """1-based positions as compact ranges: [3, 4, 5, 9] -> '3-5, 9'."""
    out: list[str] = []
    start = prev = None
    for q in positions:
        if prev is not None and q == prev + 1:
            prev = q
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = q
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(out)


def explain_page(rows: list[dict], path: str | Path) -> Path:
    """The rows of `explain` as a self-contained page: one heat strip per latent under each sequence."""
    proteins = []
    for row in rows:
        n = len(row["sequence"])
        tracks = []
        for lat in row["latents"]:
            values = np.zeros(n)
            values[np.asarray(lat["positions"], dtype=np.int64) - 1] = lat["values"]
            tracks.append(StripTrack(
                label=f"{row['space']} · seed {row['seed']} · latent {lat['latent']}", values=values,
                terms=[(t["go_id"], t["name"], t["p_adj"]) for t in lat["terms"]],
                note=f"fires on {lat['residues_active']} of {row['residues_used']} residues, max "
                     f"{lat['activation']:.3g} at {lat['max_position']}"))
        proteins.append(StripProtein(row["id"], row["sequence"], tracks, row.get("name", "")))
    notes = [f"{r['id']}: truncated to its first {r['residues_used']} residues (models.long_mode = 'truncate')"
             for r in rows if r["truncated"]]
    return write_strip_page(path, proteins, title="rd-interp explain: where latents fire", notes=notes)
