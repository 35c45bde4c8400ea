"""The null distribution of coverage: the same study sets tested against permuted labels, many times.

Each permutation moves whole annotation sets between proteins (term frequencies, the population size and
the ontology are unchanged; only the link between a protein's activations and its annotations is broken).
By default labels move only within protein-length bins: study-set membership correlates with length, and
length with annotation count, so a free permutation would test against a null that is too easy to beat.
Reported per metric: the real value, the null mean, its central 95% range and the empirical p-value
(1 + #{null >= real}) / (1 + n_permutations). The propagated term matrix is reused; only the pairing of
study-set rows and annotation rows changes (GOEnricher.null_counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rd_interp.enrich.activations import study_sets
from rd_interp.enrich.config import EnrichConfig
from rd_interp.enrich.engine import GOEnricher, enricher_for

METRICS = ("n_terms_nonredundant", "n_terms", "n_latents_capturing", "n_pairs", "n_pairs_nonredundant")


def length_bins(lengths: Sequence[int], n_bins: int) -> np.ndarray:
    """Bin index per protein: quantile bins of length (ties kept together, so bins may be fewer)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if n_bins <= 1 or lengths.size == 0:
        return np.zeros(lengths.size, dtype=np.int64)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, lengths, side="right").astype(np.int64)


def label_permutations(n: int, n_perm: int, seed: int, *, strata: np.ndarray | None = None) -> list[np.ndarray]:
    """`n_perm` permutations perm (protein i gets the labels of protein perm[i]), within strata when given."""
    rng = np.random.default_rng([int(seed), 0xA11])
    out = []
    groups = None if strata is None else [np.flatnonzero(strata == b) for b in np.unique(strata)]
    for _ in range(n_perm):
        if groups is None:
            out.append(rng.permutation(n))
            continue
        perm = np.arange(n)
        for g in groups:
            perm[g] = g[rng.permutation(g.size)]
        out.append(perm)
    return out


def empirical_p(real: float, null: np.ndarray) -> float:
    """One-sided (real at least as large as the null): (1 + #{null >= real}) / (1 + n)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.sum(null >= real)) / (1 + null.size))


@dataclass
class NullDistribution:
    real: dict[str, int]
    counts: dict[str, np.ndarray] = field(repr=False)  # metric -> [n_permutations]
    method: str
    n_bins: int
    seed: int

    def summary(self) -> dict:
        out = {"method": self.method, "n_permutations": int(next(iter(self.counts.values())).size),
               "length_bins": self.n_bins, "seed": self.seed, "metrics": {}}
        for m, null in self.counts.items():
            null = np.asarray(null, dtype=np.float64)
            lo, hi = np.quantile(null, [0.025, 0.975]) if null.size else (None, None)
            out["metrics"][m] = {
                "real": int(self.real[m]), "null_mean": float(null.mean()) if null.size else None,
                "null_lo": None if lo is None else float(lo), "null_hi": None if hi is None else float(hi),
                "p_empirical": empirical_p(self.real[m], null) if null.size else None,
                "null": [int(v) for v in null],
            }
        return out


def null_distribution(
    scores,
    protein_ids: Sequence[str],
    annotations: Mapping[str, Iterable[str]] | None,
    ontology,
    cfg: EnrichConfig | None = None,
    *,
    enricher: GOEnricher | None = None,
    lengths: Sequence[int] | None = None,
    seed: int = 0,
    n_permutations: int | None = None,
) -> NullDistribution:
    """Coverage of the real labels and of `n_permutations` (default cfg.n_permutations) permuted labelings."""
    cfg = cfg or EnrichConfig()
    n_perm = cfg.n_permutations if n_permutations is None else int(n_permutations)
    enricher = enricher_for(scores, protein_ids, annotations, ontology, cfg, enricher)
    indicator, _ = study_sets(scores, cfg)
    stratified = cfg.null_strata == "length" and lengths is not None
    strata = length_bins(lengths, cfg.null_length_bins) if stratified else None
    perms = label_permutations(len(protein_ids), n_perm, seed, strata=strata)
    real = enricher.null_counts(indicator, [np.arange(len(protein_ids))])[0]
    null = enricher.null_counts(indicator, perms)
    method = ("protein -> annotation-set labels permuted within "
              f"{int(strata.max()) + 1 if strata is not None and strata.size else 1} protein-length bins"
              if stratified else "protein -> annotation-set labels permuted freely")
    return NullDistribution(real=real, counts={m: np.array([c[m] for c in null], dtype=np.int64) for m in METRICS},
                            method=method, n_bins=int(strata.max()) + 1 if stratified and strata.size else 1,
                            seed=int(seed))
