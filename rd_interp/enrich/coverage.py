"""Coverage and specificity of the GO terms SAE latents capture (pure functions of an enrichment result).

Coverage: how many distinct GO terms the latents capture (per namespace and total) and how many
latents capture anything. Specificity: level/depth (goatools) and information content of the
captured terms, the share of general terms (level <= general_level). With a per-latent decoder share
on the base prefix of a reverse-distilled space, both are stratified into base-dominated, mixed and
residual-dominated latents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["STRATA", "coverage_summary", "strata"]

STRATA = ("base", "mixed", "residual")


def _spec_stats(df: pd.DataFrame, general_level: int) -> dict:
    if df.empty:
        return {"n": 0, "level_mean": None, "level_median": None, "depth_mean": None, "depth_median": None,
                "ic_mean": None, "ic_median": None, "fraction_general": None}
    return {
        "n": len(df),
        "level_mean": float(df["level"].mean()), "level_median": float(df["level"].median()),
        "depth_mean": float(df["depth"].mean()), "depth_median": float(df["depth"].median()),
        "ic_mean": float(df["ic"].mean()), "ic_median": float(df["ic"].median()),
        "fraction_general": float((df["level"] <= general_level).mean()),
    }


def _block(cap: pd.DataFrame, latents: pd.DataFrame, namespaces, general_level: int) -> dict:
    """Coverage + specificity for one set of latents (`latents` rows) and their captured rows `cap`."""
    tested = _tested_mask(latents, namespaces)
    n_lat = len(latents)
    n_tested = int(tested.sum())
    per_lat = cap.groupby("latent")["go_id"].nunique() if not cap.empty else pd.Series(dtype=np.int64)
    counts = per_lat.reindex(latents.loc[tested, "latent"].to_numpy(), fill_value=0).to_numpy()
    n_cap = int((counts > 0).sum())
    distinct = cap.drop_duplicates("go_id") if not cap.empty else cap
    spec = cap[cap["most_specific"]] if "most_specific" in cap.columns and not cap.empty else cap.iloc[:0]
    distinct_spec = spec.drop_duplicates("go_id") if not spec.empty else spec
    padj = "p_adj_global" if "p_adj_global" in cap.columns else "p_adj"
    best = (cap.sort_values(["latent", padj, "p", "go_id"], kind="stable").groupby("latent").head(1)
            if not cap.empty else cap)
    out = {
        "n_latents": n_lat,
        "n_latents_tested": n_tested,
        "n_latents_capturing": n_cap,
        "fraction_latents_capturing": (n_cap / n_tested) if n_tested else 0.0,
        "n_terms_captured": {
            **{ns: int(cap.loc[cap["namespace"] == ns, "go_id"].nunique()) if not cap.empty else 0
               for ns in namespaces},
            "total": int(cap["go_id"].nunique()) if not cap.empty else 0,
        },
        "n_terms_nonredundant": {
            **{ns: int(spec.loc[spec["namespace"] == ns, "go_id"].nunique()) if not spec.empty else 0
               for ns in namespaces},
            "total": int(spec["go_id"].nunique()) if not spec.empty else 0,
        },
        "n_best_terms": int(best["go_id"].nunique()) if not best.empty else 0,
        "n_latent_term_pairs": len(cap),
        "n_latent_term_pairs_nonredundant": len(spec),
        "terms_per_latent": {
            "mean": float(counts.mean()) if counts.size else 0.0,
            "median": float(np.median(counts)) if counts.size else 0.0,
            "max": int(counts.max()) if counts.size else 0,
            "mean_over_capturing": float(counts[counts > 0].mean()) if n_cap else 0.0,
        },
        "specificity_terms": _spec_stats(distinct, general_level),
        "specificity_pairs": _spec_stats(cap, general_level),
        "specificity_nonredundant": _spec_stats(distinct_spec, general_level),
        "per_namespace": {
            ns: {
                "n_latents_capturing": int(cap.loc[cap["namespace"] == ns, "latent"].nunique()) if not cap.empty else 0,
                "specificity_terms": _spec_stats(
                    distinct[distinct["namespace"] == ns] if not distinct.empty else distinct, general_level),
                "specificity_nonredundant": _spec_stats(
                    distinct_spec[distinct_spec["namespace"] == ns] if not distinct_spec.empty else distinct_spec,
                    general_level),
            }
            for ns in namespaces
        },
    }
    return out


def _tested_mask(latents: pd.DataFrame, namespaces) -> np.ndarray:
    cols = [f"study_n_{ns}" for ns in namespaces if f"study_n_{ns}" in latents.columns]
    if not cols:
        return np.zeros(len(latents), bool)
    return (latents[cols].to_numpy() > 0).any(axis=1)


def relative_share(decoder_share, base_fraction: float) -> np.ndarray:
    """Decoder share on the base block relative to the base block's share of the input dimensions.

    0 = the share a direction spread evenly over the input dimensions has (base_fraction); +1 = entirely on
    the base block; -1 = entirely on the residual block: r = (s - f) / (1 - f) when s >= f, else (s - f) / f.
    Fixed absolute cut-offs (0.8 / 0.2) put almost every latent of a space whose base block holds 2/3 of
    the dimensions in "mixed"; the relative scale puts both blocks on an equal footing.
    """
    share = np.asarray(decoder_share, dtype=np.float64)
    if share.ndim != 1:
        raise ValueError(f"decoder_share must be 1-D (one value per latent), got shape {share.shape}")
    if not np.isfinite(share).all() or (share < 0).any() or (share > 1).any():
        raise ValueError("decoder_share values must lie in [0, 1]")
    f = float(base_fraction)
    if not 0 < f < 1:
        raise ValueError(f"base_fraction must be in (0, 1), got {f}")
    return np.where(share >= f, (share - f) / (1 - f), (share - f) / f)


def strata(decoder_share, base_fraction: float, margin: float = 0.5) -> np.ndarray:
    """'base' (relative share >= margin), 'residual' (<= -margin) or 'mixed' per latent (see relative_share)."""
    r = relative_share(decoder_share, base_fraction)
    out = np.full(r.shape, "mixed", dtype=object)
    out[r >= margin] = "base"
    out[r <= -margin] = "residual"
    return out


def coverage_summary(result, *, decoder_share=None, base_fraction: float | None = None) -> dict:
    """Coverage and specificity of an EnrichmentResult (any object with captured(), latents, config, meta)."""
    cfg = result.config
    namespaces = list(cfg.get("namespaces", ("BP", "MF", "CC")))
    general_level = int(cfg.get("general_level", 2))
    cap = result.captured()
    out = {
        "alpha": cfg.get("alpha"),
        "min_study_count": cfg.get("min_study_count"),
        "general_level": general_level,
        "alternative": result.meta.get("alternative"),
        "correction": result.meta.get("correction"),
        "correction_note": result.meta.get("correction_note"),
        "population": result.meta.get("population"),
        "study_sets": result.meta.get("study_sets"),
        "ic_source": "goatools TermCounts + get_info_content over the analysis-set annotations "
                     f"(relationships={list(cfg.get('relationships', []))})",
        **_block(cap, result.latents, namespaces, general_level),
    }
    if decoder_share is not None:
        if base_fraction is None:
            raise ValueError("decoder_share needs base_fraction (the base block's share of the input dimensions)")
        share = np.asarray(decoder_share, dtype=np.float64)
        lat = result.latents["latent"].to_numpy()
        if share.size <= lat.max(initial=-1):
            raise ValueError(f"decoder_share has {share.size} values but latent ids go up to {lat.max()}")
        margin = float(cfg.get("stratum_margin", 0.5))
        lab = strata(share, base_fraction, margin)[lat]
        sub = {}
        for s in STRATA:
            ids = set(lat[lab == s].tolist())
            sub[s] = _block(cap[cap["latent"].isin(ids)], result.latents[lab == s], namespaces, general_level)
        out["subspace"] = {
            "base_fraction": float(base_fraction),
            "stratum_margin": margin,
            "definition": "relative share r = (s - f)/(1 - f) if s >= f else (s - f)/f, with s the latent's "
                          "decoder share on the base block and f the base block's share of the input "
                          f"dimensions ({base_fraction:.3f}); base-dominated r >= {margin}, residual-dominated "
                          f"r <= -{margin}, else mixed",
            "decoder_share_mean": float(share[lat].mean()) if lat.size else None,
            **sub,
        }
    return out
