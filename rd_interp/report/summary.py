"""Gather finished stages into the report's summary dict (schema: rd_interp.report.schema).

The input is a list of enrich-stage manifests; everything else is found by walking their recorded inputs
(enrich -> encode -> sae -> store stage -> data), so the same code serves `rd-interp run` and a report
made from stage folders alone. Everything is read back from disk, never from wall clocks, so the same
config and seed give an identical summary.json; timings travel separately as run_info.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rd_interp.enrich.compare import captured_values, rank_test, seed_stats
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.atomic import read_json, sha256_json
from rd_interp.io.manifest import Manifest
from rd_interp.io.provenance import versions
from rd_interp.report.config import ReportConfig
from rd_interp.report.schema import space_label
from rd_interp.sae.run import load_scores, read_decoder_share, read_metrics

NAMESPACES = ("BP", "MF", "CC")
# Pairs worth a test, when both were run: (a, b) reads "a vs b".
PAIRS = (("rd", "large"), ("rd.residual", "rd.base"), ("large", "small"))


@dataclass
class Space:
    """One analysed space: its key (large, rd, ...), name, subspace and the stages of each seed."""

    key: str
    name: str
    subspace: str
    enrich: dict[int, Manifest] = field(default_factory=dict)
    encode: dict[int, Manifest] = field(default_factory=dict)
    sae: dict[int, Manifest] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return space_label(self.name, None if self.subspace == "full" else self.subspace)


def collect(enrich: list[Manifest]) -> tuple[dict[str, Space], Manifest | None, Manifest | None]:
    """Group enrich stages by space (in first-seen order); find the data and distill stages upstream."""
    spaces: dict[str, Space] = {}
    data = distill = None
    for m in enrich:
        enc = m.input("scores")
        sae = enc.input("sae")
        label = sae.params.get("label") or sae.result.get("label") or "space"
        key = sae.params.get("space") or label
        name, _, rest = label.partition("[")
        sub = rest.rstrip("]") or "full"
        sp = spaces.setdefault(key, Space(key=key, name=name, subspace=sub))
        seed = int(sae.params.get("seed", 0))
        if seed in sp.enrich:
            raise ValueError(f"{m.dir}: two enrichment results for {label} seed {seed}")
        sp.enrich[seed], sp.encode[seed], sp.sae[seed] = m, enc, sae
        if data is None and isinstance(m.inputs.get("data"), dict) and "dir" in m.inputs["data"]:
            data = m.input("data")
        if distill is None and "dir" in sae.inputs.get("store", {}):
            store = sae.input("store")
            if store.stage == "distill":
                distill = store
    return spaces, data, distill


def _spec(summary: dict, ns: str | None) -> dict:
    if ns is None:
        return summary["specificity_terms"]
    return summary["per_namespace"][ns]["specificity_terms"]


def _coverage_rows(sp: Space, real: list[dict], null: list[dict], n_boot: int, seed: int) -> list[dict]:
    rows = []
    for control, sums in (("real", real), ("null", null)):
        if not sums:
            continue
        for ns in (*NAMESPACES, "all"):
            nkey = "total" if ns == "all" else ns
            n_terms = [s["n_terms_captured"][nkey] for s in sums]
            st = seed_stats(n_terms, n_boot=n_boot, seed=seed)
            spec = [_spec(s, None if ns == "all" else ns) for s in sums]

            def mean_of(name: str, spec=spec):
                vals = [x[name] for x in spec if x.get(name) is not None]
                return float(np.mean(vals)) if vals else None

            row = {
                "space": sp.name, "subspace": sp.subspace, "control": control, "namespace": ns,
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


def build_summary(enrich: list[Manifest], cfg: ReportConfig, *, seed: int = 0, config: dict | None = None,
                  device: str | None = None, command: str = "rd-interp report (from stage folders)") -> dict:
    """The report's summary of the given enrich stages (and everything upstream of them)."""
    if not enrich:
        raise ValueError("no enrichment results to report")
    spaces, data, distill = collect(enrich)
    seeds = sorted({s for sp in spaces.values() for s in sp.enrich})
    first = enrich[0]
    e = first.config
    pooling = first.input("scores").config.get("pooling", "max")

    distillation = []
    dinfo = None
    if distill is not None:
        dinfo = read_json(distill.path("distill.json"))
        distillation = [{k: st.get(k) for k in ("step", "k_small", "k_large", "n_samples", "n_significant_pcs",
                                                "sigma_sq", "threshold", "r2", "residual_explained_variance_ratio",
                                                "regressor", "residual_variance_fraction")}
                        for st in dinfo["steps"]]

    sae_quality = []
    for sp in spaces.values():
        for s in sorted(sp.sae):
            st = sp.sae[s]
            m = read_metrics(st)
            c = read_json(st.path("sae/cfg.json"))
            sae_quality.append({"space": sp.name, "subspace": sp.subspace, "seed": s,
                                "architecture": c.get("architecture"), "n_latents": c.get("n_latents"),
                                "k": c.get("k"), "fvu": m.get("fvu"), "mse": m.get("mse"), "cosine": m.get("cosine"),
                                "l0": m.get("l0"), "dead_fraction": m.get("dead_fraction"),
                                "dense_fraction": m.get("dense_fraction")})

    coverage, specificity, attribution, strata, top_latents = [], {}, {}, [], []
    results: dict[str, list[EnrichmentResult]] = {}
    null_notes = []
    for key, sp in spaces.items():
        real, null, res = [], [], []
        for s in sorted(sp.enrich):
            info = read_json(sp.enrich[s].path("enrich.json"))
            real.append(info["real"])
            null.extend(info.get("null", []))
            res.append(EnrichmentResult.load(sp.enrich[s].path("real")))
            nc = info.get("null_control")
            if nc and nc.get("null_to_real_terms_ratio") is not None and nc["null_to_real_terms_ratio"] > 0.1:
                null_notes.append(f"{sp.label} seed {s}: the label-permuted null captures "
                                  f"{nc['null_to_real_terms_ratio']:.0%} as many terms as the real labels; "
                                  "treat its coverage with caution.")
        results[key] = res
        coverage += _coverage_rows(sp, real, null, cfg.bootstrap, seed)
        specificity[sp.label] = {f: [float(v) for v in captured_values(res, f)] for f in ("depth", "ic", "level")}
        strata += _strata_rows(sp.name, real)
        shares = [read_decoder_share(sp.encode[s]) for s in sorted(sp.encode)]
        if all(x is not None for x in shares) and shares:
            counts = []
            for share, r in zip(shares, res):
                counts += _terms_per_latent(r, len(share)).tolist()
            attribution[sp.label] = {"base_share": [float(v) for x in shares for v in x], "n_terms": counts}
        if key in ("large", "rd"):
            s0 = sorted(sp.enrich)[0]
            top_latents += _top_latents(sp.name, s0, res[0], sp.encode[s0], cfg.top_latents)

    comparisons = []
    for a, b in PAIRS:
        if a not in results or b not in results:
            continue
        la, lb = spaces[a].label, spaces[b].label
        for metric in ("depth", "ic"):
            t = rank_test(captured_values(results[a], metric), captured_values(results[b], metric))
            comparisons.append({"a": la, "b": lb, "metric": metric, "test": "Mann-Whitney U (two-sided), "
                                "captured terms pooled over seeds", "statistic": t["u"], "p": t["p"],
                                "effect": t["rank_biserial"], "n_a": t["n_a"], "n_b": t["n_b"]})
        na = [r.summary()["n_terms_captured"]["total"] for r in results[a]]
        nb = [r.summary()["n_terms_captured"]["total"] for r in results[b]]
        diff = float(np.mean(na) - np.mean(nb))
        comparisons.append({"a": la, "b": lb, "metric": "n_terms", "test": "difference of seed means "
                            f"({len(na)} vs {len(nb)} seeds)", "statistic": diff, "p": None,
                            "effect": diff / float(np.mean(nb)) if np.mean(nb) else None})

    notes = []
    data_checksums = {}
    if data is not None:
        data_info = read_json(data.path("data.json"))
        rep = data_info["annotation_report"]
        data_checksums = {f"{what}: {rec['file']}": rec["sha256"] for what, rec in data.inputs.items()}
        notes += [
            f"Analysis set: {data_info['n_proteins']} proteins, {data_info['n_residues']} residues; "
            f"{data_info['n_without_annotation']} without any GO annotation (outside every background).",
            f"Annotation ids resolved: {rep.get('fraction_resolved', 0):.2%} "
            f"({rep.get('n_alt_mapped', 0)} via alt ids, {rep.get('n_obsolete_replaced', 0)} via replaced_by, "
            f"{rep.get('n_unknown', 0) + rep.get('n_obsolete_dropped', 0)} dropped and counted).",
        ]
    embeds = (list(distill.input("embed")) if distill is not None else []) + [  # truncation is said, not hidden
        sp.sae[s].input("store") for sp in spaces.values() for s in sp.sae if "dir" in sp.sae[s].inputs.get("store", {})]
    cut = max((e for e in embeds if e.stage == "embed"), key=lambda e: e.result.get("n_truncated", 0), default=None)
    if cut is not None and cut.result.get("n_truncated"):
        notes.append(f"{cut.result['n_truncated']} proteins longer than {cut.config.get('max_residues')} residues were "
                     "truncated to their first residues when embedding (models.long_mode = 'truncate').")
    if dinfo is not None:
        notes.append(f"Distillation fitted on {dinfo['train_proteins']} proteins ({dinfo['train_rows']} residues); "
                     "all proteins transformed.")
    notes += [
        f"Enrichment: Fisher's exact test ({e['alternative']}), BH "
        f"{'across all latents x terms' if e['correction'] == 'global' else 'per latent per namespace'}, "
        f"alpha {e['alpha']}, min study count {e['min_study_count']}; study sets "
        + (f"top {e['top_n']} proteins per latent" if e["mode"] == "top_n" else f"score >= {e['tau']} x max")
        + f" by {pooling}-pooled activation.",
        f"Attribution strata: base-dominated latents have decoder share >= {e['base_share_hi']} on the base "
        f"prefix, residual-dominated <= {e['base_share_lo']}, the rest mixed.",
        *null_notes,
    ]
    stage_keys = ([sp.sae[s].key for sp in spaces.values() for s in sorted(sp.sae)]
                  + [sp.enrich[s].key for sp in spaces.values() for s in sorted(sp.enrich)])
    return {
        "title": cfg.title,
        "run_id": sha256_json(stage_keys)[:12],
        "provenance": {"versions": versions(), "config": config or {}, "data_checksums": data_checksums,
                       "seeds": seeds, "device": device, "command": command},
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


def _top_latents(space: str, seed: int, result: EnrichmentResult, encoded: Manifest, n: int) -> list[dict]:
    """The latents with most captured terms, their best terms and their top-scoring proteins."""
    cap = result.captured()
    if cap.empty or n <= 0:
        return []
    padj = "p_adj_global" if result.meta.get("correction") == "global" else "p_adj"
    per = cap.groupby("latent")["go_id"].nunique()
    best_p = cap.groupby("latent")[padj].min()
    order = sorted(per.index, key=lambda lat: (-per[lat], best_p[lat], lat))[:n]
    scores, ids = load_scores(encoded.dir)
    csc = scores.tocsc()
    out: list[dict[str, Any]] = []
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
