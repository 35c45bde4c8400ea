"""Permuted-label null control: the false-discovery check next to every real coverage figure.

The same study sets are tested after permuting which protein carries which annotation set (whole
sets move, so term frequencies, the population size and the ontology are unchanged; only the link
between a protein's activations and its annotations is broken). A sound pipeline captures close to
zero terms under this null; its coverage is reported beside the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rd_interp.enrich.activations import study_sets
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.engine import GOEnricher, enricher_for
from rd_interp.enrich.result import EnrichmentResult


def label_permutation(n_proteins: int, seed: int) -> np.ndarray:
    """perm such that protein i receives the annotation set of protein perm[i] (seeded, numpy PCG64)."""
    return np.random.default_rng(seed).permutation(n_proteins)


@dataclass
class NullControl:
    seeds: list[int]
    results: list[EnrichmentResult] = field(repr=False)
    real: EnrichmentResult | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """Headline coverage under the null (each seed, and their mean) next to the real run's."""
        def head(s: dict) -> dict:
            return {
                "n_terms_captured": s["n_terms_captured"],
                "n_latents_capturing": s["n_latents_capturing"],
                "fraction_latents_capturing": s["fraction_latents_capturing"],
                "n_latent_term_pairs": s["n_latent_term_pairs"],
                "n_latents_tested": s["n_latents_tested"],
            }

        null = [head(r.summary()) for r in self.results]
        out = {
            "method": "protein -> annotation-set labels permuted (whole sets), same study sets and config",
            "seeds": list(self.seeds),
            "null": null,
            "null_mean_terms_captured": float(np.mean([s["n_terms_captured"]["total"] for s in null])) if null else None,
            "null_mean_latents_capturing": float(np.mean([s["n_latents_capturing"] for s in null])) if null else None,
        }
        if self.real is not None:
            real = head(self.real.summary())
            out["real"] = real
            t = real["n_terms_captured"]["total"]
            out["null_to_real_terms_ratio"] = (out["null_mean_terms_captured"] / t) if t else None
            pairs = real["n_latent_term_pairs"]
            out["null_to_real_pairs_ratio"] = (
                float(np.mean([s["n_latent_term_pairs"] for s in null])) / pairs) if pairs and null else None
        return out


def null_control(
    scores,
    protein_ids: Sequence[str],
    annotations: Mapping[str, Iterable[str]],
    ontology,
    cfg: EnrichConfig | None = None,
    *,
    seeds: Sequence[int] = (0,),
    enricher: GOEnricher | None = None,
    real: EnrichmentResult | None = None,
) -> NullControl:
    """Run the enrichment once per seed with permuted protein -> annotation labels."""
    cfg = cfg or EnrichConfig()
    enricher = enricher_for(scores, protein_ids, annotations, ontology, cfg, enricher)
    indicator, info = study_sets(scores, cfg)
    results = []
    for seed in seeds:
        perm = label_permutation(len(protein_ids), int(seed))
        res = enricher.permuted(perm).run(indicator, info)
        res.meta["null_seed"] = int(seed)
        results.append(res)
    return NullControl(seeds=[int(s) for s in seeds], results=results, real=real)
