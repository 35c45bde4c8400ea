"""A realistic synthetic run summary for the report tests (shape of the pipeline's output, made-up numbers)."""

from __future__ import annotations

import numpy as np

EVIL_PROTEIN = '<script>alert("protein")</script>|sp|P0|EVIL_HUMAN'
EVIL_GO_NAME = "<script>alert('go')</script> binding | <img src=x onerror=alert(1)>"
EVIL_SPACE = "rd<b>35M</b>"

SPACES = [("esm2_35M", "full"), ("rd_35M", "full"), ("rd_35M", "base"), ("rd_35M", "residual")]
SEEDS = [0, 1, 2]
GO_NAMES = [
    ("GO:0005524", "ATP binding", "MF"), ("GO:0004672", "protein kinase activity", "MF"),
    ("GO:0006412", "translation", "BP"), ("GO:0005840", "ribosome", "CC"),
    ("GO:0016021", "integral component of membrane", "CC"), ("GO:0003677", "DNA binding", "MF"),
    ("GO:0006355", "regulation of transcription, DNA-templated", "BP"), ("GO:0005739", "mitochondrion", "CC"),
    ("GO:0008270", "zinc ion binding", "MF"), ("GO:0055085", "transmembrane transport", "BP"),
]


def synthetic_summary(seed: int = 0, evil: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    coverage, quality = [], []
    base_terms = {"BP": 420, "MF": 260, "CC": 90}
    for si, (space, sub) in enumerate(SPACES):
        scale = {"full": 1.0, "base": 0.7, "residual": 0.45}[sub] * (1.08 if space.startswith("rd") else 1.0)
        for control in ("real", "null"):
            for ns in ("BP", "MF", "CC", "all"):
                mean = (sum(base_terms.values()) if ns == "all" else base_terms[ns]) * scale
                if control == "null":
                    mean *= 0.04
                per_seed = [int(max(0, round(mean + rng.normal(0, 0.05 * mean + 1)))) for _ in SEEDS]
                m = float(np.mean(per_seed))
                sd = float(np.std(per_seed, ddof=1))
                coverage.append({
                    "space": space, "subspace": sub, "control": control, "namespace": ns,
                    "n_terms_mean": m, "n_terms_sd": sd, "n_terms_ci": [m - 2.5 * sd, m + 2.5 * sd],
                    "n_terms_per_seed": per_seed,
                    "latents_with_term_fraction_mean": (0.42 * scale if control == "real" else 0.02),
                    "terms_per_latent_mean": (3.1 * scale if control == "real" else 0.05),
                    "general_fraction_mean": 0.18 + 0.02 * si if control == "real" else 0.6,
                    "depth_mean": 5.2 + 0.3 * si if control == "real" else 3.1,
                    "ic_mean": 6.8 + 0.25 * si if control == "real" else 3.4,
                })
        for s in SEEDS:
            quality.append({
                "space": space, "subspace": sub, "seed": s, "architecture": "topk", "n_latents": 2048, "k": 32,
                "fvu": float(0.12 + 0.02 * si + rng.normal(0, 0.004)), "mse": float(0.031 + rng.normal(0, 0.001)),
                "cosine": float(0.94 - 0.01 * si), "l0": 32.0, "dead_fraction": float(abs(rng.normal(0.01, 0.005))),
                "dense_fraction": float(abs(rng.normal(0.002, 0.001))),
            })
    specificity, attribution = {}, {}
    for space, sub in SPACES:
        label = f"{space}/{sub}"
        n = int(rng.integers(150, 300))
        depth = rng.integers(2, 14, size=n)
        specificity[label] = {"depth": depth.tolist(), "ic": (depth * 0.9 + rng.normal(0, 1, n)).round(3).tolist(),
                              "level": np.maximum(1, depth - rng.integers(0, 4, size=n)).tolist()}
    for space, sub in SPACES[1:]:
        label = f"{space}/{sub}"
        n_lat = 400
        if sub == "full":
            share = rng.beta(0.6, 0.6, n_lat)
        elif sub == "base":
            share = rng.beta(8, 1, n_lat)
        else:
            share = rng.beta(1, 8, n_lat)
        terms = rng.poisson(1.5 + 4 * share) * (rng.random(n_lat) < 0.5)
        attribution[label] = {"base_share": share.round(4).tolist(), "n_terms": terms.tolist()}
    strata = [{"space": "rd_35M/full", "stratum": st, "n_latents": n, "n_terms": t, "depth_mean": d, "ic_mean": ic}
              for st, n, t, d, ic in (("base", 812, 402, 5.6, 7.1), ("mixed", 771, 388, 5.3, 6.9),
                                      ("residual", 465, 120, 4.9, 6.2))]
    top = []
    for i in range(5):
        terms = []
        for j in range(4):
            go_id, name, ns = GO_NAMES[(i * 3 + j) % len(GO_NAMES)]
            terms.append({"go_id": go_id, "name": name, "namespace": ns, "p_adj": float(10 ** -(20 - 3 * j - i)),
                          "fold": float(12.5 - 2 * j), "depth": 4 + j, "ic": float(5.5 + j)})
        prots = [{"id": f"sp|P{10000 + 37 * i + j}|PROT{j}_HUMAN", "score": float(9.5 - j)} for j in range(6)]
        top.append({"space": SPACES[i % 4][0] + "/" + SPACES[i % 4][1], "seed": i % 3, "latent": 17 + 101 * i,
                    "n_terms": 12 - i, "best_terms": terms, "top_proteins": prots})
    summary = {
        "title": "rd-interp demo: mini-S -> mini-M",
        "run_id": "demo-3f2a9c",
        "provenance": {
            "versions": {"python": "3.11.9", "rd_interp": "0.1.0", "torch": "2.3.0", "numpy": "1.26.4",
                         "goatools": "1.6.7", "matplotlib": "3.8.4"},
            "config": {"data": {"fasta": "data/proteins/eval.fasta.gz", "max_length": 1022},
                       "sae": {"architecture": "topk", "n_latents": 2048, "k": 32, "seeds": SEEDS,
                               "lr": None, "normalize": True},
                       "enrich": {"alpha": 0.05, "top_n": 50, "general_level": 2,
                                  "docs_url": "https://example.org/should-not-be-a-link"},
                       "device": "auto"},
            "data_checksums": {"data/proteins/eval.fasta.gz": "a" * 64, "data/go/go.obo.gz": "0123abcd" * 8},
            "seeds": SEEDS,
            "device": "cpu (2 threads)",
            "timings": {"embed": 312.4, "distill": 4.21, "sae": 1843.0, "enrich": 95.7, "report": 3.3},
            "command": "rd-interp run configs/demo.toml --device auto",
        },
        "distillation": [{
            "step": "mini-S->mini-M", "k_small": 160, "k_large": 320, "n_samples": 1_234_567,
            "n_significant_pcs": 151, "sigma_sq": 0.0123, "threshold": 0.01246, "r2": 0.8123,
            "residual_explained_variance_ratio": (np.sort(rng.dirichlet(np.ones(160) * 0.3))[::-1]).round(6).tolist(),
        }],
        "sae_quality": quality,
        "coverage": coverage,
        "comparisons": [
            {"a": "rd_35M/full", "b": "esm2_35M/full", "metric": "n_terms", "test": "Welch t", "statistic": 5.12,
             "p": 3.2e-4, "effect": 61.0},
            {"a": "rd_35M/full", "b": "esm2_35M/full", "metric": "depth", "test": "Mann-Whitney U",
             "statistic": 40123.0, "p": 1.7e-12, "effect": 0.21},
            {"a": "rd_35M/residual", "b": "rd_35M/base", "metric": "ic", "test": "Mann-Whitney U",
             "statistic": 1234.0, "p": 0.41, "effect": -0.03},
        ],
        "specificity": specificity,
        "attribution": attribution,
        "strata": strata,
        "top_latents": top,
        "notes": ["Shipped mini family, not real ESM-2: numbers illustrate the method only."],
    }
    if evil:
        summary["top_latents"][0]["top_proteins"][0]["id"] = EVIL_PROTEIN
        summary["top_latents"][0]["best_terms"][0]["name"] = EVIL_GO_NAME
        summary["coverage"][0]["space"] = EVIL_SPACE
        summary["notes"].append("<script>alert('note')</script>")
        summary["provenance"]["config"]["data"]["fasta"] = "x</code><script>alert(1)</script>.fa"
    return summary
