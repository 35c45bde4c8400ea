"""Gather a finished run's stage outputs into the report's summary dict (schema: rd_interp.report.schema).

Everything here is read back from the stage directories, never from wall clocks, so the same config and
seed give an identical summary.json; this execution's timings travel separately as run_info.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rd_interp.enrich.compare import captured_values, rank_test, seed_stats
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.atomic import read_json, sha256_json
from rd_interp.io.provenance import versions
from rd_interp.report.schema import space_label

NAMESPACES = ("BP", "MF", "CC")
SUBSPACE = {"large": "full", "small": "full", "rd": "full", "rd.base": "base", "rd.residual": "residual"}
# Pairs worth a test, when both were run: (a, b) reads "a vs b".
PAIRS = (("rd", "large"), ("rd.residual", "rd.base"), ("large", "small"))


def _labels(pipe, spaces) -> dict[str, tuple[str, str, str]]:
    """space key -> (space name, subspace, figure label)."""
    out = {}
    for key in pipe.cfg.sae.spaces:
        spec = spaces[key][0]
        name = spec.label.split("[")[0]
        sub = SUBSPACE[key]
        out[key] = (name, sub, space_label(name, None if sub == "full" else sub))
    return out


def _spec(summary: dict, ns: str | None) -> dict:
    if ns is None:
        return summary["specificity_terms"]
    return summary["per_namespace"][ns]["specificity_terms"]


def _coverage_rows(key, names, real: list[dict], null: list[dict], n_boot: int, seed: int) -> list[dict]:
    name, sub, _ = names
    rows = []
    for control, sums in (("real", real), ("null", null)):
        if not sums:
            continue
        for ns in (*NAMESPACES, "all"):
            nkey = "total" if ns == "all" else ns
            n_terms = [s["n_terms_captured"][nkey] for s in sums]
            st = seed_stats(n_terms, n_boot=n_boot, seed=seed)
            spec = [_spec(s, None if ns == "all" else ns) for s in sums]

            def mean_of(field: str, spec=spec):
                vals = [x[field] for x in spec if x.get(field) is not None]
                return float(np.mean(vals)) if vals else None

            row = {
                "space": name, "subspace": sub, "control": control, "namespace": ns,
                "n_terms_mean": st["mean"], "n_terms_sd": st["sd"], "n_terms_ci": st["ci"],
                "n_terms_per_seed": [int(v) for v in n_terms],
                "general_fraction_mean": mean_of("fraction_general"),
                "depth_mean": mean_of("depth_mean"), "ic_mean": mean_of("ic_mean"),
            }
            if ns == "all":
                row["latents_with_term_fraction_mean"] = float(np.mean([s["fraction_latents_capturing"]
                                                                        for s in sums]))
                row["terms_per_latent_mean"] = float(np.mean([s["terms_per_latent"]["mean"] for s in sums]))
            rows.append(row)
    return rows


def build_summary(pipe, data, distill, spaces, sae_stages, enrich_stages, checksums) -> dict:
    cfg = pipe.cfg
    e = cfg.enrich
    labels = _labels(pipe, spaces)
    seeds = list(cfg.sae.seeds)
    data_info = read_json(data.dir / "data.json")

    # -- distillation ------------------------------------------------------------------------------------
    dinfo = read_json(distill.dir / "distill.json")
    distillation = [{k: st.get(k) for k in ("step", "k_small", "k_large", "n_samples", "n_significant_pcs",
                                            "sigma_sq", "threshold", "r2", "residual_explained_variance_ratio",
                                            "regressor", "residual_variance_fraction")}
                    for st in dinfo["steps"]]

    # -- SAE quality -------------------------------------------------------------------------------------
    sae_quality = []
    for (key, seed), st in sae_stages.items():
        m = read_json(st.dir / "metrics.json")
        c = read_json(st.dir / "sae" / "cfg.json")
        name, sub, _ = labels[key]
        sae_quality.append({"space": name, "subspace": sub, "seed": seed, "architecture": c.get("architecture"),
                            "n_latents": c.get("n_latents"), "k": c.get("k"), "fvu": m.get("fvu"),
                            "mse": m.get("mse"), "cosine": m.get("cosine"), "l0": m.get("l0"),
                            "dead_fraction": m.get("dead_fraction"), "dense_fraction": m.get("dense_fraction")})

    # -- coverage, specificity, attribution ---------------------------------------------------------------
    coverage, specificity, attribution, strata, top_latents = [], {}, {}, [], []
    results: dict[str, list[EnrichmentResult]] = {}
    null_notes = []
    for key in cfg.sae.spaces:
        real, null, res = [], [], []
        for seed in seeds:
            d = enrich_stages[key, seed].dir
            info = read_json(d / "enrich.json")
            real.append(info["real"])
            null.extend(info.get("null", []))
            res.append(EnrichmentResult.load(d / "real"))
        results[key] = res
        coverage += _coverage_rows(key, labels[key], real, null, e.bootstrap, cfg.seed)
        label = labels[key][2]
        specificity[label] = {f: [float(v) for v in captured_values(res, f)] for f in ("depth", "ic", "level")}
        strata += _strata_rows(labels[key][0], real)
        if key == "rd":
            shares, counts = [], []
            for seed, r in zip(seeds, res):
                share = np.load(enrich_stages[key, seed].dir / "decoder_share.npy", allow_pickle=False)
                shares += share.tolist()
                counts += _terms_per_latent(r, len(share)).tolist()
            attribution[label] = {"base_share": shares, "n_terms": counts}
        if key in ("large", "rd"):
            top_latents += _top_latents(labels[key][0], seeds[0], res[0],
                                        enrich_stages[key, seeds[0]].dir, cfg.report.top_latents)

    # -- comparisons ---------------------------------------------------------------------------------------
    comparisons = []
    for a, b in PAIRS:
        if a not in results or b not in results:
            continue
        la, lb = labels[a][2], labels[b][2]
        for field in ("depth", "ic"):
            t = rank_test(captured_values(results[a], field), captured_values(results[b], field))
            comparisons.append({"a": la, "b": lb, "metric": field, "test": "Mann-Whitney U (two-sided), "
                                "captured terms pooled over seeds", "statistic": t["u"], "p": t["p"],
                                "effect": t["rank_biserial"], "n_a": t["n_a"], "n_b": t["n_b"]})
        na = [r.summary()["n_terms_captured"]["total"] for r in results[a]]
        nb = [r.summary()["n_terms_captured"]["total"] for r in results[b]]
        diff = float(np.mean(na) - np.mean(nb))
        comparisons.append({"a": la, "b": lb, "metric": "n_terms", "test": "difference of seed means "
                            f"({len(na)} vs {len(nb)} seeds)", "statistic": diff, "p": None,
                            "effect": diff / float(np.mean(nb)) if np.mean(nb) else None})

    for key in cfg.sae.spaces:
        for seed in seeds:
            nc = read_json(enrich_stages[key, seed].dir / "enrich.json").get("null_control")
            if nc and nc.get("null_to_real_terms_ratio") is not None and nc["null_to_real_terms_ratio"] > 0.1:
                null_notes.append(f"{labels[key][2]} seed {seed}: the label-permuted null captures "
                                  f"{nc['null_to_real_terms_ratio']:.0%} as many terms as the real labels; "
                                  "treat its coverage with caution.")

    rep = data_info["annotation_report"]
    notes = [
        f"Analysis set: {data_info['n_proteins']} proteins, {data_info['n_residues']} residues; "
        f"{data_info['n_without_annotation']} without any GO annotation (outside every background).",
        f"Annotation ids resolved: {rep.get('fraction_resolved', 0):.2%} "
        f"({rep.get('n_alt_mapped', 0)} via alt ids, {rep.get('n_obsolete_replaced', 0)} via replaced_by, "
        f"{rep.get('n_unknown', 0) + rep.get('n_obsolete_dropped', 0)} dropped and counted).",
        f"Distillation fitted on {dinfo['train_proteins']} proteins ({dinfo['train_rows']} residues); "
        "all proteins transformed.",
        f"Enrichment: Fisher's exact test ({e.alternative}), BH "
        f"{'across all latents x terms' if e.correction == 'global' else 'per latent per namespace'}, "
        f"alpha {e.alpha}, min study count {e.min_study_count}; study sets "
        + (f"top {e.top_n} proteins per latent" if e.study_mode == "top_n" else f"score >= {e.tau} x max")
        + f" by {e.pooling}-pooled activation.",
        f"Attribution strata: base-dominated latents have decoder share >= {e.base_share_hi} on the base "
        f"prefix, residual-dominated <= {e.base_share_lo}, the rest mixed.",
        *null_notes,
    ]
    return {
        "title": cfg.report.title,
        "run_id": sha256_json([st.key for st in (*sae_stages.values(), *enrich_stages.values())])[:12],
        "provenance": {"versions": versions(), "config": cfg.to_dict(),
                       "data_checksums": {f"{what}: {p.name}": checksums[what]
                                          for what, p in pipe.input_paths().items()},
                       "seeds": seeds, "device": pipe.device,
                       "command": "rd-interp run (config in provenance)"},
        "distillation": distillation,
        "sae_quality": sae_quality,
        "coverage": coverage,
        "comparisons": comparisons,
        "specificity": specificity,
        "attribution": attribution,
        "strata": strata,
        "top_latents": top_latents,
        "notes": notes,
    }


def _strata_rows(space: str, real: list[dict]) -> list[dict]:
    """Coverage/specificity per attribution stratum, averaged over SAE seeds (counts rounded)."""
    rows = []
    for stratum in ("base", "mixed", "residual"):
        blocks = [s["subspace"][stratum] for s in real if stratum in (s.get("subspace") or {})]
        if not blocks:
            continue

        def mean(vals):
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None

        rows.append({"space": space, "stratum": stratum, "n_seeds": len(blocks),
                     "n_latents": int(round(mean([b["n_latents"] for b in blocks]))),
                     "n_terms": int(round(mean([b["n_terms_captured"]["total"] for b in blocks]))),
                     "depth_mean": mean([b["specificity_terms"]["depth_mean"] for b in blocks]),
                     "ic_mean": mean([b["specificity_terms"]["ic_mean"] for b in blocks])})
    return rows


def _terms_per_latent(result: EnrichmentResult, n_latents: int) -> np.ndarray:
    cap = result.captured()
    counts = np.zeros(n_latents, dtype=np.int64)
    if not cap.empty:
        per = cap.groupby("latent")["go_id"].nunique()
        counts[per.index.to_numpy(dtype=np.int64)] = per.to_numpy()
    return counts


def _top_latents(space: str, seed: int, result: EnrichmentResult, stage_dir: Path, n: int) -> list[dict]:
    """The latents with most captured terms, their best terms and their top-scoring proteins."""
    from rd_interp.pipeline.run import load_scores

    cap = result.captured()
    if cap.empty or n <= 0:
        return []
    padj = "p_adj_global" if result.meta.get("correction") == "global" else "p_adj"
    per = cap.groupby("latent")["go_id"].nunique()
    best_p = cap.groupby("latent")[padj].min()
    order = sorted(per.index, key=lambda lat: (-per[lat], best_p[lat], lat))[:n]
    scores, ids = load_scores(stage_dir)
    csc = scores.tocsc()
    out = []
    for lat in order:
        rows = cap[cap["latent"] == lat].sort_values([padj, "go_id"], kind="stable").head(5)
        col = csc.getcol(int(lat))
        top = np.argsort(-col.data, kind="stable")[:5]
        out.append({
            "space": space, "seed": seed, "latent": int(lat), "n_terms": int(per[lat]),
            "best_terms": [{"go_id": r.go_id, "name": r.name, "namespace": r.namespace, "p_adj": float(getattr(r, padj)),
                            "fold": float(r.fold), "depth": int(r.depth), "ic": float(r.ic)}
                           for r in rows.itertuples()],
            "top_proteins": [{"id": ids[int(col.indices[i])], "score": float(col.data[i])} for i in top],
        })
    return out
