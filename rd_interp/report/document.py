"""The report's content as a neutral list of blocks, rendered by html.py and markdown.py.

Building the content once keeps the HTML and Markdown reports saying exactly the same thing; the two
renderers only decide markup and escaping. Blocks hold raw strings from the summary: escaping is the
renderers' job and happens at the last moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rd_interp.report import fmt
from rd_interp.report.figures import NAMESPACE_ORDER, SPECS, order_spaces

# ------------------------------------------------------------------------------------------ block types


@dataclass(frozen=True)
class Code:
    """Monospace text (GO ids, checksums, command lines)."""

    text: str


@dataclass(frozen=True)
class PValue:
    """A p-value cell: typeset as m × 10^e in HTML, 1.2e-05 in Markdown."""

    p: Any


@dataclass(frozen=True)
class Bold:
    text: str


Span = str | Code | PValue | Bold
Text = Span | list  # a span or a list of spans


@dataclass
class Heading:
    level: int  # 2 = section, 3 = subsection
    text: str
    anchor: str | None = None


@dataclass
class Paragraph:
    text: Text
    css: str | None = None  # "notrun", "caption", "lead"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Text]]
    numeric: list[bool] = field(default_factory=list)  # right-align these columns
    caption: str | None = None
    css: str | None = None


@dataclass
class FigureBlock:
    key: str  # a figures.SPECS key


@dataclass
class BulletList:
    items: list[Text]


Block = Heading | Paragraph | Table | FigureBlock | BulletList

SECTION_TITLES = (
    ("how-to-read", "How to read this report"),
    ("headline", "Headline: coverage and specificity"),
    ("coverage", "GO coverage per namespace"),
    ("specificity", "Specificity of captured terms"),
    ("attribution", "Attribution: base versus residual"),
    ("sae-quality", "SAE quality"),
    ("distillation", "Reverse distillation diagnostics"),
    ("top-latents", "Top latents"),
    ("notes", "Notes"),
    ("provenance", "Provenance"),
)


def _not_run(what: str) -> Paragraph:
    return Paragraph(f"Not run: {what}", css="notrun")


def _s(x: Any) -> str:
    return "" if x is None else str(x)


def _ns_rank(ns: Any) -> tuple[int, str]:
    return (NAMESPACE_ORDER.index(ns), "") if ns in NAMESPACE_ORDER else (len(NAMESPACE_ORDER), _s(ns))


def _order(values: list[Any]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for v in values:
        out.setdefault(v, len(out))
    return out


# ------------------------------------------------------------------------------------------ sections


def _config_value(summary: dict, *suffixes: str) -> Any:
    """First config value whose dotted key ends with one of `suffixes` (enrichment settings for the text)."""
    config = (summary.get("provenance") or {}).get("config") or {}
    for key, val in fmt.flatten(config):
        if any(key == s or key.endswith("." + s) for s in suffixes) and not isinstance(val, (dict, list)):
            return val
    return None


def how_to_read(summary: dict) -> list[Block]:
    alpha = _config_value(summary, "enrich.alpha", "alpha")
    level = _config_value(summary, "enrich.general_level", "general_level")
    top_n = _config_value(summary, "top_n")
    fdr = f"FDR {fmt.value(alpha)}" if alpha is not None else "the chosen FDR"
    study = f"its {fmt.value(top_n)} most strongly activated proteins" if top_n is not None else (
        "its most strongly activated proteins")
    general = f"at GO level {fmt.value(level)} or shallower" if level is not None else "at a shallow GO level"
    return [
        Paragraph([
            "Each space (an embedding, e.g. the large model's own or its reverse-distilled version, and its ",
            Bold("base"), " prefix and ", Bold("residual"),
            (" block) gets sparse autoencoders (SAEs) trained with several seeds. For every SAE latent, "
             f"{study} form a study set that is tested for over-representation of each GO term against all "
             "annotated proteins (one-sided Fisher's exact test; p-values corrected with the Benjamini–Hochberg "
             "(BH) false-discovery-rate procedure across the terms of each latent and namespace). A term is "),
            Bold("captured"), f" when at least one latent is enriched for it at {fdr} (BH-adjusted p).",
        ]),
        BulletList([
            [Bold("Coverage"), (": how many distinct GO terms a space's latents capture, and which fraction of "
                                "latents capture at least one term. More coverage means more biology is readable "
                                "from the latents.")],
            [Bold("Specificity"), (": how deep the captured terms sit in the GO graph (depth = longest path to "
                                   "the root) and their information content (IC, rarer annotations score higher). "
                                   "Higher is more specific, e.g. a particular enzyme activity rather than "
                                   "'binding'.")],
            [Bold("General terms"), (f": captured terms {general} (near the root, e.g. 'cellular process'). A "
                                     "high general fraction means latents mostly recover broad categories.")],
            [Bold("Null control"), (": the same analysis with protein labels permuted (seeded). It shows how many "
                                    "terms are captured by chance; real coverage should be far above it.")],
            [Bold("Confidence intervals"), (" are over SAE seeds, as computed by the pipeline; with few seeds "
                                            "they are wide. p-values are shown in scientific notation.")],
        ]),
    ]


def headline(summary: dict) -> list[Block]:
    rows = summary.get("coverage")
    if not rows:
        return [_not_run("no GO coverage results in this summary (enrichment stage missing).")]
    real = [r for r in rows if r.get("control", "real") == "real"]
    nulls = {(r.get("space"), r.get("subspace"), r.get("namespace")): r for r in rows if r.get("control") == "null"}
    shown = [r for r in real if r.get("namespace") == "all"] or real
    with_ns = any(r.get("namespace") != "all" for r in shown)
    space_rank = _order([r.get("space") for r in rows])
    sub_rank = _order([r.get("subspace") for r in rows])
    shown = sorted(shown, key=lambda r: (space_rank[r.get("space")], sub_rank[r.get("subspace")],
                                         _ns_rank(r.get("namespace"))))
    headers = ["Space", "Subspace"] + (["Namespace"] if with_ns else []) + [
        "Seeds", "GO terms [CI]", "Null GO terms [CI]", "Real ÷ null", "Latents with ≥1 term",
        "Null latents with ≥1 term",
        "Terms per latent", "General terms", "Mean depth", "Mean IC",
    ]
    table_rows = []
    for r in shown:
        n = nulls.get((r.get("space"), r.get("subspace"), r.get("namespace")), {})
        seeds = r.get("n_terms_per_seed")
        table_rows.append(
            [_s(r.get("space")), _s(r.get("subspace"))] + ([_s(r.get("namespace"))] if with_ns else []) + [
                fmt.integer(len(seeds)) if seeds else fmt.MISSING,
                fmt.mean_ci(r.get("n_terms_mean"), r.get("n_terms_ci")),
                fmt.mean_ci(n.get("n_terms_mean"), n.get("n_terms_ci")) if n else "not run",
                _ratio(r.get("n_terms_mean"), n.get("n_terms_mean")),
                fmt.pct(r.get("latents_with_term_fraction_mean")),
                fmt.pct(n.get("latents_with_term_fraction_mean")) if n else "not run",
                fmt.num(r.get("terms_per_latent_mean")),
                fmt.pct(r.get("general_fraction_mean")),
                fmt.num(r.get("depth_mean")),
                fmt.num(r.get("ic_mean")),
            ]
        )
    numeric = [False, False] + ([False] if with_ns else []) + [True] * 10
    blocks: list[Block] = [
        Table(headers, table_rows, numeric, caption=(
            "Means over SAE seeds" + (" (all GO namespaces together)" if not with_ns else "")
            + "; CI = confidence interval over seeds; null = permuted-label control of the same space; "
            "real ÷ null = how many times more terms the real latents capture than chance."
        ), css="headline")
    ]
    comps = summary.get("comparisons")
    blocks.append(Heading(3, "Comparisons between spaces"))
    if comps:
        blocks.append(Table(
            ["A", "B", "Metric", "Test", "Statistic", "p", "Effect"],
            [[_s(c.get("a")), _s(c.get("b")), _s(c.get("metric")), _s(c.get("test")), fmt.num(c.get("statistic")),
              PValue(c.get("p")), fmt.num(c.get("effect"))] for c in comps],
            [False, False, False, False, True, True, True],
            caption="Effect sign: positive means A is larger than B.",
        ))
    else:
        blocks.append(_not_run("no statistical comparisons in this summary."))
    return blocks


def _ratio(real: Any, null: Any) -> str:
    if not isinstance(real, (int, float)) or not isinstance(null, (int, float)):
        return fmt.MISSING
    if null <= 0:
        return "∞" if real > 0 else fmt.MISSING
    return f"{fmt.num(real / null)}×"


def coverage(summary: dict) -> list[Block]:
    rows = summary.get("coverage")
    if not rows:
        return [_not_run("no GO coverage results in this summary.")]
    space_rank = _order([r.get("space") for r in rows])
    sub_rank = _order([r.get("subspace") for r in rows])
    ordered = sorted(rows, key=lambda r: (
        space_rank[r.get("space")], sub_rank[r.get("subspace")], _ns_rank(r.get("namespace")),
        0 if r.get("control", "real") == "real" else 1,
    ))
    table_rows = []
    for r in ordered:
        seeds = r.get("n_terms_per_seed") or []
        sd = r.get("n_terms_sd")
        table_rows.append([
            _s(r.get("space")), _s(r.get("subspace")), _s(r.get("namespace")), _s(r.get("control", "real")),
            fmt.num(r.get("n_terms_mean")) + (f" ± {fmt.num(sd)}" if sd is not None else ""),
            fmt.MISSING if not r.get("n_terms_ci") else
            f"[{fmt.num(r['n_terms_ci'][0])}, {fmt.num(r['n_terms_ci'][1])}]",
            ", ".join(fmt.integer(s) for s in seeds) if seeds else fmt.MISSING,
            fmt.pct(r.get("latents_with_term_fraction_mean")),
            fmt.num(r.get("terms_per_latent_mean")),
            fmt.pct(r.get("general_fraction_mean")),
            fmt.num(r.get("depth_mean")),
            fmt.num(r.get("ic_mean")),
        ])
    return [
        FigureBlock("coverage_namespace"),
        Table(
            ["Space", "Subspace", "Namespace", "Control", "GO terms (mean ± sd)", "CI", "Per seed",
             "Latents with ≥1 term", "Terms per latent", "General terms", "Mean depth", "Mean IC"],
            table_rows, [False] * 4 + [True] * 8,
            caption="All coverage rows: real SAEs and the null control, per namespace.",
        ),
    ]


def specificity(summary: dict) -> list[Block]:
    blocks: list[Block] = []
    spec = summary.get("specificity")
    if spec:
        blocks.append(FigureBlock("specificity"))
        table_rows = []
        for label in order_spaces(summary, spec):
            entry = spec[label]
            depth, ic, level = (_clean(entry.get(k)) for k in ("depth", "ic", "level"))
            table_rows.append([
                _s(label), fmt.integer(len(depth)),
                fmt.num(_median(depth)), fmt.num(_mean(depth)), fmt.num(_median(ic)), fmt.num(_mean(ic)),
                fmt.num(_median(level)),
            ])
        blocks.append(Table(
            ["Space", "Captured terms", "Median depth", "Mean depth", "Median IC", "Mean IC", "Median level"],
            table_rows, [False] + [True] * 6,
            caption="Over the terms captured by each space (pooled over seeds as the pipeline reports them).",
        ))
    else:
        blocks.append(_not_run("no per-term specificity data in this summary."))
    return blocks


def _clean(values: Any) -> list[float]:
    return [float(v) for v in (values or []) if v is not None]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def attribution(summary: dict) -> list[Block]:
    blocks: list[Block] = []
    att = summary.get("attribution")
    if att:
        blocks.append(FigureBlock("attribution"))
        if any(e.get("n_terms") for e in att.values()):
            blocks.append(FigureBlock("coverage_vs_attribution"))
    else:
        blocks.append(_not_run("no per-latent attribution (decoder base share) in this summary."))
    strata = summary.get("strata")
    blocks.append(Heading(3, "Strata by attribution"))
    if strata:
        blocks.append(Table(
            ["Space", "Stratum", "Latents", "GO terms", "Mean depth", "Mean IC"],
            [[_s(r.get("space")), _s(r.get("stratum")), fmt.integer(r.get("n_latents")), fmt.integer(r.get("n_terms")),
              fmt.num(r.get("depth_mean")), fmt.num(r.get("ic_mean"))] for r in strata],
            [False, False, True, True, True, True],
            caption="Latents grouped by where their decoder direction lies: base, residual or mixed (thresholds "
                    "in the notes); latents and GO terms are means over SAE seeds. A block's share of the "
                    "dimensions is the share a random direction would have, so read strata against it.",
        ))
    else:
        blocks.append(_not_run("no attribution strata in this summary."))
    return blocks


def sae_quality(summary: dict) -> list[Block]:
    rows = summary.get("sae_quality")
    if not rows:
        return [_not_run("no SAE quality metrics in this summary.")]
    blocks: list[Block] = [Table(
        ["Space", "Subspace", "Seed", "Architecture", "Latents", "k", "FVU", "MSE", "Cosine", "L0", "Dead", "Dense"],
        [[_s(r.get("space")), _s(r.get("subspace")), fmt.integer(r.get("seed")), _s(r.get("architecture")),
          fmt.integer(r.get("n_latents")), fmt.integer(r.get("k")), fmt.num(r.get("fvu")), fmt.num(r.get("mse")),
          fmt.num(r.get("cosine")), fmt.num(r.get("l0")), fmt.pct(r.get("dead_fraction")),
          fmt.pct(r.get("dense_fraction"))] for r in rows],
        [False, False, True, False] + [True] * 8,
        caption="Held-out reconstruction: FVU = fraction of variance unexplained (lower is better); L0 = mean "
                "active latents per residue; dead = never fired on held-out data; dense = fires on most inputs.",
    )]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("space"), r.get("subspace")), []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        agg = []
        for (space, sub), g in groups.items():
            agg.append([_s(space), _s(sub), fmt.integer(len(g))] + [
                _mean_sd(g, key, pct=key.endswith("_fraction")) for key in ("fvu", "l0", "dead_fraction",
                                                                             "dense_fraction")
            ])
        blocks.append(Table(["Space", "Subspace", "Seeds", "FVU", "L0", "Dead", "Dense"], agg,
                            [False, False] + [True] * 5, caption="Mean ± sd over seeds."))
    return blocks


def _mean_sd(rows: list[dict], key: str, pct: bool) -> str:
    vals = _clean([r.get(key) for r in rows])
    if not vals:
        return fmt.MISSING
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
    f = fmt.pct if pct else fmt.num
    return f(m) + (f" ± {f(sd)}" if sd is not None else "")


def distillation(summary: dict) -> list[Block]:
    rows = summary.get("distillation")
    if not rows:
        return [_not_run("no reverse distillation in this summary.")]
    table_rows = []
    for r in rows:
        ratio = _clean(r.get("residual_explained_variance_ratio"))
        table_rows.append([
            _s(r.get("step")), f"{fmt.integer(r.get('k_small'))} → {fmt.integer(r.get('k_large'))}",
            fmt.integer(r.get("n_samples")), fmt.integer(r.get("n_significant_pcs")), fmt.num(r.get("sigma_sq")),
            fmt.num(r.get("threshold")), fmt.fixed(r.get("r2"), 3),
            fmt.pct(ratio[0]) if ratio else fmt.MISSING,
            fmt.pct(sum(ratio[:10])) if ratio else fmt.MISSING,
        ])
    return [
        Table(
            ["Step", "Dimensions", "Residues", "Significant PCs", "σ²", "Threshold τ", "R²",
             "Residual var. (1st dir.)", "Residual var. (top 10)"],
            table_rows, [False] + [True] * 8,
            caption="PCs of the small embedding above the Johnstone edge τ = σ²(1 + √(k/N))² are kept; R² is the "
                    "share of the large embedding's variance they predict; the residual's leading directions form "
                    "the new block.",
        ),
        FigureBlock("residual_variance"),
    ]


def top_latents(summary: dict) -> list[Block]:
    rows = summary.get("top_latents")
    if not rows:
        return [_not_run("no per-latent GO terms in this summary.")]
    blocks: list[Block] = []
    for r in rows:
        title = f"{_s(r.get('space'))} · seed {fmt.integer(r.get('seed'))} · latent {fmt.integer(r.get('latent'))}"
        if r.get("n_terms") is not None:
            title += f" ({fmt.integer(r.get('n_terms'))} enriched terms)"
        blocks.append(Heading(3, title))
        terms = r.get("best_terms") or []
        if terms:
            blocks.append(Table(
                ["GO id", "Name", "NS", "p (BH)", "Fold", "Depth", "IC"],
                [[Code(_s(t.get("go_id"))), _s(t.get("name")), _s(t.get("namespace")), PValue(t.get("p_adj")),
                  fmt.num(t.get("fold")), fmt.integer(t.get("depth")), fmt.num(t.get("ic"))] for t in terms],
                [False, False, False, True, True, True, True], css="compact",
            ))
        else:
            blocks.append(Paragraph("No enriched GO terms.", css="caption"))
        prots = r.get("top_proteins") or []
        if prots:
            spans: list[Span] = [Bold("Top proteins: ")]
            for i, p in enumerate(prots):
                spans.append(("; " if i else "") + _s(p.get("id")) + f" ({fmt.num(p.get('score'))})")
            blocks.append(Paragraph(spans, css="proteins"))
    return blocks


KNOWN_KEYS = {"title", "run_id", "provenance", "distillation", "sae_quality", "coverage", "comparisons",
              "specificity", "attribution", "strata", "top_latents", "notes"}


def notes(summary: dict) -> list[Block]:
    items = [_s(n) for n in summary.get("notes") or []]
    extra = sorted(k for k in summary if k not in KNOWN_KEYS)
    if extra:
        items.append(f"summary.json also holds sections this report does not draw: {', '.join(extra)}.")
    if not items:
        return [Paragraph("None.", css="caption")]
    return [BulletList(items)]


# Pipeline order for timings: the summary's dict keys are sorted in summary.json, so order is restored here.
STAGE_ORDER = ("load", "data", "embed", "distill", "sae", "encode", "enrich", "null", "compare", "report")


def _stage_rank(stage: str) -> tuple[int, str]:
    head = stage.lower()
    for i, name in enumerate(STAGE_ORDER):
        if head.startswith(name):
            return (i, stage)
    return (len(STAGE_ORDER), stage)


def provenance(summary: dict) -> list[Block]:
    prov = summary.get("provenance")
    if not prov:
        return [_not_run("no provenance recorded in this summary.")]
    blocks: list[Block] = []
    facts: list[list[Text]] = []
    if prov.get("command"):
        facts.append(["Command", Code(_s(prov["command"]))])
    if prov.get("device"):
        facts.append(["Device", _s(prov["device"])])
    if prov.get("seeds") is not None:
        facts.append(["Seeds", ", ".join(_s(s) for s in prov["seeds"]) or fmt.MISSING])
    timings = prov.get("timings") or {}
    if prov.get("wall_seconds") is not None:
        facts.append(["Total wall time", fmt.duration(prov["wall_seconds"])])
    elif timings:
        total = sum(v for v in timings.values() if v is not None)
        facts.append(["Total wall time (sum of stages)", fmt.duration(total)])
    if facts:
        blocks.append(Table(["", ""], facts, [False, False], css="facts"))
    groups: dict[str, list[float]] = {}
    for k in sorted(timings, key=_stage_rank):
        groups.setdefault(k.split("-")[0], []).append(timings[k] or 0.0)
    if any(len(v) > 1 for v in groups.values()):
        blocks.append(Heading(3, "Wall time per stage type"))
        blocks.append(Table(["Stage type", "Jobs", "Wall time", "Seconds"],
                            [[g, fmt.integer(len(v)), fmt.duration(sum(v)), fmt.fixed(sum(v), 2)]
                             for g, v in groups.items()],
                            [False, True, True, True], css="compact"))
    if timings:
        blocks.append(Heading(3, "Wall time per stage"))
        blocks.append(Table(["Stage", "Wall time", "Seconds"],
                            [[_s(k), fmt.duration(timings[k]), fmt.fixed(timings[k], 2)]
                             for k in sorted(timings, key=_stage_rank)],
                            [False, True, True], css="compact"))
    for key, title, header in (("versions", "Versions", ["Package", "Version"]),
                               ("data_checksums", "Data checksums (SHA-256)", ["File", "SHA-256"])):
        block = prov.get(key)
        if block:
            blocks.append(Heading(3, title))
            blocks.append(Table(header, [[_s(k), Code(_s(v)) if key == "data_checksums" else _s(v)]
                                         for k, v in block.items()], [False, False], css="compact"))
    config = prov.get("config")
    if config:
        blocks.append(Heading(3, "Configuration"))
        blocks.append(Table(["Key", "Value"], [[Code(k), fmt.value(v)] for k, v in fmt.flatten(config)],
                            [False, False], css="compact"))
    return blocks or [_not_run("provenance is empty.")]


BUILDERS = {
    "how-to-read": how_to_read,
    "headline": headline,
    "coverage": coverage,
    "specificity": specificity,
    "attribution": attribution,
    "sae-quality": sae_quality,
    "distillation": distillation,
    "top-latents": top_latents,
    "notes": notes,
    "provenance": provenance,
}


def build(summary: dict, figures: set[str]) -> tuple[str, list[str], list[Block]]:
    """(title, subtitle facts, blocks). FigureBlocks whose figure was not drawn are dropped."""
    title = _s(summary.get("title")) or "rd-interp report"
    meta = []
    if summary.get("run_id"):
        meta.append(f"run {summary['run_id']}")
    prov = summary.get("provenance") or {}
    if prov.get("device"):
        meta.append(f"device {prov['device']}")
    if prov.get("seeds"):
        meta.append(f"seeds {', '.join(_s(s) for s in prov['seeds'])}")
    blocks: list[Block] = []
    for anchor, heading in SECTION_TITLES:
        blocks.append(Heading(2, heading, anchor))
        for block in BUILDERS[anchor](summary):
            if isinstance(block, FigureBlock) and block.key not in figures:
                continue
            blocks.append(block)
    return title, meta, blocks


def figure_caption(key: str) -> tuple[str, str]:
    spec = SPECS[key]
    return spec.title, spec.caption
