"""Gather finished stages into the report's summary dict (schema v2: rd_interp.report.schema).

The input is a list of enrich-stage manifests; everything else is found by walking their recorded inputs
(enrich -> encode -> sae -> store stage -> data), so the same code serves `rd-interp run` and a report
made from stage folders alone. Everything is read back from disk, never from wall clocks, so the same
config and seed give an identical summary.json; timings travel separately as run_info.

Statistics (see rd_interp.enrich.compare): one number per SAE seed; t intervals over seeds ("range" with
two seeds); differences between spaces with a Welch interval, Welch's t and the exact permutation test over
seed labels. The null of a space's coverage is the seed-averaged label-permutation distribution: the i-th
permutation of every seed's SAE averaged into one null draw, so it is on the scale of the seed mean it is
compared with. A comparative sentence ("verdict") is only written with the test that supports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rd_interp.enrich.compare import captured_values, compare_groups, seed_interval
from rd_interp.enrich.coverage import relative_share
from rd_interp.enrich.null import empirical_p
from rd_interp.enrich.result import EnrichmentResult
from rd_interp.io.atomic import read_json, sha256_json
from rd_interp.io.manifest import Manifest
from rd_interp.io.provenance import versions
from rd_interp.report import fmt
from rd_interp.report.config import ReportConfig
from rd_interp.sae.run import load_scores, read_decoder_share, read_metrics

SCHEMA = 2
NAMESPACES = ("BP", "MF", "CC")
# Pairs worth a test, when both were run: (a, b) reads "a vs b".
PAIRS = (("rd", "large"), ("rd.residual", "rd.base"), ("large", "small"), ("rd", "control.naive"),
         ("rd.residual", "control.random"), ("large", "control.untrained"))
METRICS = {  # comparison metric -> (per-seed value from an enrich summary, higher is ...)
    "non-redundant GO terms": lambda s: s["n_terms_nonredundant"]["total"],
    "raw GO terms": lambda s: s["n_terms_captured"]["total"],
    "mean IC of non-redundant terms": lambda s: s["specificity_nonredundant"]["ic_mean"],
    "mean depth of non-redundant terms": lambda s: s["specificity_nonredundant"]["depth_mean"],
    "general fraction of non-redundant terms": lambda s: s["specificity_nonredundant"]["fraction_general"],
}

DEFINITIONS = {
    "captured": "a GO term is captured by a latent when its BH-adjusted p < alpha, at least min_study_count of the "
                "latent's study proteins carry it and it is over-represented (fold > 1)",
    "BH family": "'global': one Benjamini-Hochberg family per SAE and namespace over all latents x terms (so SAEs "
                 "of different size are not favoured by per-latent correction); 'per_latent': one family per "
                 "latent and namespace (goatools GOEnrichmentStudyNS)",
    "raw terms": "distinct GO terms captured by any latent of the SAE (every propagated ancestor counts)",
    "non-redundant terms": "distinct GO terms left after removing, within each latent, every captured term that has a "
                           "captured descendant (is_a/part_of) in the same latent: each latent's most specific terms; "
                           "the headline count",
    "best terms": "distinct GO terms among the latents' single most significant terms",
    "interval": "mean over SAE seeds with a Student t interval (n - 1 degrees of freedom); with 2 seeds the range "
                "of the two values; with 1 seed none",
    "null distribution": "the same study sets tested against protein -> annotation labels permuted (within "
                         "protein-length bins by default), n_permutations times per SAE; the i-th permutation of "
                         "every seed is averaged into one draw of the seed mean",
    "empirical p": "(1 + number of null draws >= the real value) / (1 + number of draws), one-sided",
    "comparison": "difference of seed means with a Welch (Satterthwaite) interval and Welch's t test; the exact "
                  "permutation test over seed labels enumerates every relabelling (its smallest attainable p "
                  "is shown: with 3 + 3 seeds it is 0.1)",
    "general term": "a GO term at level <= general_level (shortest is_a path to its namespace root)",
    "IC": "information content -log p(term) with term frequencies from the analysis set's propagated annotations "
          "(goatools TermCounts over the proteins analysed)",
    "depth": "longest is_a path from the term to its namespace root (goatools)",
    "relative decoder share": "r = (s - f)/(1 - f) if s >= f else (s - f)/f, with s the latent's decoder share on "
                              "the base block (in the SAE's input scaling) and f the base block's share of the "
                              "input dimensions: 0 = spread like a random direction, +1 base only, -1 residual only",
    "size-matched SAEs": "every space's SAE has the same number of latents and the same sparsity ratio k / d_in",
    "strata": "latents grouped by relative decoder share r: base (r >= margin), residual (r <= -margin), mixed "
              "(otherwise); coverage and specificity are then counted within each group",
}
# distill.json leakage keys -> summary leakage row keys
LEAKAGE_KEYS = {"residual_predictable_share": "residual_predictable_share",
                "canonical_correlations": "canonical_correlations",
                "r2_large_from_small_variance_weighted": "r2_large_from_small_vw",
                "r2_large_from_small_per_dim_mean": "r2_large_from_small_mean",
                "r2_large_from_rd_variance_weighted": "r2_large_from_rd_vw",
                "r2_large_from_rd_per_dim_mean": "r2_large_from_rd_mean"}


@dataclass
class Space:
    """One analysed space: its key (large, rd, ...), name, subspace and the stages of each seed."""

    key: str
    name: str
    subspace: str
    label: str
    enrich: dict[int, Manifest] = field(default_factory=dict)
    encode: dict[int, Manifest] = field(default_factory=dict)
    sae: dict[int, Manifest] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "control" if self.key.startswith("control.") else "space"


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
        sub = "control" if key.startswith("control.") else (rest.rstrip("]") or "full")
        sp = spaces.setdefault(key, Space(key=key, name=name, subspace=sub, label=label))
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


def _stat(values: list[float], level: float) -> dict:
    st = seed_interval(values, level)
    return {"mean": st["mean"], "sd": st["sd"], "lo": st["lo"], "hi": st["hi"], "method": st["method"],
            "per_seed": [float(v) for v in values], "level": level}


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _seed_null(infos: list[dict], metric: str, real_mean: float) -> dict | None:
    """The seed-averaged null of one metric: draw i = mean over seeds of each seed's i-th permutation."""
    nulls = [i["null"]["metrics"][metric]["null"] for i in infos if i.get("null")]
    if not nulls or len(nulls) != len(infos) or len({len(n) for n in nulls}) != 1 or not nulls[0]:
        return None
    draws = np.mean(np.asarray(nulls, dtype=np.float64), axis=0)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"method": infos[0]["null"]["method"], "n_permutations": int(draws.size), "mean": float(draws.mean()),
            "lo": float(lo), "hi": float(hi), "p": empirical_p(real_mean, draws)}


def _spec(s: dict, ns: str | None, which: str = "specificity_nonredundant") -> dict:
    return s[which] if ns is None else s["per_namespace"][ns][which]


def _coverage_rows(sp: Space, reals: list[dict], infos: list[dict], level: float) -> list[dict]:
    rows = []
    for ns in (*NAMESPACES, "all"):
        key = "total" if ns == "all" else ns
        nonred = [s["n_terms_nonredundant"][key] for s in reals]
        spec = [_spec(s, None if ns == "all" else ns) for s in reals]
        row = {"space": sp.name, "subspace": sp.subspace, "label": sp.label, "kind": sp.kind, "namespace": ns,
               "nonredundant": _stat(nonred, level),
               "raw": _stat([s["n_terms_captured"][key] for s in reals], level),
               "general_fraction": _mean([x["fraction_general"] for x in spec]),
               "depth_mean": _mean([x["depth_mean"] for x in spec]), "ic_mean": _mean([x["ic_mean"] for x in spec]),
               "null": _seed_null(infos, "n_terms_nonredundant", float(np.mean(nonred))) if ns == "all" else None}
        rows.append(row)
    return rows


def _verdicts(spaces: dict[str, Space], comps: list[dict], heads: dict[str, dict]) -> list[dict]:
    """Sentences a reader can trust, each carrying its test; unsupported claims are said plainly."""
    out = []
    for c in comps:
        if c["metric"] not in ("non-redundant GO terms", "mean IC of non-redundant terms"):
            continue
        a, b = c["a"], c["b"]
        what = "non-redundant GO terms" if c["metric"] == "non-redundant GO terms" else "more specific GO terms (mean IC)"
        lo, hi, p = c.get("lo"), c.get("hi"), c.get("p_welch")
        test = (f"difference {fmt.signed(c['diff'])} {fmt.interval(lo, hi)}, Welch p = {fmt.pvalue(p)}, "
                f"seed-permutation p = {fmt.pvalue(c['p_permutation'])} (smallest attainable "
                f"{fmt.pvalue(c['min_p_permutation'])}; {c['n_a']} vs {c['n_b']} seeds)" if lo is not None and p is not None
                else f"difference {fmt.signed(c['diff'])} ({c['n_a']} vs {c['n_b']} seeds: too few for a test)")
        supported = lo is not None and p is not None and p < 0.05 and (lo > 0 or hi < 0)
        if supported:
            direction = "more" if c["diff"] > 0 else "fewer"
            noun = what if c["metric"] == "non-redundant GO terms" else "specific GO terms (mean IC)"
            text = f"{a} latents capture {direction} {noun} than {b} latents: {test}."
            if c["metric"] == "non-redundant GO terms":
                ha = heads.get(a, {}).get("null")
                if ha and ha["p"] >= 0.05:
                    text += (f" Caution: {a}'s coverage is not above its label-permutation null "
                             f"(p = {fmt.pvalue(ha['p'])}).")
        else:
            text = f"The data do not show that {a} and {b} latents differ in {what}: {test}."
        out.append({"text": text, "supported": bool(supported)})
    return out


def _probe_verdict(probes: dict | None) -> list[dict]:
    """The equal-width probe comparison (rd prefix vs the large model at the same width), as a sentence."""
    eq = (probes or {}).get("large_at_equal_width")
    if not eq or eq.get("lo") is None or eq.get("hi") is None:
        return []
    test = (f"macro AUROC {fmt.fixed(eq['rd'], 3)} vs {fmt.fixed(eq['large'], 3)}, paired difference "
            f"{fmt.signed(eq['diff'])} {fmt.interval(eq['lo'], eq['hi'])} (bootstrap over held-out proteins)")
    if eq["lo"] > 0 or eq["hi"] < 0:
        better = "more" if eq["diff"] > 0 else "less"
        return [{"text": f"At equal width ({eq['width']} dims), linear probes read {better} GO function from the rd "
                         f"embedding than from the large model's: {test}.", "supported": True}]
    return [{"text": f"The data do not show that linear probes read more or less GO function from the rd embedding "
                     f"than from the large model's at equal width ({eq['width']} dims): {test}.",
             "supported": False}]


def build_summary(enrich: list[Manifest], cfg: ReportConfig, *, seed: int = 0, config: dict | None = None,
                  device: str | None = None, command: str = "rd-interp report (from stage folders)",
                  extra: dict | None = None) -> dict:
    """The report's summary of the given enrich stages (and everything upstream of them).

    `extra`: sections other stages contribute (e.g. "probes", "family"), copied in as they are.
    """
    if not enrich:
        raise ValueError("no enrichment results to report")
    level = cfg.confidence
    spaces, data, distill = collect(enrich)
    seeds = sorted({s for sp in spaces.values() for s in sp.enrich})
    first = enrich[0]
    e = first.config
    pooling = first.input("scores").config.get("pooling", "max")

    distillation, leakage = [], []
    dinfo = None
    if distill is not None:
        dinfo = read_json(distill.path("distill.json"))
        for st in dinfo["steps"]:
            row = {k: st.get(k) for k in ("step", "k_small", "k_large", "n_samples", "n_significant_pcs", "sigma_sq",
                                          "threshold", "r2", "r2_variance_weighted",
                                          "residual_explained_variance_ratio", "regressor",
                                          "residual_variance_fraction")}
            if dinfo.get("fit_set") is not None:
                row.update(fit_set=dinfo["fit_set"], n_fit_proteins=dinfo.get("train_proteins"))
            distillation.append(row)
        leak = dinfo.get("leakage") or {}
        for st in leak.get("steps") or []:
            leakage.append({"step": st.get("step"), "regressor": st.get("regressor"),
                            "evaluated_on": leak.get("rows"), "n_rows": st.get("n_rows"),
                            **{new: st.get(old) for old, new in LEAKAGE_KEYS.items()}})

    sae_quality = []
    for sp in spaces.values():
        for s in sorted(sp.sae):
            st = sp.sae[s]
            m = read_metrics(st)
            c = read_json(st.path("sae/cfg.json"))
            sae_quality.append({"space": sp.name, "subspace": sp.subspace, "label": sp.label, "seed": s,
                                "architecture": c.get("architecture"), "d_in": c.get("d_in"),
                                "n_latents": c.get("n_latents"), "k": c.get("k"), "fvu": m.get("fvu"),
                                "mse": m.get("mse"), "cosine": m.get("cosine"), "l0": m.get("l0"),
                                "dead_fraction": m.get("dead_fraction"), "dense_fraction": m.get("dense_fraction"),
                                "block_scaling": bool(st.result.get("block_scaling")),
                                "untrained": bool(st.result.get("untrained"))})

    headline, coverage, specificity, attribution, strata, top_latents = [], [], {}, {}, [], []
    per_seed: dict[str, list[dict]] = {}
    heads: dict[str, dict] = {}
    for key, sp in spaces.items():
        seeds_sp = sorted(sp.enrich)
        infos = [read_json(sp.enrich[s].path("enrich.json")) for s in seeds_sp]
        reals = [i["real"] for i in infos]
        per_seed[key] = reals
        res = [EnrichmentResult.load(sp.enrich[s].path("real")) for s in seeds_sp]
        sae0 = sp.sae[seeds_sp[0]].result
        nonred = [s["n_terms_nonredundant"]["total"] for s in reals]
        spec = [s["specificity_nonredundant"] for s in reals]
        head = {"space": sp.name, "subspace": sp.subspace, "label": sp.label, "kind": sp.kind,
                "d_in": sae0.get("d_in"), "n_latents": sae0.get("n_latents"), "k": sae0.get("k"),
                "n_seeds": len(seeds_sp), "nonredundant": _stat(nonred, level),
                "raw": _stat([s["n_terms_captured"]["total"] for s in reals], level),
                "best_terms": _stat([s["n_best_terms"] for s in reals], level),
                "latent_fraction": _stat([s["fraction_latents_capturing"] for s in reals], level),
                "null": _seed_null(infos, "n_terms_nonredundant", float(np.mean(nonred))),
                "general_fraction": _mean([x["fraction_general"] for x in spec]),
                "depth_mean": _mean([x["depth_mean"] for x in spec]), "ic_mean": _mean([x["ic_mean"] for x in spec])}
        headline.append(head)
        heads[sp.label] = head
        coverage += _coverage_rows(sp, reals, infos, level)
        specificity[sp.label] = {f: [float(v) for v in captured_values(res, f, nonredundant=True)]
                                 for f in ("depth", "ic", "level")}
        strata += _strata_rows(sp.name, reals)
        shares = [read_decoder_share(sp.encode[s]) for s in seeds_sp]
        if shares and all(x is not None for x in shares):
            f = float(sp.encode[seeds_sp[0]].result["base_fraction"])
            counts = []
            for share, r in zip(shares, res):
                counts += _terms_per_latent(r, len(share)).tolist()
            allshare = np.concatenate(shares)
            attribution[sp.label] = {"base_share": [float(v) for v in allshare],
                                     "relative_share": [float(v) for v in relative_share(allshare, f)],
                                     "n_terms": counts, "base_fraction": f, "margin": float(e["stratum_margin"]),
                                     "scaling": "per-block input scaling" if sp.sae[seeds_sp[0]].result.get(
                                         "block_scaling") else "one global input scale"}
        if key in ("large", "rd"):
            top_latents += _top_latents(sp.name, seeds_sp[0], res[0], sp.encode[seeds_sp[0]], cfg.top_latents)

    comparisons = []
    for a, b in PAIRS:
        if a not in spaces or b not in spaces:
            continue
        for metric, get in METRICS.items():
            va = [get(s) for s in per_seed[a]]
            vb = [get(s) for s in per_seed[b]]
            if any(v is None for v in va + vb):
                continue
            c = compare_groups(va, vb, level)
            comparisons.append({"a": spaces[a].label, "b": spaces[b].label, "metric": metric, "diff": c["diff"],
                                "lo": c["lo"], "hi": c["hi"], "relative": c["relative"], "p_welch": c["p"],
                                "p_permutation": c["p_permutation"], "min_p_permutation": c["min_p_permutation"],
                                "n_a": c["n_a"], "n_b": c["n_b"], "level": level,
                                "test": "Welch t on per-seed values; exact permutation of seed labels"})

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
        where = dinfo.get("fit_set", "the analysis set")
        notes.append(f"Distillation fitted on {dinfo['train_proteins']} proteins ({dinfo['train_rows']} residues) of "
                     f"{where}; all analysed proteins transformed.")
    notes += [
        f"Enrichment: Fisher's exact test ({e['alternative']}), BH "
        f"{'per namespace across all latents x terms of each SAE' if e['correction'] == 'global' else 'per latent per namespace'}, "
        f"alpha {e['alpha']}, min study count {e['min_study_count']}; study sets "
        + (f"top {e['top_n']} proteins per latent" if e["mode"] == "top_n" else f"score >= {e['tau']} x max")
        + f" by {pooling}-pooled activation.",
        *_seed_notes(seeds),
    ]
    stage_keys = ([sp.sae[s].key for sp in spaces.values() for s in sorted(sp.sae)]
                  + [sp.enrich[s].key for sp in spaces.values() for s in sorted(sp.enrich)])
    summary = {
        "schema": SCHEMA,
        "title": cfg.title,
        "run_id": sha256_json(stage_keys)[:12],
        "provenance": {"versions": versions(), "config": config or {}, "data_checksums": data_checksums,
                       "seeds": seeds, "device": device, "command": command},
        "definitions": {**DEFINITIONS, **{f"leakage: {k}": v for k, v in
                                          ((dinfo or {}).get("leakage") or {}).get("definitions", {}).items()}},
        "headline": headline,
        "verdicts": _verdicts(spaces, comparisons, heads),
        "comparisons": comparisons,
        "coverage": coverage,
        "specificity": specificity,
        "attribution": attribution,
        "strata": strata,
        "distillation": distillation,
        "leakage": leakage,
        "sae_quality": sae_quality,
        "top_latents": top_latents,
        "notes": notes,
    }
    summary.update(extra or {})
    summary["verdicts"] = summary["verdicts"] + _probe_verdict(summary.get("probes"))
    return summary


def _seed_notes(seeds: list[int]) -> list[str]:
    if len(seeds) < 3:
        return [f"Only {len(seeds)} SAE seed(s): intervals are ranges, not t intervals, and no difference between "
                "spaces can be tested; run >= 5 seeds for claims."]
    if len(seeds) < 5:
        return [f"{len(seeds)} SAE seeds per space: the exact seed-label permutation test cannot reach p < 0.05 with "
                "fewer than 4 + 4 seeds; the verdicts rely on Welch's t. Use >= 5 seeds for claims."]
    return []


def _strata_rows(space: str, real: list[dict]) -> list[dict]:
    """Coverage/specificity per attribution stratum, averaged over SAE seeds (counts rounded)."""
    rows = []
    for stratum in ("base", "mixed", "residual"):
        blocks = [s["subspace"][stratum] for s in real if stratum in (s.get("subspace") or {})]
        if not blocks:
            continue
        rows.append({"space": space, "stratum": stratum, "n_seeds": len(blocks),
                     "n_latents": int(round(_mean([b["n_latents"] for b in blocks]))),
                     "n_terms": int(round(_mean([b["n_terms_nonredundant"]["total"] for b in blocks]))),
                     "depth_mean": _mean([b["specificity_nonredundant"]["depth_mean"] for b in blocks]),
                     "ic_mean": _mean([b["specificity_nonredundant"]["ic_mean"] for b in blocks])})
    return rows


def _terms_per_latent(result: EnrichmentResult, n_latents: int) -> np.ndarray:
    cap = result.captured()
    if "most_specific" in cap.columns:
        cap = cap[cap["most_specific"]]
    counts = np.zeros(n_latents, dtype=np.int64)
    if not cap.empty:
        per = cap.groupby("latent")["go_id"].nunique()
        counts[per.index.to_numpy(dtype=np.int64)] = per.to_numpy()
    return counts


def _top_latents(space: str, seed: int, result: EnrichmentResult, encoded: Manifest, n: int) -> list[dict]:
    """The latents with most non-redundant captured terms, their best terms and their top-scoring proteins."""
    cap = result.captured()
    if "most_specific" in cap.columns:
        cap = cap[cap["most_specific"]]
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
