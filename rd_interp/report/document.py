"""The report's content as a neutral list of blocks, rendered by html.py and markdown.py.

Building the content once keeps the HTML and Markdown reports saying exactly the same thing; the two
renderers only decide markup and escaping. Blocks hold raw strings from the summary: escaping is the
renderers' job and happens at the last moment.

The report states numbers and how they were made; it never ranks spaces itself. The only comparative
sentences are the summary's ``verdicts``, which the builder writes together with the test behind each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rd_interp.report import fmt
from rd_interp.report.figures import NAMESPACE_NAMES, NAMESPACE_ORDER, SPECS, order_spaces
from rd_interp.report.schema import row_label

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


@dataclass(frozen=True)
class Em:
    text: str


@dataclass(frozen=True)
class Mark:
    """How an interval was made ("t", "range", "n=1"): small and muted after the number it qualifies."""

    text: str


@dataclass(frozen=True)
class Estimate:
    """A number with its interval: the value, then "[lo, hi]" and the method mark on a smaller second line in HTML."""

    value: str
    interval: str = ""
    mark: str | None = None


@dataclass(frozen=True)
class Tag:
    """A short label set apart from the text: tone "control" (a control row), "no" (not supported by the data)."""

    text: str
    tone: str = "control"


Span = str | Code | PValue | Bold | Em | Mark | Estimate | Tag
Text = Span | list  # a span or a list of spans


@dataclass
class Heading:
    level: int  # 2 = section, 3 = subsection
    text: str
    anchor: str | None = None


@dataclass
class Paragraph:
    text: Text
    css: str | None = None  # "notrun", "caption", "lead", "proteins"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Text]]
    numeric: list[bool] = field(default_factory=list)  # right-align these columns
    caption: str | None = None
    css: str | None = None
    groups: dict[int, str] = field(default_factory=dict)  # row index -> divider label shown before that row


@dataclass
class FigureBlock:
    key: str  # a figures.SPECS key


@dataclass
class BulletList:
    items: list[Text]
    classes: list[str | None] = field(default_factory=list)  # per item ("verdict-no", ...)
    css: str | None = None


@dataclass
class DefinitionList:
    items: list[tuple[str, Text]]


Block = Heading | Paragraph | Table | FigureBlock | BulletList | DefinitionList

SECTION_TITLES = (
    ("how-to-read", "How to read this report"),
    ("models", "Models used"),
    ("headline", "Headline: non-redundant GO terms per space"),
    ("comparisons", "Comparisons between spaces"),
    ("coverage", "Coverage per namespace"),
    ("specificity", "Specificity of captured terms"),
    ("attribution", "Attribution and strata"),
    ("decomposition", "Decomposition and leakage"),
    ("probes", "Linear probes"),
    ("sae-quality", "SAE quality"),
    ("top-latents", "Top latents"),
    ("notes", "Notes"),
    ("provenance", "Provenance"),
)

# "How to read" lists the builder's definitions in this order, then any others alphabetically.
DEFINITION_ORDER = (
    "non-redundant terms", "raw terms", "best terms", "captured", "BH family", "size-matched SAEs", "interval",
    "null distribution", "empirical p", "comparison", "general term", "depth", "IC", "relative decoder share",
    "strata",
)

STAT_CAPTION = ("t = {level} Student t interval over SAE seeds; range = the two values of two seeds; n=1 = a single "
                "seed, no interval")


def _not_run(what: str) -> Paragraph:
    return Paragraph(f"Not run: {what}", css="notrun")


def _s(x: Any) -> str:
    return "" if x is None else str(x)


def _stat(st: Any, f=fmt.num) -> Estimate:
    return Estimate(*fmt.stat_parts(st, f))


def _null_cell(null: Any) -> Text:
    if not isinstance(null, dict):
        return fmt.MISSING
    return Estimate(fmt.num(null.get("mean")), fmt.interval(null.get("lo"), null.get("hi")))


def _levels(stats: list[Any]) -> str:
    """The confidence level(s) of some seed statistics as text for a caption ('95%')."""
    levels = sorted({s["level"] for s in stats if isinstance(s, dict) and s.get("method") == "t"
                     and isinstance(s.get("level"), (int, float))})
    return " / ".join(fmt.level(v) for v in levels) or "95%"


def _ns_rank(ns: Any) -> tuple[int, str]:
    return (NAMESPACE_ORDER.index(ns), "") if ns in NAMESPACE_ORDER else (len(NAMESPACE_ORDER), _s(ns))


def _kind_cell(row: dict) -> Text:
    if row.get("kind") == "control":
        return Tag("control")
    return _s(row.get("subspace"))


def _spaces_then_controls(summary: dict, rows: list[dict]) -> tuple[list[dict], dict[int, str]]:
    """Rows in report order, controls after every space behind a divider, so nobody mistakes one for a model."""
    rank = {lab: i for i, lab in enumerate(order_spaces(summary, {row_label(r) for r in rows}))}
    ordered = sorted(rows, key=lambda r: (r.get("kind") == "control", rank[row_label(r)]))
    groups: dict[int, str] = {}
    first_control = next((i for i, r in enumerate(ordered) if r.get("kind") == "control"), None)
    if first_control is not None:
        groups[first_control] = "Controls: the same SAE → GO path; baselines to beat, not candidate models"
    return ordered, groups


def _config_value(summary: dict, key: str) -> Any:
    """The run config's value at dotted `key` (e.g. "enrich.alpha"), or None when the summary lacks it.

    Exact keys only: a bare "alpha" would also match another stage's option (distill.alpha is a ridge penalty).
    """
    config = (summary.get("provenance") or {}).get("config") or {}
    val = dict(fmt.flatten(config)).get(key)
    return None if isinstance(val, (dict, list)) else val


def _null_facts(rows: list[dict]) -> tuple[str, int | None]:
    """(how the null was made, its permutation count) when every row with a null shares them."""
    nulls = [r["null"] for r in rows if isinstance(r.get("null"), dict)]
    methods = {_s(n.get("method")) for n in nulls}
    counts = {n.get("n_permutations") for n in nulls}
    method = methods.pop() if len(methods) == 1 else ""
    count = counts.pop() if len(counts) == 1 else None
    return method, count if isinstance(count, int) else None


# ------------------------------------------------------------------------------------------ how to read


def _size_matching(rows: list[dict]) -> str | None:
    """One sentence on whether the SAEs compared in the headline have the same size and sparsity ratio."""
    sized = [r for r in rows
             if all(isinstance(r.get(k), (int, float)) and r.get(k) for k in ("n_latents", "k", "d_in"))]
    if not sized:
        return None
    latents = sorted({int(r["n_latents"]) for r in sized})
    ratios = [(r["k"] / r["d_in"], 0.5 / r["d_in"]) for r in sized]  # k is rounded to an integer per width
    same_ratio = all(abs(a - b) <= ea + eb + 1e-12 for a, ea in ratios for b, eb in ratios)
    if len(latents) == 1 and same_ratio:
        ratio = sum(a for a, _ in ratios) / len(ratios)
        return (f"every SAE in the headline has {fmt.integer(latents[0])} latents and the same "
                f"sparsity ratio k / d_in ≈ {fmt.num(ratio)} (k rounded per input width): the SAEs are size-matched, "
                "so no space gains captures from having more latents or denser codes.")
    return ("the SAEs in the headline are not size-matched (latents: "
            + ", ".join(fmt.integer(n) for n in latents)
            + "; see the d_in, Latents and k columns): a space with more latents, or a larger k / d_in, can capture "
              "more terms by construction, so compare spaces through the per-latent column with care.")


def _bh_sentence(summary: dict) -> str:
    correction = _config_value(summary, "enrich.correction")
    alpha = _config_value(summary, "enrich.alpha")
    at = f" at FDR {fmt.value(alpha)}" if alpha is not None else ""
    if correction == "global":
        return (f"one Benjamini–Hochberg family per SAE and namespace, over all its latents × "
                f"terms{at}, so an SAE with more latents does not accumulate captures from per-latent correction.")
    if correction == "per_latent":
        return (f"per-latent Benjamini–Hochberg (one family per latent and namespace){at}, as "
                "goatools does. With this choice an SAE with more latents accumulates more captures by "
                "construction; the global family is the one meant for comparisons between spaces.")
    return "Benjamini–Hochberg; the family used is defined under “BH family” below."


def how_to_read(summary: dict) -> list[Block]:
    top_n = _config_value(summary, "enrich.top_n")
    study = (f"its {fmt.value(top_n)} most strongly activated proteins" if top_n is not None
             else "its most strongly activated proteins")
    head = [r for r in summary.get("headline") or [] if isinstance(r, dict)]
    blocks: list[Block] = [Paragraph([
        "Each space (an embedding: the large model's own, its reverse-distilled (rd) version, the rd version's ",
        Bold("base"), " block (the small model's coordinates) and ", Bold("residual"),
        (" block (what the large model adds)) gets sparse autoencoders (SAEs) trained with several seeds. For every "
         f"SAE latent, {study} form a study set that is tested for over-representation of each GO term (one-sided "
         "Fisher's exact test). The question is whether the latents of a space capture more, and more specific, "
         "GO terms than those of the spaces it is compared with and than the controls."),
    ])]
    method: list[Text] = [
        [Bold("Headline count"), (": non-redundant GO terms. Within each latent, a captured term is dropped when a "
                                  "more specific term (an is_a/part_of descendant) is captured by the same latent, "
                                  "so a latent is not credited for every ancestor of what it finds. Raw counts "
                                  "(every propagated ancestor) are shown beside it.")],
        [Bold("Multiple testing"), ": " + _bh_sentence(summary)],
        [Bold("Intervals"), (": over SAE seeds, never over terms. With 3 or more seeds, a Student t interval "
                             "(marked "), Mark("t"), "); with 2 seeds, the range of the two values (marked ",
         Mark("range"), "); with 1 seed, no interval (marked ", Mark("n=1"),
         "). No bootstrap over a handful of seeds."],
    ]
    null_method, n_perm = _null_facts(head)
    if null_method or n_perm:
        what = f"{null_method}" if null_method else "label permutations"
        count = f", {fmt.integer(n_perm)} permutations per SAE" if n_perm else ""
        floor = f" (its smallest possible value is 1/(n + 1) = {fmt.pvalue(1 / (n_perm + 1))})" if n_perm else ""
        method.append([Bold("Null distribution"), (
            f": {what}{count}. Length-stratified permutation is the default because membership of a study set "
            "correlates with protein length, and length with annotation count. The headline shows the null's mean, "
            "its 95% range and the empirical p of the real count" + floor + ".")])
    else:
        method.append([Bold("Null distribution"), (": none in this summary, so the headline cannot show how many "
                                                    "terms label permutations capture by chance.")])
    sizing = _size_matching([r for r in head if r.get("kind") != "control"] or head)
    if sizing:
        method.append([Bold("SAE size"), ": " + sizing])
    controls = [row_label(r) for r in head if r.get("kind") == "control"]
    if controls:
        method.append([Bold("Controls"), (": run through the same SAE → GO path and listed below the “Controls” "
                                          "divider of the headline: " + "; ".join(controls)
                                          + ". Read each space against these, not only against the large model.")])
    elif head:
        method.append([Bold("Controls"), (": none in this summary, so the report cannot show whether the spaces do "
                                          "better than an untrained SAE, a random subspace or a naive PCA of the "
                                          "concatenated embeddings.")])
    method.append([Bold("Verdicts"), (": comparative sentences appear only in the verdicts under the headline, each "
                                      "written with its test (a Welch interval over seeds and an exact seed-label "
                                      "permutation p); a comparison the data do not support is marked as such.")])
    blocks += [Heading(3, "Method in brief"), BulletList(method), Heading(3, "Definitions")]
    defs = summary.get("definitions") or {}
    if defs:
        order = {k: i for i, k in enumerate(DEFINITION_ORDER)}
        keys = sorted(defs, key=lambda k: (order.get(k, len(order)), not k.startswith("leakage"), k))
        blocks.append(DefinitionList([(k, _s(defs[k])) for k in keys]))
    else:
        blocks.append(_not_run("no definitions recorded in this summary."))
    return blocks


# ------------------------------------------------------------------------------------------ models


def models(summary: dict) -> list[Block]:
    family = summary.get("family")
    if not family:
        return [_not_run("no model family description in this summary.")]
    rows = []
    for m in family:
        probe = m.get("probe_macro_auroc") or {}
        rows.append([_s(m.get("name")), fmt.integer(m.get("layers")), fmt.integer(m.get("dim")),
                     fmt.compact(m.get("params")), fmt.compact(m.get("tokens_seen")), fmt.num(m.get("heldout_ppl")),
                     fmt.num(m.get("unigram_ppl")), *(fmt.fixed(probe.get(ns), 3) for ns in ("BP", "MF", "CC"))])
    return [Table(
        ["Model", "Layers", "Width", "Parameters", "Tokens seen", "Held-out perplexity", "Unigram perplexity",
         "Probe AUROC BP", "MF", "CC"],
        rows, [False] + [True] * 9,
        caption="How much biology the embeddings hold before any SAE. Held-out perplexity of the language model "
                "(lower = better) beside the unigram baseline (residue frequencies only) on the same masked "
                "residues; probe AUROC = macro AUROC of linear probes from mean-pooled embeddings to "
                "frequent GO terms per namespace (0.5 = chance). — = not measured.",
    )]


# ------------------------------------------------------------------------------------------ headline


def headline(summary: dict) -> list[Block]:
    rows = [r for r in summary.get("headline") or [] if isinstance(r, dict)]
    blocks: list[Block] = []
    if not rows:
        blocks.append(_not_run("no headline in this summary (enrichment stage missing)."))
    else:
        ordered, groups = _spaces_then_controls(summary, rows)
        table_rows = []
        for r in ordered:
            null = r.get("null") or {}
            table_rows.append([
                row_label(r), _kind_cell(r), fmt.integer(r.get("d_in")), fmt.integer(r.get("n_latents")),
                fmt.integer(r.get("k")), fmt.integer(r.get("n_seeds")),
                _stat(r.get("nonredundant")),
                _null_cell(null) if null else "not run",
                PValue(null.get("p")) if null else fmt.MISSING,
                _stat(r.get("raw")), _stat(r.get("best_terms")), _stat(r.get("latent_fraction"), fmt.pct),
                fmt.pct(r.get("general_fraction")), fmt.num(r.get("depth_mean")), fmt.num(r.get("ic_mean")),
            ])
        null_method, n_perm = _null_facts(rows)
        null_text = ""
        if null_method or n_perm:
            null_text = (" Null: " + (null_method or "label permutations")
                         + (f", {fmt.integer(n_perm)} permutations per SAE (seed-averaged draws)" if n_perm else "")
                         + "; its mean and 95% range; empirical p one-sided"
                         + (f", smallest attainable {fmt.pvalue(1 / (n_perm + 1))}" if n_perm else "") + ".")
        stats = [r.get(k) for r in rows for k in ("nonredundant", "raw", "best_terms", "latent_fraction")]
        blocks.append(Table(
            ["Space", "Kind", "d_in", "Latents", "k", "Seeds", "Non-redundant GO terms", "Null mean [95% range]",
             "Empirical p", "Raw GO terms", "Best terms", "Latents with ≥1 term", "General terms", "Mean depth",
             "Mean IC"],
            table_rows, [False, False] + [True] * 13,
            caption="All GO namespaces together; means over SAE seeds. " + STAT_CAPTION.format(level=_levels(stats))
                    + "." + null_text + " General terms, depth and IC describe the non-redundant terms (means of "
                    "per-seed values). Terms are defined under How to read.",
            css="headline", groups=groups,
        ))
    blocks.append(Heading(3, "Verdicts"))
    verdicts = [v for v in summary.get("verdicts") or [] if isinstance(v, dict)]
    if verdicts:
        items: list[Text] = []
        classes: list[str | None] = []
        for v in verdicts:
            if v.get("supported"):
                items.append(_s(v.get("text")))
                classes.append("verdict-yes")
            else:
                items.append([Tag("not supported by the data", "no"), " ", _s(v.get("text"))])
                classes.append("verdict-no")
        blocks.append(BulletList(items, classes, css="verdicts"))
        blocks.append(Paragraph("Each verdict is written by the summary builder together with its test; the tests "
                                "are in the next section.", css="caption"))
    else:
        blocks.append(Paragraph("No verdicts in this summary: it makes no comparative claim.", css="caption"))
    return blocks


# ------------------------------------------------------------------------------------------ comparisons


def _diff_cell(c: Any, f=fmt.signed) -> Text:
    if not isinstance(c, dict):
        return fmt.MISSING
    return Estimate(f(c.get("diff")), fmt.interval(c.get("lo"), c.get("hi"), f))


def comparisons(summary: dict) -> list[Block]:
    comps = [c for c in summary.get("comparisons") or [] if isinstance(c, dict)]
    if not comps:
        return [_not_run("no statistical comparisons in this summary.")]
    pairs: list[tuple[str, str]] = []
    for c in comps:
        pair = (_s(c.get("a")), _s(c.get("b")))
        if pair not in pairs:
            pairs.append(pair)
    rows: list[list[Text]] = []
    groups: dict[int, str] = {}
    for a, b in pairs:
        groups[len(rows)] = f"A = {a}  ·  B = {b}"
        for c in comps:
            if (_s(c.get("a")), _s(c.get("b"))) != (a, b):
                continue
            rows.append([
                _s(c.get("metric")), _diff_cell(c),
                fmt.signed_pct(c.get("relative")),
                PValue(c.get("p_welch")), PValue(c.get("p_permutation")), PValue(c.get("min_p_permutation")),
                f"{fmt.integer(c.get('n_a'))} / {fmt.integer(c.get('n_b'))}",
            ])
    levels = sorted({c["level"] for c in comps if isinstance(c.get("level"), (int, float))})
    level = " / ".join(fmt.level(v) for v in levels) or "95%"
    tests = sorted({_s(c.get("test")) for c in comps if c.get("test")})
    return [Table(
        ["Metric", "A − B [interval]", "Relative", "Welch p", "Permutation p", "Smallest attainable", "Seeds A / B"],
        rows, [False] + [True] * 6,
        caption=(f"Difference of seed means A − B with its {level} Welch (Satterthwaite) interval; relative = "
                 "(A − B) / B. Welch p: two-sided Welch t test on the per-seed values. Permutation p: exact test "
                 "over every relabelling of the seeds between A and B; its smallest attainable value depends only "
                 "on the seed counts (e.g. 0.1 with 3 + 3 seeds), so with few seeds a large permutation p says "
                 "nothing either way. No interval (—) with fewer than 2 seeds per space."
                 + (" Test: " + "; ".join(tests) + "." if tests else "")),
        groups=groups,
    )]


# ------------------------------------------------------------------------------------------ coverage


def coverage(summary: dict) -> list[Block]:
    rows = [r for r in summary.get("coverage") or [] if isinstance(r, dict)]
    if not rows:
        return [_not_run("no per-namespace GO coverage in this summary.")]
    # All namespaces together is the headline: the table repeats it only when there is no headline.
    in_headline = bool(summary.get("headline")) and any(r.get("namespace") != "all" for r in rows)
    shown = [r for r in rows if not (in_headline and r.get("namespace") == "all")]
    labels = order_spaces(summary, {row_label(r) for r in shown})
    rank = {lab: i for i, lab in enumerate(labels)}
    ordered = sorted(shown, key=lambda r: (_ns_rank(r.get("namespace")), r.get("kind") == "control",
                                           rank[row_label(r)]))
    with_null = any(isinstance(r.get("null"), dict) for r in ordered)
    table_rows: list[list[Text]] = []
    groups: dict[int, str] = {}
    for r in ordered:
        ns = _s(r.get("namespace"))
        if not table_rows or _s(ordered[len(table_rows) - 1].get("namespace")) != ns:
            groups[len(table_rows)] = NAMESPACE_NAMES.get(ns, ns) + (
                f" ({ns})" if ns in NAMESPACE_NAMES and ns != "all" else "")
        null = r.get("null")
        table_rows.append([
            row_label(r), _kind_cell(r), _stat(r.get("nonredundant")),
            *([_null_cell(null), PValue(null.get("p")) if isinstance(null, dict) else fmt.MISSING]
              if with_null else []),
            _stat(r.get("raw")), fmt.pct(r.get("general_fraction")), fmt.num(r.get("depth_mean")),
            fmt.num(r.get("ic_mean")),
        ])
    stats = [r.get(k) for r in shown for k in ("nonredundant", "raw")]
    caption = "Per GO namespace; means over SAE seeds. " + STAT_CAPTION.format(level=_levels(stats)) + "."
    if in_headline:
        caption += " All namespaces together: see the headline."
    if with_null:
        caption += " Null and empirical p where the summary computed them (— otherwise)."
    return [
        FigureBlock("coverage_namespace"),
        Table(
            ["Space", "Kind", "Non-redundant GO terms",
             *(["Null mean [95% range]", "Empirical p"] if with_null else []), "Raw GO terms", "General terms",
             "Mean depth", "Mean IC"],
            table_rows, [False, False] + [True] * (5 + 2 * with_null), caption=caption, groups=groups,
        ),
    ]


# ------------------------------------------------------------------------------------------ specificity


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


def specificity(summary: dict) -> list[Block]:
    spec = summary.get("specificity")
    if not spec:
        return [_not_run("no per-term specificity data in this summary.")]
    table_rows = []
    for label in order_spaces(summary, spec):
        entry = spec[label]
        depth, ic, level = (_clean(entry.get(k)) for k in ("depth", "ic", "level"))
        table_rows.append([
            _s(label), fmt.integer(len(depth)),
            fmt.median(_median(depth)), fmt.num(_mean(depth)), fmt.num(_median(ic)), fmt.num(_mean(ic)),
            fmt.median(_median(level)),
        ])
    return [
        FigureBlock("specificity"),
        Table(
            ["Space", "Distinct terms (pooled)", "Median depth", "Mean depth", "Median IC", "Mean IC", "Median level"],
            table_rows, [False] + [True] * 6,
            caption="Distinct non-redundant captured terms pooled over seeds. Descriptive only: these distributions "
                    "are not used for tests (pooled terms are not independent draws). The per-seed means in the "
                    "headline are what the comparisons test.",
        ),
    ]


# ------------------------------------------------------------------------------------------ attribution


def attribution(summary: dict) -> list[Block]:
    blocks: list[Block] = []
    att = summary.get("attribution")
    defs = summary.get("definitions") or {}
    if att:
        rows = []
        for label in order_spaces(summary, att):
            e = att[label]
            n = len(e.get("relative_share") or e.get("base_share") or [])
            rows.append([_s(label), fmt.integer(n), fmt.pct(e.get("base_fraction")), fmt.num(e.get("margin")),
                         _s(e.get("scaling")) or fmt.MISSING])
        blocks.append(Table(
            ["Space", "Latents (all seeds)", "Base block share of input dims", "Stratum margin", "Input scaling"],
            rows, [False, True, True, True, False], css="compact",
            caption="The base block's share of the input dimensions is the decoder share a random direction would "
                    "have; the relative decoder share measures each latent against it. Decoder shares are taken in "
                    "the SAE's input scaling shown here.",
        ))
        blocks.append(FigureBlock("attribution"))
        if any(e.get("n_terms") for e in att.values()):
            blocks.append(FigureBlock("coverage_vs_attribution"))
    else:
        blocks.append(_not_run("no per-latent attribution (decoder share) in this summary."))
    strata = summary.get("strata")
    blocks.append(Heading(3, "Strata by attribution"))
    if strata:
        definition = defs.get("strata") or defs.get("relative decoder share")
        blocks.append(Table(
            ["Space", "Stratum", "Seeds", "Latents", "Non-redundant GO terms", "Mean depth", "Mean IC"],
            [[_s(r.get("space")), _s(r.get("stratum")), fmt.integer(r.get("n_seeds")), fmt.num(r.get("n_latents")),
              fmt.num(r.get("n_terms")), fmt.num(r.get("depth_mean")), fmt.num(r.get("ic_mean"))] for r in strata],
            [False, False, True, True, True, True, True],
            caption="Latents grouped by their relative decoder share: base-dominated (≥ +margin), "
                    "residual-dominated (≤ −margin), mixed in between. Latents and GO terms are means over SAE "
                    "seeds." + (f" Relative decoder share: {definition}." if definition else ""),
        ))
    else:
        blocks.append(_not_run("no attribution strata in this summary."))
    return blocks


# ------------------------------------------------------------------------------------------ decomposition


def decomposition(summary: dict) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Reverse distillation fit")]
    rows = summary.get("distillation")
    if rows:
        has_vw = any(r.get("r2_variance_weighted") is not None for r in rows)
        fits: list[str] = []
        for r in rows:
            text = _fit_set_text(r.get("fit_set"), r.get("n_fit_proteins"))
            if text not in fits:
                fits.append(text)
        blocks.append(Paragraph([Bold("Fit set. ")] + [" ".join(fits)]))
        table_rows = []
        for r in rows:
            ratio = _clean(r.get("residual_explained_variance_ratio"))
            table_rows.append([
                _s(r.get("step")), _s(r.get("regressor")) or fmt.MISSING,
                f"{fmt.integer(r.get('k_small'))} → {fmt.integer(r.get('k_large'))}",
                fmt.integer(r.get("n_samples")), fmt.integer(r.get("n_significant_pcs")), fmt.num(r.get("sigma_sq")),
                fmt.num(r.get("threshold")), fmt.fixed(r.get("r2"), 3),
                *([fmt.fixed(r.get("r2_variance_weighted"), 3)] if has_vw else []),
                fmt.pct(r.get("residual_variance_fraction")),
                fmt.pct(ratio[0]) if ratio else fmt.MISSING,
                fmt.pct(sum(ratio[:10])) if ratio else fmt.MISSING,
            ])
        blocks += [
            Table(
                ["Step", "Regressor", "Dimensions", "Residues", "Significant PCs", "σ²", "Threshold τ",
                 "R² (mean over dims)", *(["R² (variance-weighted)"] if has_vw else []),
                 "Residual share of variance", "Residual var. (1st dir.)", "Residual var. (top 10)"],
                table_rows, [False, False] + [True] * (10 if has_vw else 9), css="steps",
                caption="PCs of the small embedding above the Johnstone edge τ = σ²(1 + √(k/N))² are kept (PCR). "
                        "R² (mean over dims) averages the R² of each large-embedding dimension: it is not a share of "
                        "variance" + ("; the variance-weighted R² is" if has_vw else "") + ". Residual share of "
                        "variance: the large embedding's total variance left in the residual, whose leading "
                        "directions form the residual block.",
            ),
            FigureBlock("residual_variance"),
        ]
    else:
        blocks.append(_not_run("no reverse distillation in this summary."))
    blocks.append(Heading(3, "Leakage: what the residual block still shares with the small model"))
    leak = summary.get("leakage")
    if leak:
        table_rows = []
        for r in leak:
            cc = _clean(r.get("canonical_correlations"))
            table_rows.append([
                _s(r.get("step")), _s(r.get("regressor")) or fmt.MISSING, _s(r.get("evaluated_on")) or fmt.MISSING,
                fmt.integer(r.get("n_rows")), fmt.pct(r.get("residual_predictable_share")),
                ", ".join(fmt.fixed(v, 3) for v in cc[:3]) + (", …" if len(cc) > 3 else "") if cc else fmt.MISSING,
                fmt.fixed(r.get("r2_large_from_small_vw"), 3), fmt.fixed(r.get("r2_large_from_small_mean"), 3),
                fmt.fixed(r.get("r2_large_from_rd_vw"), 3), fmt.fixed(r.get("r2_large_from_rd_mean"), 3),
            ])
        defs = summary.get("definitions") or {}
        leak_defs = " ".join(f"{k}: {_s(defs[k]).rstrip('.')}." for k in sorted(defs) if k.startswith("leakage"))
        blocks += [
            Table(
                ["Step", "Regressor", "Evaluated on", "Rows", "Residual variance predictable from H_small",
                 "Top canonical correlations", "R² H_large ← H_small (var.-weighted)", "(mean over dims)",
                 "R² H_large ← rd (var.-weighted)", "(mean over dims)"],
                table_rows, [False, False, False] + [True] * 7, css="steps",
                caption="On rows not used to fit the distillation. Residual variance predictable from H_small: the "
                        "share of the residual block's variance a linear map from the small embedding predicts "
                        "(0 = nothing leaks; a linear regressor leaves none on its fit rows by construction). "
                        "Canonical correlations between H_small and the residual block, largest first. "
                        "Variance-weighted R² is a share of total variance; the mean over dimensions is not."
                        + (" " + leak_defs if leak_defs else ""),
            ),
            FigureBlock("leakage"),
        ]
    else:
        blocks.append(_not_run("no leakage diagnostics in this summary."))
    return blocks


def _fit_set_text(fit: Any, n_proteins: Any) -> str:
    """Which proteins the distillation was fitted on, from a description string or the distill stage's record."""
    if isinstance(fit, dict):
        parts = [f"fitted on {_s(fit.get('fasta')) or 'a separate protein set'}"
                 + (f" ({_s(fit['source'])})" if fit.get("source") else "")]
        if fit.get("proteins") is not None:
            parts.append(f"{fmt.integer(fit['proteins'])} proteins"
                         + (f", {fmt.integer(fit['rows'])} residues" if fit.get("rows") is not None else ""))
        if fit.get("disjoint") is not None:
            overlap = fit.get("overlap") if isinstance(fit.get("overlap"), dict) else {}
            shared = [f"{fmt.integer(overlap[k])} shared {k.split('_', 1)[1]}" for k in ("shared_ids", "shared_sequences")
                      if overlap.get(k) is not None]
            parts.append(("disjoint from the analysis set" if fit["disjoint"] else "overlapping the analysis set")
                         + (f" ({', '.join(shared)})" if shared else ""))
        text = "; ".join(parts)
    elif fit or n_proteins is not None:
        text = f"fitted on {_s(fit) or 'a protein set'}"
        if n_proteins is not None:
            text += f", {fmt.integer(n_proteins)} proteins"
    else:
        return "The summary does not record which proteins the map was fitted on."
    return text[0].upper() + text[1:] + "; the analysed proteins are only transformed."


# ------------------------------------------------------------------------------------------ probes

PROBE_GROUPS = (("space", "Spaces"), ("prefix", "Matryoshka prefixes of the rd space"),
                ("control", "Controls"), ("baseline", "Baseline"))


def _auroc_cell(m: Any) -> Text:
    if not isinstance(m, dict):
        return fmt.MISSING
    def f(v: Any) -> str:
        return fmt.fixed(v, 3)
    return Estimate(f(m.get("mean")), fmt.interval(m.get("lo"), m.get("hi"), f), _s(m.get("method")) or None)


def probes(summary: dict) -> list[Block]:
    pr = summary.get("probes")
    if not pr:
        return [_not_run("no linear probes in this summary.")]
    n_terms = pr.get("n_terms") or {}
    facts = []
    if pr.get("n_proteins") is not None:
        facts.append(f"{fmt.integer(pr['n_proteins'])} proteins")
    if n_terms:
        facts.append("GO terms probed: " + ", ".join(
            f"{ns} {fmt.integer(n_terms[ns])}" for ns in sorted(n_terms, key=_ns_rank)))
    if pr.get("level") is not None:
        facts.append(f"intervals at {fmt.level(pr['level'])}")
    blocks: list[Block] = []
    if pr.get("task") or facts:
        blocks.append(Paragraph([Bold("Protocol: "), _s(pr.get("task")) + (". " if pr.get("task") else ""),
                                 "; ".join(facts) + ("." if facts else "")]))
    rows = [r for r in pr.get("rows") or [] if isinstance(r, dict)]
    if rows:
        namespaces = sorted({ns for r in rows for ns in (_per_namespace(r) or {})}, key=_ns_rank)
        table_rows: list[list[Text]] = []
        groups: dict[int, str] = {}
        kinds = [k for k, _ in PROBE_GROUPS]
        for kind, title in PROBE_GROUPS + (("", "Other"),):
            members = [r for r in rows if (r.get("kind") == kind) or (kind == "" and r.get("kind") not in kinds)]
            if not members:
                continue
            groups[len(table_rows)] = title
            for r in members:
                per = _per_namespace(r) or {}
                vs = r.get("vs_baseline")
                table_rows.append([
                    _s(r.get("label")), fmt.integer(r.get("width")), _auroc_cell(r.get("macro_auroc")),
                    *(fmt.fixed(per.get(ns), 3) for ns in namespaces),
                    _diff_cell(vs, fmt.signed_fixed),
                ])
        blocks.append(Table(
            ["Feature set", "Width", "Macro AUROC [interval]", *namespaces, "Minus baseline [interval]"],
            table_rows, [False] + [True] * (3 + len(namespaces)), groups=groups,
            caption="Macro AUROC on held-out proteins, averaged over namespaces (per-namespace columns: macro AUROC "
                    "within the namespace); 0.5 is chance. Minus baseline: paired difference from the amino-acid "
                    "composition + length baseline on the same proteins.",
        ))
    blocks.append(FigureBlock("probes"))
    trunc = [t for t in pr.get("truncation") or [] if isinstance(t, dict)]
    if trunc:
        blocks.append(Heading(3, "Truncation curve"))
        blocks.append(Table(
            ["Prefix", "Width", "Macro AUROC [interval]"],
            [[_s(t.get("label")), fmt.integer(t.get("width")), _auroc_cell({**t, "mean": t.get("macro_auroc")})]
             for t in sorted(trunc, key=lambda t: (t.get("width") is None, t.get("width") or 0))],
            [False, True, True], css="compact",
            caption="The rd space's first k dimensions (Matryoshka prefixes): the base block first, then the residual "
                    "directions in order of variance.",
        ))
    eq = pr.get("large_at_equal_width")
    blocks.append(Heading(3, "rd and the large model at equal width"))
    if isinstance(eq, dict):
        blocks.append(Table(
            ["Width", "rd macro AUROC", "Large macro AUROC", "rd − large [interval]"],
            [[fmt.integer(eq.get("width")), fmt.fixed(eq.get("rd"), 3), fmt.fixed(eq.get("large"), 3),
              _diff_cell(eq, fmt.signed_fixed)]],
            [True, True, True, True], css="compact",
            caption="Paired difference on the same held-out proteins and terms, with its interval"
                    + (f" at {fmt.level(pr['level'])}" if pr.get("level") is not None else "") + ".",
        ))
    else:
        blocks.append(_not_run("no equal-width comparison of rd and the large model in this summary."))
    return blocks


def _per_namespace(row: dict) -> dict | None:
    """A probe row's per-namespace AUROC: at the row (schema) or inside macro_auroc (probe stage output)."""
    per = row.get("per_namespace")
    if isinstance(per, dict):
        return per
    m = row.get("macro_auroc")
    return m.get("per_namespace") if isinstance(m, dict) and isinstance(m.get("per_namespace"), dict) else None


# ------------------------------------------------------------------------------------------ SAE quality


def sae_quality(summary: dict) -> list[Block]:
    rows = summary.get("sae_quality")
    if not rows:
        return [_not_run("no SAE quality metrics in this summary.")]
    rank = {lab: i for i, lab in enumerate(order_spaces(summary, {row_label(r) for r in rows}))}
    rows = sorted(rows, key=lambda r: (rank[row_label(r)], r.get("seed") if isinstance(r.get("seed"), int) else 0))
    table_rows = []
    for r in rows:
        label: Text = [row_label(r), " ", Tag("untrained")] if r.get("untrained") else row_label(r)
        scaling = {True: "per block", False: "global"}.get(r.get("block_scaling"), fmt.MISSING)
        table_rows.append([
            label, fmt.integer(r.get("seed")), _s(r.get("architecture")), fmt.integer(r.get("d_in")),
            fmt.integer(r.get("n_latents")), fmt.integer(r.get("k")), scaling, fmt.num(r.get("fvu")),
            fmt.num(r.get("mse")), fmt.num(r.get("cosine")), fmt.num(r.get("l0")), fmt.pct(r.get("dead_fraction")),
            fmt.pct(r.get("dense_fraction")),
        ])
    blocks: list[Block] = [Table(
        ["Space", "Seed", "Architecture", "d_in", "Latents", "k", "Input scaling", "FVU", "MSE", "Cosine", "L0",
         "Dead", "Dense"],
        table_rows, [False, True, False, True, True, True, False] + [True] * 6,
        caption="Held-out reconstruction: FVU = fraction of variance unexplained (lower is better); L0 = mean "
                "active latents per residue; dead = never fired on held-out data; dense = fires on most inputs. "
                "Input scaling: one global scale, or each rd block scaled to unit mean squared norm. Untrained = "
                "the random-initialisation control.",
    )]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(row_label(r), []).append(r)
    if any(len(g) > 1 for g in groups.values()):
        agg = []
        for label, g in groups.items():
            agg.append([label, fmt.integer(len(g))] + [
                _mean_sd(g, key, pct=key.endswith("_fraction")) for key in ("fvu", "l0", "dead_fraction",
                                                                             "dense_fraction")
            ])
        blocks.append(Table(["Space", "Seeds", "FVU", "L0", "Dead", "Dense"], agg,
                            [False] + [True] * 5, caption="Mean ± sd over seeds."))
    return blocks


def _mean_sd(rows: list[dict], key: str, pct: bool) -> str:
    vals = _clean([r.get(key) for r in rows])
    if not vals:
        return fmt.MISSING
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
    return fmt.mean_sd(m, sd, fmt.pct if pct else fmt.num)


# ------------------------------------------------------------------------------------------ top latents


def top_latents(summary: dict) -> list[Block]:
    rows = summary.get("top_latents")
    if not rows:
        return [_not_run("no per-latent GO terms in this summary.")]
    blocks: list[Block] = [Paragraph("The latents with most captured terms in one seed of each space, their most "
                                     "significant terms and the proteins that activate them most.", css="caption")]
    for r in rows:
        title = f"{_s(r.get('space'))} · seed {fmt.integer(r.get('seed'))} · latent {fmt.integer(r.get('latent'))}"
        if r.get("n_terms") is not None:
            title += f" ({fmt.integer(r.get('n_terms'))} captured terms)"
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


KNOWN_KEYS = {"schema", "title", "run_id", "provenance", "definitions", "family", "headline", "verdicts",
              "comparisons", "coverage", "specificity", "attribution", "strata", "distillation", "leakage", "probes",
              "sae_quality", "top_latents", "notes"}


def notes(summary: dict) -> list[Block]:
    items = [_s(n) for n in summary.get("notes") or []]
    extra = sorted(k for k in summary if k not in KNOWN_KEYS)
    if extra:
        items.append(f"summary.json also holds sections this report does not draw: {', '.join(extra)}.")
    if not items:
        return [Paragraph("None.", css="caption")]
    return [BulletList(items)]


# Pipeline order for timings: the summary's dict keys are sorted in summary.json, so order is restored here.
STAGE_ORDER = ("load", "data", "embed", "distill", "sae", "encode", "enrich", "null", "probe", "compare", "report")


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
    if summary.get("schema") is not None:
        facts.append(["Summary schema", _s(summary["schema"])])
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
    "models": models,
    "headline": headline,
    "comparisons": comparisons,
    "coverage": coverage,
    "specificity": specificity,
    "attribution": attribution,
    "decomposition": decomposition,
    "probes": probes,
    "sae-quality": sae_quality,
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
