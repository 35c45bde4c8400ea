"""Comparing embedding spaces over several SAE seeds: mean, spread, bootstrap CI, rank tests.

One SAE seed is one draw; a claim like "the residual block captures more specific terms" needs the
spread over seeds (seed_stats / compare_seeds) and a test on the pooled specificity distributions
of the captured terms (rank_test / compare_specificity). Bootstraps are seeded so reports reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from rd_interp.enrich.result import EnrichmentResult


def _get(path: str) -> Callable[[dict], float]:
    def f(s: dict):
        v = s
        for part in path.split("."):
            v = v[part]
        return v

    return f


# metric name -> path in EnrichmentResult.summary()
METRICS: dict[str, str] = {
    "n_terms_total": "n_terms_captured.total",
    "n_terms_BP": "n_terms_captured.BP",
    "n_terms_MF": "n_terms_captured.MF",
    "n_terms_CC": "n_terms_captured.CC",
    "fraction_latents_capturing": "fraction_latents_capturing",
    "n_latents_capturing": "n_latents_capturing",
    "terms_per_latent_mean": "terms_per_latent.mean",
    "ic_mean": "specificity_terms.ic_mean",
    "depth_mean": "specificity_terms.depth_mean",
    "level_mean": "specificity_terms.level_mean",
    "fraction_general": "specificity_terms.fraction_general",
}


def bootstrap_ci(values, *, n_boot: int = 10000, ci: float = 0.95, seed: int = 0,
                 stat: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` (seeded; numpy PCG64)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.apply_along_axis(stat, 1, x[idx]) if stat is not np.mean else x[idx].mean(axis=1)
    a = (1.0 - ci) / 2.0
    return (float(np.quantile(boots, a)), float(np.quantile(boots, 1.0 - a)))


def seed_stats(values, *, n_boot: int = 10000, ci: float = 0.95, seed: int = 0) -> dict:
    """n, mean, sd (ddof=1), bootstrap CI of the mean, and the values themselves."""
    x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    ok = x[np.isfinite(x)]
    lo, hi = bootstrap_ci(ok, n_boot=n_boot, ci=ci, seed=seed)
    return {
        "n": int(ok.size),
        "mean": float(ok.mean()) if ok.size else None,
        "sd": float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size == 1 else None),
        "ci": [lo, hi] if ok.size else None,
        "ci_level": ci,
        "values": [None if not np.isfinite(v) else float(v) for v in x],
    }


def compare_seeds(summaries: Mapping[str, Sequence[dict]], metrics: Sequence[str] | None = None, *,
                  n_boot: int = 10000, ci: float = 0.95, seed: int = 0) -> dict:
    """{space: [summary per SAE seed]} -> {space: {metric: seed_stats}} plus pairwise mean differences
    with a bootstrap CI (resampling seeds within each space independently)."""
    metrics = list(metrics or METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    vals = {space: {m: np.asarray([_safe(_get(METRICS[m]), s) for s in sums], dtype=np.float64)
                    for m in metrics} for space, sums in summaries.items()}
    out: dict = {"spaces": {space: {m: seed_stats(v, n_boot=n_boot, ci=ci, seed=seed) for m, v in d.items()}
                            for space, d in vals.items()}, "differences": {}}
    spaces = list(summaries)
    for i, a in enumerate(spaces):
        for b in spaces[i + 1:]:
            diff = {}
            for m in metrics:
                xa, xb = vals[a][m], vals[b][m]
                xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
                if xa.size == 0 or xb.size == 0:
                    diff[m] = None
                    continue
                rng = np.random.default_rng(seed)
                ba = xa[rng.integers(0, xa.size, (n_boot, xa.size))].mean(axis=1)
                bb = xb[rng.integers(0, xb.size, (n_boot, xb.size))].mean(axis=1)
                d = ba - bb
                q = (1.0 - ci) / 2.0
                diff[m] = {"mean_diff": float(xa.mean() - xb.mean()),
                           "ci": [float(np.quantile(d, q)), float(np.quantile(d, 1 - q))]}
            out["differences"][f"{a} - {b}"] = diff
    return out


def _safe(f, s):
    try:
        v = f(s)
    except (KeyError, TypeError):
        return np.nan
    return np.nan if v is None else v


def rank_test(a, b, *, alternative: str = "two-sided") -> dict:
    """Mann-Whitney U on two samples (e.g. IC of captured terms in two spaces) with the rank-biserial
    effect size r = 2 U_a / (n_a n_b) - 1 (> 0: a tends to be larger)."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    out = {"n_a": int(xa.size), "n_b": int(xb.size),
           "median_a": float(np.median(xa)) if xa.size else None,
           "median_b": float(np.median(xb)) if xb.size else None,
           "test": "Mann-Whitney U (scipy.stats.mannwhitneyu)", "alternative": alternative}
    if xa.size == 0 or xb.size == 0:
        out.update(u=None, p=None, rank_biserial=None)
        return out
    res = stats.mannwhitneyu(xa, xb, alternative=alternative)
    out.update(u=float(res.statistic), p=float(res.pvalue),
               rank_biserial=float(2.0 * res.statistic / (xa.size * xb.size) - 1.0))
    return out


def captured_values(results: Sequence[EnrichmentResult], field: str = "ic", *, distinct: bool = True) -> np.ndarray:
    """Pool a specificity field of captured terms over seeds (distinct terms per result by default)."""
    if field not in ("ic", "depth", "level"):
        raise ValueError(f"field must be 'ic', 'depth' or 'level', got {field!r}")
    vals = []
    for r in results:
        cap = r.captured()
        if distinct:
            cap = cap.drop_duplicates("go_id")
        vals.append(cap[field].to_numpy(dtype=np.float64))
    return np.concatenate(vals) if vals else np.zeros(0)


def compare_specificity(results_a: Sequence[EnrichmentResult], results_b: Sequence[EnrichmentResult], *,
                        fields: Sequence[str] = ("ic", "depth"), distinct: bool = True) -> dict:
    """Rank tests of captured-term IC/depth between two spaces (each a list of per-seed results)."""
    return {f: rank_test(captured_values(results_a, f, distinct=distinct),
                         captured_values(results_b, f, distinct=distinct)) for f in fields}
