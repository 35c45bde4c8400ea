"""The enrich stage: GO enrichment of every latent of one SAE, its coverage/specificity, and the null control.

Inputs: the pooled scores of an encode stage (or plain scores.npz + proteins.txt files) and the analysis
set's annotations and ontology (a data stage, or plain files). Outputs: real/ (EnrichmentResult folder:
table.tsv, latents.tsv, best_terms.tsv, summary.json, result.json) and enrich.json (its coverage summary and
the null distribution of the coverage numbers over cfg.n_permutations label permutations).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rd_interp.data.run import load_analysis_set
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.engine import GOEnricher, enrich_latents
from rd_interp.enrich.null import null_distribution
from rd_interp.io.annotations import read_annotations
from rd_interp.io.atomic import sha256_json, write_json
from rd_interp.io.go import Ontology
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.sae.run import load_lengths, load_scores, read_decoder_share

STAGE = "enrich"


def read_protein_ids(path: str | Path) -> list[str]:
    """One id per line (first TSV column; '#' comments and blank lines skipped); duplicates refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: protein id file not found")
    ids, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.rstrip("\n").split("\t")[0].strip()
            if not s or s.startswith("#"):
                continue
            if s in seen:
                raise ValueError(f"{path}:{lineno}: protein id {s!r} appears more than once")
            seen.add(s)
            ids.append(s)
    return ids


def read_scores(path: str | Path) -> sp.csr_matrix:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: score matrix not found")
    try:
        return sp.load_npz(path).tocsr()
    except (ValueError, OSError, KeyError) as exc:
        raise ValueError(f"{path}: not a scipy.sparse .npz matrix ({exc})") from None


def _scores_of(inputs: dict) -> tuple[sp.csr_matrix, list[str], np.ndarray | None, dict]:
    src = inputs["scores"]
    if isinstance(src, Manifest):
        scores, ids = load_scores(src.dir)
        return scores, ids, read_decoder_share(src), {**src.result, "lengths": load_lengths(src.dir)}
    scores, ids = read_scores(src["path"]), read_protein_ids(inputs["proteins"]["path"])
    if len(ids) != scores.shape[0]:
        raise ValueError(f"{inputs['proteins']['path']}: {len(ids)} protein ids but {src['path']} has "
                         f"{scores.shape[0]} rows")
    share = None
    if "decoder_share" in inputs:
        share = np.load(inputs["decoder_share"]["path"], allow_pickle=False)
        if share.shape != (scores.shape[1],):
            raise ValueError(f"{inputs['decoder_share']['path']}: expected shape ({scores.shape[1]},), "
                             f"got {share.shape}")
    return scores, ids, share, {"base_fraction": inputs.get("base_fraction")}


def _annotations_of(inputs: dict):
    data = inputs["data"]
    if isinstance(data, Manifest):
        _, annotations, ontology = load_analysis_set(data)
        return annotations, ontology
    ontology = Ontology.load(data["ontology"]["path"])
    return read_annotations(data["annotations"]["path"], ontology=ontology), ontology


def run(inputs: dict, cfg: EnrichConfig, out_dir: str | Path, *, seed: int | None = None,
        enrichers: dict | None = None) -> Manifest:
    """Enrich the latents of inputs["scores"] against inputs["data"].

    `seed`: the SAE's seed (drives the null permutation); default: recorded by the encode stage, else 0.
    `enrichers`: a dict the caller keeps across calls so the propagated term matrix and IC table of one
    analysis set are built once per run (keyed by the protein list and the data's identity).
    """
    t0 = time.perf_counter()
    cfg.validate()
    scores, ids, share, upstream = _scores_of(inputs)
    seed = int(upstream.get("seed") or 0) if seed is None else int(seed)
    outputs = ["real", "enrich.json"]
    d = claim_dir(out_dir, STAGE, outputs)
    data = inputs["data"]
    key = (data.digest if isinstance(data, Manifest) else sha256_json(data), sha256_json(ids),
           cfg.background, tuple(cfg.namespaces), tuple(cfg.relationships))
    enricher = (enrichers or {}).get(key)
    if enricher is None:
        annotations, ontology = _annotations_of(inputs)
        enricher = GOEnricher(ids, annotations, ontology, cfg)
        if enrichers is not None:
            enrichers[key] = enricher
    result = enrich_latents(scores, ids, None, None, cfg, enricher=enricher)
    base_fraction = upstream.get("base_fraction") if share is not None else None
    result.save(d / "real", decoder_share=share, base_fraction=base_fraction)
    out: dict[str, Any] = {"real": result.summary(decoder_share=share, base_fraction=base_fraction)}
    if cfg.n_permutations:
        null = null_distribution(scores, ids, None, None, cfg, enricher=enricher, lengths=upstream.get("lengths"),
                                 seed=cfg.null_seed + seed)
        out["null"] = null.summary()
    write_json(d / "enrich.json", out)
    res = {"label": upstream.get("label"), "seed": seed,
           "n_terms_nonredundant": out["real"]["n_terms_nonredundant"]["total"],
           "n_terms_captured": out["real"]["n_terms_captured"]["total"]}
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=inputs, outputs=outputs,
                          params={"seed": seed}, result=res, seconds=time.perf_counter() - t0)

