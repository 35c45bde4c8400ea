"""A realistic synthetic run summary (schema 2) for the report tests: the shape of the builder's output on the
shipped mini family (mini-S -> mini-L, size-matched SAEs, 3 seeds, controls), with made-up but internally
consistent numbers: the seed intervals, Welch intervals and exact permutation p-values are computed here
from the per-seed values the way the builder computes them.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import stats

EVIL_PROTEIN = '<script>alert("protein")</script>|sp|P0|EVIL_HUMAN'
EVIL_GO_NAME = "<script>alert('go')</script> binding | <img src=x onerror=alert(1)>"
EVIL_SPACE = "rd<b>35M</b>"
EVIL_VERDICT = "<script>alert('verdict')</script> | *bold* [x](https://example.org) rd<i>"
EVIL_DEFINITION = ("<img src=x onerror=alert('def')>", "a | b <script>alert('d')</script> _x_")

SEEDS = [0, 1, 2]
LEVEL = 0.95
NULL_METHOD = "protein -> annotation-set labels permuted within 10 protein-length bins"
N_PERM = 200
# (key, label, subspace, kind, d_in, non-redundant mean, raw/non-redundant ratio, null mean or None)
SPACES = [
    ("large", "mini-L", "full", "space", 96, 630, 1.70, 61),
    ("rd", "rd.mini-L", "full", "space", 96, 662, 1.68, 63),
    ("rd.base", "rd.mini-L[base]", "base", "space", 64, 545, 1.66, 58),
    ("rd.residual", "rd.mini-L[residual]", "residual", "space", 32, 238, 1.61, 40),
    ("small", "mini-S", "full", "space", 64, 551, 1.69, 59),
    ("control.untrained", "control: untrained SAE on mini-L", "control", "control", 96, 151, 1.52, 131),
    ("control.random", "control: random 32-dim subspace of mini-L", "control", "control", 32, 221, 1.58, 39),
    ("control.naive", "control: naive PCA of [mini-S, mini-L]", "control", "control", 96, 648, 1.69, 62),
]
N_LATENTS = 512
K_RATIO = 0.22
GO_NAMES = [
    ("GO:0005524", "ATP binding", "MF"), ("GO:0004672", "protein kinase activity", "MF"),
    ("GO:0006412", "translation", "BP"), ("GO:0005840", "ribosome", "CC"),
    ("GO:0016021", "integral component of membrane", "CC"), ("GO:0003677", "DNA binding", "MF"),
    ("GO:0006355", "regulation of transcription, DNA-templated", "BP"), ("GO:0005739", "mitochondrion", "CC"),
    ("GO:0008270", "zinc ion binding", "MF"), ("GO:0055085", "transmembrane transport", "BP"),
]
DEFINITIONS = {
    "captured": "a GO term is captured by a latent when its BH-adjusted p < alpha, at least min_study_count of the "
                "latent's study proteins carry it and it is over-represented (fold > 1)",
    "BH family": "'global': one Benjamini-Hochberg family per SAE and namespace over all latents x terms; "
                 "'per_latent': one family per latent and namespace (goatools GOEnrichmentStudyNS)",
    "raw terms": "distinct GO terms captured by any latent of the SAE (every propagated ancestor counts)",
    "non-redundant terms": "distinct GO terms left after removing, within each latent, every captured term that "
                           "has a captured descendant (is_a/part_of) in the same latent; the headline count",
    "best terms": "distinct GO terms among the latents' single most significant terms",
    "interval": "mean over SAE seeds with a Student t interval (n - 1 degrees of freedom); with 2 seeds the range "
                "of the two values; with 1 seed none",
    "null distribution": "the same study sets tested against protein -> annotation labels permuted within "
                         "protein-length bins, n_permutations times per SAE; the i-th permutation of every seed is "
                         "averaged into one draw of the seed mean",
    "empirical p": "(1 + number of null draws >= the real value) / (1 + number of draws), one-sided",
    "comparison": "difference of seed means with a Welch (Satterthwaite) interval and Welch's t test; the exact "
                  "permutation test over seed labels enumerates every relabelling",
    "general term": "a GO term at level <= general_level (shortest is_a path to its namespace root)",
    "IC": "information content -log p(term), term frequencies from the analysis set's propagated annotations",
    "depth": "longest is_a path from the term to its namespace root (goatools)",
    "relative decoder share": "r = (s - f)/(1 - f) if s >= f else (s - f)/f, with s the latent's decoder share on "
                              "the base block and f the base block's share of the input dimensions",
    "size-matched SAEs": "every space's SAE has the same number of latents and the same sparsity ratio k / d_in",
    "leakage: residual predictable share": "R^2 (variance-weighted) of H_res from H_small by least squares on "
                                           "held-out rows",
}


def _stat(values: list[float]) -> dict:
    x = np.asarray(values, dtype=np.float64)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, x.size - 1) * sd / np.sqrt(x.size))
    return {"mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "method": "t",
            "per_seed": [float(v) for v in values], "level": LEVEL}


def _null(real_mean: float, null_mean: float, rng) -> dict:
    draws = rng.normal(null_mean, 0.09 * null_mean + 2, N_PERM)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    p = float((1 + np.sum(draws >= real_mean)) / (1 + draws.size))
    return {"method": NULL_METHOD, "n_permutations": N_PERM, "mean": float(draws.mean()), "lo": float(lo),
            "hi": float(hi), "p": p}


def _compare(a: list[float], b: list[float]) -> dict:
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(xa.mean() - xb.mean())
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va ** 2 / (xa.size - 1) + vb ** 2 / (xb.size - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df) * se)
    p_welch = float(2 * stats.t.sf(abs(diff / se), df))
    pooled = np.concatenate([xa, xb])
    diffs = []
    for idx in combinations(range(pooled.size), xa.size):
        mask = np.zeros(pooled.size, dtype=bool)
        mask[list(idx)] = True
        diffs.append(abs(pooled[mask].mean() - pooled[~mask].mean()))
    diffs = np.asarray(diffs)
    return {"diff": diff, "lo": diff - half, "hi": diff + half, "relative": diff / float(xb.mean()),
            "p_welch": p_welch, "p_permutation": float(np.mean(diffs >= abs(diff) - 1e-12)),
            "min_p_permutation": float(2 / diffs.size), "n_a": int(xa.size), "n_b": int(xb.size), "level": LEVEL,
            "test": "Welch t on per-seed values; exact permutation of seed labels"}


def _verdict(c: dict) -> dict:
    test = (f"difference {c['diff']:+.3g} [{c['lo']:.3g}, {c['hi']:.3g}], Welch p = {c['p_welch']:.2g}, "
            f"seed-permutation p = {c['p_permutation']:.2g} (smallest attainable {c['min_p_permutation']:.2g}; "
            f"{c['n_a']} vs {c['n_b']} seeds)")
    what = "non-redundant GO terms" if c["metric"] == "non-redundant GO terms" else "more specific GO terms (mean IC)"
    supported = c["p_welch"] < 0.05 and (c["lo"] > 0 or c["hi"] < 0)
    if supported:
        noun = what if c["metric"] == "non-redundant GO terms" else "specific GO terms (mean IC)"
        text = f"{c['a']} latents capture {'more' if c['diff'] > 0 else 'fewer'} {noun} than {c['b']} latents: {test}."
    else:
        text = f"The data do not show that {c['a']} and {c['b']} latents differ in {what}: {test}."
    return {"text": text, "supported": bool(supported)}


def synthetic_summary(seed: int = 0, evil: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    spaces = [list(s) for s in SPACES]
    if evil:
        spaces[-1][1] = EVIL_SPACE  # a hostile label, used consistently in every section
    headline, coverage, quality, per_seed = [], [], [], {}
    for key, label, sub, kind, d_in, nonred, raw_ratio, null_mean in spaces:
        k = max(1, round(K_RATIO * d_in))
        nr = [float(round(nonred + rng.normal(0, 0.025 * nonred))) for _ in SEEDS]
        raw = [float(round(v * raw_ratio + rng.normal(0, 6))) for v in nr]
        ic = [float(4.4 + 0.15 * (key == "rd") - 0.6 * (kind == "control") + rng.normal(0, 0.04)) for _ in SEEDS]
        per_seed[key] = {"non-redundant GO terms": nr, "mean IC of non-redundant terms": ic}
        spec = {"general_fraction": float(0.09 + 0.05 * (kind == "control") + rng.normal(0, 0.004)),
                "depth_mean": float(np.mean(ic) * 1.25), "ic_mean": float(np.mean(ic))}
        headline.append({
            "space": label.split("[")[0], "subspace": sub, "label": label, "kind": kind, "d_in": d_in,
            "n_latents": N_LATENTS, "k": k, "n_seeds": len(SEEDS), "nonredundant": _stat(nr), "raw": _stat(raw),
            "best_terms": _stat([float(round(0.42 * v + rng.normal(0, 4))) for v in nr]),
            "latent_fraction": _stat([float(min(0.95, 0.00075 * v + rng.normal(0, 0.01))) for v in nr]),
            "null": _null(float(np.mean(nr)), null_mean, rng), **spec,
        })
        for ns, share in (("BP", 0.55), ("MF", 0.30), ("CC", 0.15), ("all", 1.0)):
            ns_nr = nr if ns == "all" else [float(round(v * share + rng.normal(0, 3))) for v in nr]
            ns_raw = raw if ns == "all" else [float(round(v * share + rng.normal(0, 4))) for v in raw]
            coverage.append({
                "space": label.split("[")[0], "subspace": sub, "label": label, "kind": kind, "namespace": ns,
                "nonredundant": _stat(ns_nr), "raw": _stat(ns_raw),
                "general_fraction": spec["general_fraction"] + (0.01 if ns == "CC" else 0.0),
                "depth_mean": spec["depth_mean"], "ic_mean": spec["ic_mean"],
                "null": headline[-1]["null"] if ns == "all" else None,
            })
        for s in SEEDS:
            quality.append({
                "space": label.split("[")[0], "subspace": sub, "label": label, "seed": s, "architecture": "topk",
                "d_in": d_in, "n_latents": N_LATENTS, "k": k,
                "fvu": float(0.012 + 0.004 * (sub == "residual") + rng.normal(0, 0.001)) if key != "control.untrained"
                else float(0.98 + rng.normal(0, 0.005)),
                "mse": float(0.0103 + rng.normal(0, 0.0004)), "cosine": float(0.994 - 0.002 * (sub == "residual")),
                "l0": float(k), "dead_fraction": float(abs(rng.normal(0.04, 0.01))),
                "dense_fraction": float(abs(rng.normal(0.02, 0.005))), "block_scaling": key.startswith("rd"),
                "untrained": key == "control.untrained",
            })
    labels = {s[0]: s[1] for s in spaces}
    comparisons = []
    for a, b in (("rd", "large"), ("rd.residual", "rd.base"), ("large", "small"), ("rd", "control.naive"),
                 ("rd.residual", "control.random"), ("large", "control.untrained")):
        for metric in ("non-redundant GO terms", "mean IC of non-redundant terms"):
            comparisons.append({"a": labels[a], "b": labels[b], "metric": metric,
                                **_compare(per_seed[a][metric], per_seed[b][metric])})
    specificity = {}
    for row in headline:
        n = int(rng.integers(500, 900)) if row["kind"] == "space" else int(rng.integers(150, 600))
        depth = rng.integers(2, 14, size=n)
        specificity[row["label"]] = {"depth": depth.tolist(),
                                     "ic": (depth * 0.75 + rng.normal(0, 0.8, n)).round(3).clip(0.05).tolist(),
                                     "level": np.maximum(1, depth - rng.integers(0, 4, size=n)).tolist()}
    f = 64 / 96
    n_lat = N_LATENTS * len(SEEDS)
    mix = rng.random(n_lat)
    share = np.where(mix < 0.45, rng.beta(12, 1.5, n_lat), np.where(mix < 0.7, rng.beta(1.2, 6, n_lat),
                                                                    rng.beta(6, 3, n_lat)))
    rel = np.where(share >= f, (share - f) / (1 - f), (share - f) / f)
    terms = rng.poisson(0.6 + 1.5 * np.abs(rel)) * (rng.random(n_lat) < 0.45)
    attribution = {"rd.mini-L": {"base_share": share.round(5).tolist(), "relative_share": rel.round(5).tolist(),
                                 "n_terms": terms.tolist(), "base_fraction": f, "margin": 0.5,
                                 "scaling": "per-block input scaling"}}
    strata = [{"space": "rd.mini-L", "stratum": st, "n_seeds": 3, "n_latents": n, "n_terms": t, "depth_mean": d,
               "ic_mean": ic}
              for st, n, t, d, ic in (("base", 231, 402, 5.9, 4.7), ("mixed", 149, 211, 5.4, 4.3),
                                      ("residual", 132, 118, 5.1, 4.0))]
    top = []
    for i in range(5):
        best = []
        for j in range(4):
            go_id, name, ns = GO_NAMES[(i * 3 + j) % len(GO_NAMES)]
            best.append({"go_id": go_id, "name": name, "namespace": ns, "p_adj": float(10 ** -(20 - 3 * j - i)),
                         "fold": float(12.5 - 2 * j), "depth": 4 + j, "ic": float(5.5 + j)})
        prots = [{"id": f"sp|P{10000 + 37 * i + j}|PROT{j}_HUMAN", "score": float(9.5 - j)} for j in range(6)]
        top.append({"space": ("mini-L", "rd.mini-L")[i % 2], "seed": 0, "latent": 17 + 101 * i,
                    "n_terms": 12 - i, "best_terms": best, "top_proteins": prots})
    ratio = np.sort(rng.dirichlet(np.ones(32) * 0.4))[::-1]
    probe_rows = [{"label": "amino-acid composition + log length", "kind": "baseline", "width": 21,
                   "macro_auroc": {"mean": 0.612, "lo": 0.598, "hi": 0.627},
                   "per_namespace": {"BP": 0.601, "MF": 0.628, "CC": 0.607}}]
    for label, kind, width, auroc in (("mini-L", "space", 96, 0.724), ("rd.mini-L", "space", 96, 0.727),
                                      ("rd.mini-L[base]", "space", 64, 0.703), ("rd.mini-L[residual]", "space", 32,
                                                                                 0.661),
                                      ("mini-S", "space", 64, 0.701),
                                      (labels["control.random"], "control", 32, 0.652),
                                      (labels["control.naive"], "control", 96, 0.722)):
        probe_rows.append({"label": label, "kind": kind, "width": width,
                           "macro_auroc": {"mean": auroc, "lo": auroc - 0.013, "hi": auroc + 0.012},
                           "per_namespace": {"BP": auroc - 0.012, "MF": auroc + 0.021, "CC": auroc - 0.006},
                           "vs_baseline": {"diff": auroc - 0.612, "lo": auroc - 0.612 - 0.011,
                                           "hi": auroc - 0.612 + 0.010}})
    truncation = [{"label": f"rd.mini-L[:{w}]", "width": w, "macro_auroc": a, "lo": a - 0.014, "hi": a + 0.013}
                  for w, a in ((19, 0.652), (38, 0.684), (58, 0.698), (64, 0.703), (77, 0.716), (96, 0.727))]
    summary = {
        "schema": 2,
        "title": "rd-interp demo: mini-S -> mini-L",
        "run_id": "demo-3f2a9c",
        "provenance": {
            "versions": {"python": "3.11.9", "rd_interp": "0.2.0", "torch": "2.3.0", "numpy": "1.26.4",
                         "goatools": "1.6.7", "matplotlib": "3.8.4"},
            "config": {"data": {"fasta": "data/proteins/eval.fasta.gz", "max_length": 1022},
                       "distill": {"mode": "chain", "regressor": "pcr", "alpha": 1.0,
                                   "fasta": "data/proteins/train_pool.fasta.gz"},
                       "sae": {"architecture": "topk", "n_latents": N_LATENTS, "k_ratio": K_RATIO, "seeds": SEEDS,
                               "block_scaling": "per_block", "lr": None},
                       "enrich": {"alpha": 0.05, "top_n": 50, "general_level": 2, "correction": "global",
                                  "n_permutations": N_PERM, "null_strata": "length",
                                  "docs_url": "https://example.org/should-not-be-a-link"},
                       "report": {"confidence": LEVEL}, "device": "auto"},
            "data_checksums": {"data/proteins/eval.fasta.gz": "a" * 64, "data/go/go.obo.gz": "0123abcd" * 8},
            "seeds": SEEDS,
            "device": "cpu (2 threads)",
            "timings": {"embed": 312.4, "distill": 4.21, "sae": 1843.0, "enrich": 95.7, "report": 3.3},
            "command": "rd-interp run configs/demo.toml --device auto",
        },
        "definitions": dict(DEFINITIONS),
        "family": [
            {"name": "mini-S", "layers": 4, "dim": 64, "params": 215_360, "tokens_seen": 125_000_000,
             "heldout_ppl": 15.84, "probe_macro_auroc": {"BP": 0.689, "MF": 0.722, "CC": 0.694}},
            {"name": "mini-L", "layers": 6, "dim": 96, "params": 688_224, "tokens_seen": None,
             "heldout_ppl": 14.07, "probe_macro_auroc": {"BP": 0.712, "MF": 0.745, "CC": 0.718}},
        ],
        "headline": headline,
        "verdicts": [_verdict(c) for c in comparisons],
        "comparisons": comparisons,
        "coverage": coverage,
        "specificity": specificity,
        "attribution": attribution,
        "strata": strata,
        "distillation": [{
            "step": "rd:mini-S->mini-L", "regressor": "pcr", "k_small": 64, "k_large": 96, "n_samples": 336_229,
            "n_significant_pcs": 36, "sigma_sq": 0.0123, "threshold": 0.01246, "r2": 0.8123,
            "r2_variance_weighted": 0.9689, "residual_variance_fraction": 0.0311,
            "residual_explained_variance_ratio": ratio.round(6).tolist(),
            "fit_set": "train_pool (disjoint from the analysis set)", "n_fit_proteins": 1000,
        }],
        "leakage": [
            {"step": "rd:mini-S->mini-L", "regressor": "pcr", "evaluated_on": "analysis set (not fitted on)",
             "n_rows": 994_243, "residual_predictable_share": 0.412,
             "canonical_correlations": [0.83, 0.71, 0.55, 0.42, 0.31, 0.22, 0.15, 0.09],
             "r2_large_from_small_vw": 0.953, "r2_large_from_small_mean": 0.801, "r2_large_from_rd_vw": 0.991,
             "r2_large_from_rd_mean": 0.957},
            {"step": "rd:mini-S->mini-L", "regressor": "linear", "evaluated_on": "analysis set (not fitted on)",
             "n_rows": 994_243, "residual_predictable_share": 0.021,
             "canonical_correlations": [0.19, 0.12, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01],
             "r2_large_from_small_vw": 0.955, "r2_large_from_small_mean": 0.803, "r2_large_from_rd_vw": 0.989,
             "r2_large_from_rd_mean": 0.951},
        ],
        "probes": {
            "task": "one L2 logistic regression per GO term (standardised mean-pooled features); macro AUROC over "
                    "the terms of each namespace on held-out proteins, averaged over namespaces; interval: "
                    "bootstrap over the held-out proteins, paired across feature sets",
            "n_terms": {"BP": 40, "MF": 40, "CC": 25}, "n_proteins": 3000, "level": LEVEL, "rows": probe_rows,
            "truncation": truncation,
            "large_at_equal_width": {"width": 96, "rd": 0.727, "large": 0.724, "diff": 0.003, "lo": -0.004,
                                     "hi": 0.010},
        },
        "sae_quality": quality,
        "top_latents": top,
        "notes": ["Shipped mini family, not real ESM-2: numbers illustrate the method only.",
                  ("3 SAE seeds per space: the exact seed-label permutation test cannot reach p < 0.05 with fewer "
                   "than 4 + 4 seeds; the verdicts rely on Welch's t. Use >= 5 seeds for claims.")],
    }
    if evil:
        summary["top_latents"][0]["top_proteins"][0]["id"] = EVIL_PROTEIN
        summary["top_latents"][0]["best_terms"][0]["name"] = EVIL_GO_NAME
        summary["notes"].append("<script>alert('note')</script>")
        summary["provenance"]["config"]["data"]["fasta"] = "x</code><script>alert(1)</script>.fa"
        summary["verdicts"].append({"text": EVIL_VERDICT, "supported": False})
        summary["definitions"][EVIL_DEFINITION[0]] = EVIL_DEFINITION[1]
        summary["probes"]["task"] += " <script>alert('probe')</script>"
    return summary
