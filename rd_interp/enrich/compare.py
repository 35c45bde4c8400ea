"""Comparing embedding spaces over a few SAE seeds, soundly.

One SAE seed is one draw: every interval and test here works on per-seed summaries (one number per SAE),
never on terms pooled over seeds (the same term counted once per seed is not an independent
observation). Intervals are Student t intervals (n - 1 degrees of freedom); with fewer than 3 seeds only
the range is given, which is labelled as such. Differences between two spaces: the difference of means
with a Welch interval, Welch's t test, and the exact permutation test over seed labels (every relabelling
of the seeds enumerated: with 3 + 3 seeds the smallest possible two-sided p is 0.1, which the report says).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import stats

from rd_interp.enrich.result import EnrichmentResult


def seed_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sd and the interval of a per-seed summary: 't' (n >= 3), 'range' (n == 2) or 'none' (n == 1)."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None, "method": "none"}
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    if n >= 3:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
        return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "method": "t",
                "level": level}
    if n == 2:
        return {"n": n, "mean": mean, "sd": sd, "lo": float(x.min()), "hi": float(x.max()), "method": "range"}
    return {"n": n, "mean": mean, "sd": sd, "lo": None, "hi": None, "method": "none"}


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Difference of means a - b with its Welch-Satterthwaite interval, Welch's t and two-sided p."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(xa.mean() - xb.mean())
    out = {"diff": diff, "lo": None, "hi": None, "df": None, "t": None, "p": None,
           "relative": diff / float(xb.mean()) if xb.mean() else None}
    if xa.size < 2 or xb.size < 2:
        return out
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = float(np.sqrt(va + vb))
    if se == 0:
        out.update(lo=diff, hi=diff, p=1.0 if diff == 0 else 0.0)
        return out
    df = float((va + vb) ** 2 / (va ** 2 / (xa.size - 1) + vb ** 2 / (xb.size - 1)))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    t = diff / se
    out.update(lo=diff - half, hi=diff + half, df=df, t=t, p=float(2 * stats.t.sf(abs(t), df)))
    return out


def seed_permutation_p(a: Sequence[float], b: Sequence[float]) -> dict:
    """Exact two-sided permutation test of the difference of means over every relabelling of the seeds."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = np.concatenate([xa, xb])
    na, n = xa.size, pooled.size
    observed = abs(xa.mean() - xb.mean())
    diffs = []
    for idx in itertools.combinations(range(n), na):
        mask = np.zeros(n, bool)
        mask[list(idx)] = True
        diffs.append(abs(pooled[mask].mean() - pooled[~mask].mean()))
    diffs = np.asarray(diffs)
    # smallest p any data could give with these group sizes (distinct values): the observed split and, with
    # equal group sizes, its mirror image are the only relabellings as extreme
    min_p = (2.0 if na == n - na else 1.0) / diffs.size
    return {"p": float(np.mean(diffs >= observed - 1e-12 * max(1.0, observed))), "n_relabellings": int(diffs.size),
            "min_p": float(min(1.0, min_p))}


def compare_groups(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Welch difference (interval, t, p) and the exact seed-label permutation p of two per-seed samples."""
    out = welch(a, b, level)
    perm = seed_permutation_p(a, b)
    out.update(p_permutation=perm["p"], n_relabellings=perm["n_relabellings"], min_p_permutation=perm["min_p"],
               n_a=len(a), n_b=len(b), level=level)
    return out


def captured_values(results: Sequence[EnrichmentResult], field: str = "ic", *, distinct: bool = True,
                    nonredundant: bool = False) -> np.ndarray:
    """A specificity field of captured terms, pooled over seeds: for distribution figures only, never for
    tests (pooled terms are not independent draws)."""
    if field not in ("ic", "depth", "level"):
        raise ValueError(f"field must be 'ic', 'depth' or 'level', got {field!r}")
    vals = []
    for r in results:
        cap = r.captured()
        if nonredundant and "most_specific" in cap.columns:
            cap = cap[cap["most_specific"]]
        if distinct:
            cap = cap.drop_duplicates("go_id")
        vals.append(cap[field].to_numpy(dtype=np.float64))
    return np.concatenate(vals) if vals else np.zeros(0)
