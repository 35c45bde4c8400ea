"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot).

Figures are drawn on ``FigureCanvasAgg`` directly so rendering a report never switches the user's
interactive backend, inside ``rc_context`` with matplotlib defaults so a user's matplotlibrc cannot change
the output, and saved without the version-bearing ``Software`` PNG tag so the same summary gives the
same bytes. Figures only draw numbers the summary holds; captions (SPECS) say what is drawn and how the
intervals were made, never which space is better.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

from rd_interp.report.schema import row_label

DPI = 110
NAMESPACE_ORDER = ("BP", "MF", "CC", "all")
NAMESPACE_NAMES = {"BP": "Biological process", "MF": "Molecular function", "CC": "Cellular component",
                   "all": "All namespaces"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22")
_NULL = "#6b6b6b"
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "hatch.linewidth": 0.8,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "path.simplify": False,
}


@dataclass(frozen=True)
class FigureSpec:
    """A figure the report may contain: file name, title and caption (what is drawn, how to read it)."""

    name: str
    title: str
    caption: str


SPECS = {
    "coverage_namespace": FigureSpec(
        "coverage_namespace.png",
        "Non-redundant GO terms per namespace",
        "Distinct non-redundant GO terms captured by at least one latent, per namespace (right panel: all "
        "namespaces together, the headline count). Bars: mean over SAE seeds; whiskers: Student t interval over "
        "seeds (solid) or the range of two seeds (dashed), none with one seed; dots: individual seeds. Hatched "
        "bars are controls. Grey band and black line: 95% range and mean of the label-permutation null of the "
        "same SAEs, where the summary has one.",
    ),
    "specificity": FigureSpec(
        "specificity.png",
        "Specificity of non-redundant captured terms",
        "Distribution of the GO depth (longest path to the root) and information content (IC) of the distinct "
        "non-redundant terms each space captures, pooled over seeds. Higher means more specific. Boxes: "
        "quartiles; line: median; diamond: mean; whiskers: 1.5 IQR. For looking only: pooled terms are not "
        "independent draws, so these distributions are not used for any test (the tests use per-seed means).",
    ),
    "attribution": FigureSpec(
        "attribution.png",
        "Relative decoder share of latents",
        "Per latent, its decoder direction's share on the base (small-model) block relative to the block's share "
        "of the input dimensions: 0 = spread like a random direction, +1 = base block only, −1 = residual block "
        "only (the share on the raw base/residual scale when the summary has no relative share). Dashed lines: "
        "the stratum margins; latents beyond them are base- or residual-dominated.",
    ),
    "coverage_vs_attribution": FigureSpec(
        "coverage_vs_attribution.png",
        "GO terms per latent versus attribution",
        "Each dot is a latent (all seeds): its relative decoder share (x) against the number of GO terms it "
        "captures, non-redundant as in the headline (y, symmetric-log scale; small vertical jitter). The line is "
        "the mean per decile bin of x (bins with at least five latents); dashed lines: stratum margins.",
    ),
    "residual_variance": FigureSpec(
        "residual_variance.png",
        "Residual variance spectrum",
        "Explained-variance ratio of the leading principal directions of the residual (what the large model "
        "adds beyond the small one), per distillation step; the dashed line is the cumulative share.",
    ),
    "leakage": FigureSpec(
        "leakage.png",
        "What the residual block still shares with the small model",
        "Left: share of the residual block's variance that a linear map from the small model's embedding "
        "predicts on held-out rows (0 = nothing leaks). Right: canonical correlations between the small "
        "embedding and the residual block, largest first. One line per distillation step and regressor.",
    ),
    "probes": FigureSpec(
        "probes.png",
        "Linear probes: macro AUROC versus width",
        "Macro AUROC of linear GO probes on held-out proteins. Line and band: Matryoshka prefixes of the rd "
        "space (its first k dimensions) with their intervals; points with whiskers: whole spaces and controls at "
        "their width; dashed horizontal line: the amino-acid composition + length baseline. 0.5 is chance.",
    ),
}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


def _palette(labels: list[str]) -> dict[str, str]:
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(labels)}


def space_order(summary: dict) -> list[str]:
    """Every space label in the summary, in report order (headline rows first, as the builder lists them).

    One order and one colour per space across all figures; dict sections alone would give alphabetical
    order because summary.json sorts keys.
    """
    labels: list[str] = []
    for section in ("headline", "coverage", "sae_quality"):
        for r in summary.get(section) or []:
            if isinstance(r, dict):
                lab = row_label(r)
                if lab not in labels:
                    labels.append(lab)
    for r in (summary.get("probes") or {}).get("rows") or []:
        if r.get("kind") in ("space", "control") and r.get("label") and r["label"] not in labels:
            labels.append(r["label"])
    for section in ("specificity", "attribution"):
        for lab in summary.get(section) or {}:
            if lab not in labels:
                labels.append(lab)
    return labels


def order_spaces(summary: dict, keys) -> list[str]:
    rank = {lab: i for i, lab in enumerate(space_order(summary))}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def space_kinds(summary: dict) -> dict[str, str]:
    """label -> "space" | "control" from the headline/coverage records."""
    out: dict[str, str] = {}
    for section in ("headline", "coverage"):
        for r in summary.get(section) or []:
            out.setdefault(row_label(r), r.get("kind") or "space")
    return out


def _finite(values) -> np.ndarray:
    arr = np.asarray([v for v in (values or []) if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _is_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _lighten(color: str, amount: float = 0.55) -> tuple[float, float, float]:
    rgb = np.asarray(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _two_lines(label: str, width: int = 16) -> str:
    """A tick label on at most two short lines so neighbouring boxes' labels do not collide.

    'rd.mini-L[residual]' -> 'rd.mini-L\n[residual]'; long names wrap at spaces and are cut with '…'; the
    'control:' prefix is dropped (control boxes are hatched, as in every figure).
    """
    if label.startswith("control:"):
        label = label[len("control:"):].strip() or label
    m = re.match(r"^([^\s\[]+)(\[.*\])$", label)
    lines = [m.group(1), m.group(2)] if m else textwrap.wrap(label, width, break_long_words=True) or [label]
    if len(lines) > 2:
        lines = [lines[0], lines[1] + " " + " ".join(lines[2:])]
    return "\n".join(_short(line, width) for line in lines[:2])


def _legend_label(label: str, control: bool, width: int = 44) -> str:
    """A legend entry; controls say so once (labels that start with 'control' already do)."""
    if control and not label.lower().startswith("control"):
        return _short(label, width - 10) + " (control)"
    return _short(label, width)


# ----------------------------------------------------------------------------- coverage


def coverage_namespace(summary: dict) -> Figure | None:
    rows = [r for r in summary.get("coverage") or []
            if _is_finite((r.get("nonredundant") or {}).get("mean"))]
    if not rows:
        return None
    index = {(row_label(r), r.get("namespace")): r for r in rows}
    labels = order_spaces(summary, {row_label(r) for r in rows})
    kinds = space_kinds(summary)
    present = {r.get("namespace") for r in rows}
    namespaces = [ns for ns in NAMESPACE_ORDER if ns in present] + sorted(
        str(ns) for ns in present if ns not in NAMESPACE_ORDER and ns is not None
    )
    colors = _palette(space_order(summary))
    width = 0.8 / len(labels)
    # "all" has a much larger scale than single namespaces: its own axis keeps BP/MF/CC readable.
    panels = [p for p in ([ns for ns in namespaces if ns != "all"], ["all"] if "all" in namespaces else []) if p]
    fig = _new_figure(10.0, 4.6)
    grid = fig.add_gridspec(1, len(panels), width_ratios=[max(len(p), 1.2) for p in panels], wspace=0.2)
    any_null = False
    for pi, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, pi])
        for g, ns in enumerate(panel):
            for b, lab in enumerate(labels):
                r = index.get((lab, ns))
                if r is None:
                    continue
                x = g - 0.4 + width * (b + 0.5)
                any_null |= _coverage_bar(ax, x, width, r, colors[lab], kinds.get(lab) == "control")
        ax.set_xticks(range(len(panel)))
        ax.set_xticklabels([NAMESPACE_NAMES.get(ns, str(ns)) for ns in panel])
        ax.set_xlim(-0.5, len(panel) - 0.5)
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
        if pi == 0:
            ax.set_ylabel("distinct non-redundant GO terms")
    fig.suptitle("Non-redundant GO terms captured (mean over seeds, interval over seeds, dots: seeds)",
                 fontsize=10.5, y=0.98)
    handles = []
    for lab in labels:
        control = kinds.get(lab) == "control"
        handles.append(Patch(facecolor=_lighten(colors[lab], 0.55) if control else colors[lab],
                             edgecolor=colors[lab], hatch="///" if control else None,
                             label=_legend_label(lab, control)))
    if any_null:
        handles.append(Patch(facecolor=_lighten(_NULL, 0.35), edgecolor="#111111", alpha=0.8,
                             label="null: 95% range (band), mean (line)"))
    ncol = min(len(handles), 3)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.16 + 0.055 * ((len(handles) - 1) // ncol), top=0.9)
    return fig


def _coverage_bar(ax, x: float, width: float, r: dict, color: str, control: bool) -> bool:
    """One bar with its interval, seeds and null band; returns whether a null was drawn."""
    st = r["nonredundant"]
    mean = st["mean"]
    ax.bar(x, mean, width * 0.9, color=_lighten(color, 0.55) if control else color, edgecolor=color,
           linewidth=0.8, hatch="///" if control else None, zorder=2)
    lo, hi, method = st.get("lo"), st.get("hi"), st.get("method")
    if method in ("t", "range") and _is_finite(lo) and _is_finite(hi):
        err = ax.errorbar(x, mean, yerr=[[max(mean - lo, 0.0)], [max(hi - mean, 0.0)]], fmt="none",
                          ecolor="#222222", elinewidth=1.1, capsize=2.5, zorder=5)
        if method == "range":
            for line in err.lines[2]:
                line.set_linestyle("--")
    seeds = _finite(st.get("per_seed"))
    if seeds.size:
        offs = np.linspace(-0.22, 0.22, seeds.size) * width if seeds.size > 1 else np.zeros(1)
        ax.scatter(x + offs, seeds, s=9, color="#222222", alpha=0.75, zorder=6, linewidths=0)
    null = r.get("null") or {}
    if _is_finite(null.get("lo")) and _is_finite(null.get("hi")):
        ax.add_patch(Rectangle((x - width * 0.45, null["lo"]), width * 0.9, max(null["hi"] - null["lo"], 0.0),
                               facecolor=_NULL, alpha=0.45, edgecolor="none", zorder=3))
    if _is_finite(null.get("mean")):
        ax.plot([x - width * 0.45, x + width * 0.45], [null["mean"]] * 2, color="#111111", linewidth=1.4,
                zorder=4)
        return True
    return False


# ----------------------------------------------------------------------------- specificity


def _boxplot(ax, data: list[np.ndarray], labels: list[str], colors: dict[str, str], ylabel: str,
             controls: frozenset[str] | set[str] = frozenset()) -> None:
    keep = [(lab, d) for lab, d in zip(labels, data) if d.size]
    if not keep:
        ax.text(0.5, 0.5, "no terms captured", ha="center", va="center", transform=ax.transAxes, color="#777777")
        ax.set_ylabel(ylabel)
        ax.set_xticks([])
        return
    bp = ax.boxplot(
        [d for _, d in keep], patch_artist=True, widths=0.6, showmeans=True, showfliers=False,
        medianprops={"color": "#222222", "linewidth": 1.3},
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "#222222", "markersize": 4.5},
    )
    for patch, (lab, _) in zip(bp["boxes"], keep):
        patch.set_facecolor(_lighten(colors[lab], 0.45 if lab not in controls else 0.7))
        patch.set_edgecolor(colors[lab])
        if lab in controls:
            patch.set_hatch("///")
    ax.set_xticks(range(1, len(keep) + 1))
    ax.set_xticklabels([f"{_two_lines(lab, 18)}\n(n={d.size:,})" for lab, d in keep], rotation=0, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)


def specificity(summary: dict) -> Figure | None:
    block = summary.get("specificity") or {}
    labels = [lab for lab in block if _finite(block[lab].get("depth")).size or _finite(block[lab].get("ic")).size]
    if not labels:
        return None
    labels = order_spaces(summary, labels)
    colors = _palette(space_order(summary))
    tall = len(labels) > 5  # many spaces: one panel per row so the box labels stay legible
    fig = _new_figure(10.5, 7.8 if tall else 4.0)
    for i, (key, ylabel, title) in enumerate(
        (("depth", "GO depth (longest path to root)", "Depth"), ("ic", "information content (nats)", "IC"))
    ):
        ax = fig.add_subplot(2 if tall else 1, 1 if tall else 2, i + 1)
        _boxplot(ax, [_finite(block[lab].get(key)) for lab in labels], labels, colors, ylabel,
                 {lab for lab, kind in space_kinds(summary).items() if kind == "control"})
        ax.set_title(f"{title} of non-redundant captured terms")
    fig.suptitle("Pooled over seeds, for looking only: not used for tests", fontsize=9, color="#444444")
    fig.subplots_adjust(wspace=0.3, hspace=0.7)
    return fig


# ----------------------------------------------------------------------------- attribution


def _shares(entry: dict) -> tuple[np.ndarray, bool]:
    """(per-latent share, relative?) of an attribution entry: the relative share when the summary has it."""
    rel = entry.get("relative_share")
    if rel:
        return np.asarray([np.nan if v is None else v for v in rel], dtype=np.float64), True
    return np.asarray([np.nan if v is None else v for v in entry.get("base_share") or []], dtype=np.float64), False


def _margins(ax, block: dict, labels: list[str], relative: bool) -> None:
    margins = sorted({float(block[lab]["margin"]) for lab in labels
                      if relative and _is_finite(block[lab].get("margin"))})
    for m in margins:
        for x in (-m, m):
            ax.axvline(x, color="#444444", linestyle="--", linewidth=0.9, zorder=1)


def attribution(summary: dict) -> Figure | None:
    block = summary.get("attribution") or {}
    labels = order_spaces(summary, [lab for lab in block if np.isfinite(_shares(block[lab])[0]).any()])
    if not labels:
        return None
    relative = all(_shares(block[lab])[1] for lab in labels)
    colors = _palette(space_order(summary))
    fig = _new_figure(7.8, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    lo = -1.0 if relative else 0.0
    bins = np.linspace(lo, 1.0, 41 if relative else 26)
    for lab in labels:
        share, _ = _shares(block[lab])
        share = np.clip(share[np.isfinite(share)], lo, 1.0)
        counts, _ = np.histogram(share, bins=bins)
        frac = counts / max(share.size, 1)
        ax.stairs(frac, bins, color=colors[lab], linewidth=1.6, label=f"{_short(lab)} (n={share.size:,})")
        ax.stairs(frac, bins, color=colors[lab], fill=True, alpha=0.12)
    _margins(ax, block, labels, relative)
    ax.set_xlim(lo, 1)
    if relative:
        ax.set_xlabel("relative decoder share (−1 = residual only, 0 = like a random direction, +1 = base only)")
        top = ax.get_ylim()[1] * 1.12
        ax.set_ylim(0, top)
        for x, text in ((-0.98, "residual-dominated"), (0.0, "mixed"), (0.98, "base-dominated")):
            ax.text(x, top * 0.98, text, ha="left" if x < 0 else ("right" if x > 0 else "center"), va="top",
                    fontsize=8, color="#444444", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
    else:
        ax.set_xlabel("base share of decoder norm (0 = residual, 1 = base)")
    ax.set_ylabel("fraction of latents")
    ax.set_title("Attribution of latents to the base and residual blocks")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def coverage_vs_attribution(summary: dict) -> Figure | None:
    block = summary.get("attribution") or {}
    labels = [lab for lab in block if block[lab].get("n_terms") and np.isfinite(_shares(block[lab])[0]).any()]
    if not labels:
        return None
    labels = order_spaces(summary, labels)
    relative = all(_shares(block[lab])[1] for lab in labels)
    colors = _palette(space_order(summary))
    ncols = min(len(labels), 3)
    nrows = math.ceil(len(labels) / ncols)
    fig = _new_figure(3.5 * ncols + 0.6, 3.3 * nrows)
    rng = np.random.default_rng(0)  # fixed: jitter must not change the PNG between renders
    lo = -1.0 if relative else 0.0
    ymax = 0.0
    axes = []
    for i, lab in enumerate(labels):
        share_all, _ = _shares(block[lab])
        pairs = [(s, t) for s, t in zip(share_all, block[lab]["n_terms"]) if np.isfinite(s) and t is not None]
        arr = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        share, terms = np.clip(arr[:, 0], lo, 1.0), arr[:, 1]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        axes.append(ax)
        jitter = rng.uniform(-0.18, 0.18, size=terms.size)
        ax.scatter(share, terms + jitter, s=6, alpha=0.35, color=colors.get(lab, _PALETTE[0]), linewidths=0)
        edges = np.linspace(lo, 1.0, 11)
        idx = np.clip(np.digitize(share, edges) - 1, 0, 9)
        centres, means = [], []
        min_count = 5 if terms.size >= 50 else 1  # a mean over one or two latents is noise, not a trend
        for b in range(10):
            sel = idx == b
            if sel.sum() >= min_count:
                centres.append((edges[b] + edges[b + 1]) / 2)
                means.append(terms[sel].mean())
        ax.plot(centres, means, color="#222222", linewidth=1.4, marker="o", markersize=3)
        _margins(ax, block, [lab], relative)
        frac = float((terms > 0).mean()) if terms.size else float("nan")
        ax.set_title(f"{_short(lab, 30)}\n{terms.size:,} latents, {100 * frac:.0f}% with ≥1 term", fontsize=9)
        ax.set_xlim(lo - 0.02, 1.02)
        ax.set_xlabel("relative decoder share" if relative else "base share")
        if i % ncols == 0:
            ax.set_ylabel("GO terms per latent")
        ymax = max(ymax, float(terms.max()) if terms.size else 0.0)
    top = max(ymax * 1.3, 4.0)
    ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= top]
    for ax in axes:
        ax.set_yscale("symlog", linthresh=2, linscale=0.6)
        ax.set_ylim(-0.6, top)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%d"))
        ax.yaxis.set_minor_locator(NullLocator())
    fig.subplots_adjust(wspace=0.28, hspace=0.6)
    return fig


# ----------------------------------------------------------------------------- decomposition


def residual_variance(summary: dict) -> Figure | None:
    steps = [d for d in summary.get("distillation") or [] if _finite(d.get("residual_explained_variance_ratio")).size]
    if not steps:
        return None
    fig = _new_figure(7.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.grid(False)
    names = [_step_name(d, i) for i, d in enumerate(steps)]
    colors = _palette(names)
    for name, d in zip(names, steps):
        ratio = _finite(d["residual_explained_variance_ratio"])
        comps = np.arange(1, ratio.size + 1)
        ax.plot(comps, ratio, color=colors[name], marker="o", markersize=2.5, linewidth=1.3, label=_short(name, 40))
        ax2.plot(comps, np.cumsum(ratio), color=colors[name], linestyle="--", linewidth=1.0)
    ax.set_xlabel("residual principal direction")
    ax.set_ylabel("explained variance ratio")
    ax2.set_ylabel("cumulative (dashed)")
    ax2.set_ylim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.set_title("Residual variance spectrum per distillation step")
    ax.legend(loc="center right")
    return fig


def _step_name(d: dict, i: int) -> str:
    name = d.get("step") or f"step {i + 1}"
    return f"{name} ({d['regressor']})" if d.get("regressor") else name


def leakage(summary: dict) -> Figure | None:
    rows = [r for r in summary.get("leakage") or []
            if _is_finite(r.get("residual_predictable_share")) or _finite(r.get("canonical_correlations")).size]
    if not rows:
        return None
    names = []
    for i, r in enumerate(rows):
        name = _step_name(r, i)
        while name in names:
            name += " ·"
        names.append(name)
    colors = _palette(names)
    fig = _new_figure(10.0, 3.2 + 0.18 * len(rows))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.25], wspace=0.55)
    ax = fig.add_subplot(grid[0, 0])
    y = np.arange(len(rows))[::-1]
    shares = [r.get("residual_predictable_share") for r in rows]
    ax.barh(y, [s if _is_finite(s) else 0.0 for s in shares], color=[colors[n] for n in names], height=0.6)
    for yi, s in zip(y, shares):
        ax.text((s if _is_finite(s) else 0.0) + 0.01, yi, f"{100 * s:.1f}%" if _is_finite(s) else "n/a",
                va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([_short(n, 34) for n in names], fontsize=8)
    ax.set_xlim(0, max(1.0, *(s + 0.15 for s in shares if _is_finite(s))))
    ax.set_xlabel("share of residual variance predictable from H_small")
    ax.grid(axis="y", visible=False)
    ax2 = fig.add_subplot(grid[0, 1])
    for name, r in zip(names, rows):
        cc = _finite(r.get("canonical_correlations"))
        if cc.size:
            ax2.plot(np.arange(1, cc.size + 1), cc, color=colors[name], marker="o", markersize=3, linewidth=1.3,
                     label=_short(name, 34))
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("canonical pair")
    ax2.set_ylabel("canonical correlation")
    ax2.legend(loc="upper right")
    fig.suptitle("Leakage: what the residual block still shares with the small model (held-out rows)",
                 fontsize=10.5)
    fig.subplots_adjust(top=0.86)
    return fig


# ----------------------------------------------------------------------------- probes


def _prefix_name(label: str) -> str:
    return re.sub(r"\[:\d+\]$", "", label or "") or "prefixes"


def probes(summary: dict) -> Figure | None:
    pr = summary.get("probes") or {}
    trunc = [t for t in pr.get("truncation") or [] if _is_finite(t.get("width")) and _is_finite(t.get("macro_auroc"))]
    rows = [r for r in pr.get("rows") or []
            if _is_finite(r.get("width")) and _is_finite((r.get("macro_auroc") or {}).get("mean"))]
    if not trunc:  # no truncation list: the prefix rows are the curve
        trunc = [{"width": r["width"], "macro_auroc": r["macro_auroc"]["mean"], "lo": r["macro_auroc"].get("lo"),
                  "hi": r["macro_auroc"].get("hi"), "label": r.get("label")}
                 for r in rows if r.get("kind") == "prefix"]
    points = [r for r in rows if r.get("kind") in ("space", "control")]
    baselines = [r for r in rows if r.get("kind") == "baseline"]
    if not trunc and not points:
        return None
    fig = _new_figure(8.8, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    widths = sorted({int(t["width"]) for t in trunc} | {int(r["width"]) for r in points})
    curves: dict[str, list[dict]] = {}
    for t in trunc:
        curves.setdefault(_prefix_name(t.get("label")), []).append(t)
    handles = []
    for ci, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts, key=lambda t: t["width"])
        x = np.asarray([t["width"] for t in pts], dtype=np.float64)
        yv = np.asarray([t["macro_auroc"] for t in pts], dtype=np.float64)
        color = "#222222" if ci == 0 else _PALETTE[(ci + 4) % len(_PALETTE)]
        band = [(xi, t["lo"], t["hi"]) for xi, t in zip(x, pts) if _is_finite(t.get("lo")) and _is_finite(t.get("hi"))]
        if band:
            bx, blo, bhi = (np.asarray(v, dtype=np.float64) for v in zip(*band))
            ax.fill_between(bx, blo, bhi, color=color, alpha=0.12, linewidth=0, zorder=1)
        ax.plot(x, yv, color=color, marker="o", markersize=3.5, linewidth=1.5, zorder=3)
        handles.append(Line2D([], [], color=color, marker="o", markersize=3.5, label=f"{_short(name, 30)} prefixes"))
    colors = _palette(space_order(summary))
    n_at: dict[int, int] = {}
    for r in points:
        m = r["macro_auroc"]
        lab = r.get("label") or "?"
        w = int(r["width"])
        k = n_at.get(w, 0)
        n_at[w] = k + 1
        x = w * (1.0 + 0.025 * (k - 0.5 * (k > 0)))  # small dodge when several spaces share a width
        color = colors.get(lab, _PALETTE[0])
        yerr = None
        if _is_finite(m.get("lo")) and _is_finite(m.get("hi")):
            yerr = [[max(m["mean"] - m["lo"], 0.0)], [max(m["hi"] - m["mean"], 0.0)]]
        control = r.get("kind") == "control"
        ax.errorbar([x], [m["mean"]], yerr=yerr, fmt="s" if control else "D", color=color,
                    markerfacecolor="white" if control else color, markersize=6, capsize=2.5, elinewidth=1.1,
                    zorder=4)
        handles.append(Line2D([], [], color=color, marker="s" if control else "D", linestyle="none",
                              markerfacecolor="white" if control else color,
                              label=_legend_label(lab, control, 40)))
    for r in baselines:
        ax.axhline(r["macro_auroc"]["mean"], color="#777777", linestyle="--", linewidth=1.1, zorder=2)
        handles.append(Line2D([], [], color="#777777", linestyle="--", label=_short(r.get("label") or "baseline", 40)))
    if widths and widths[-1] / max(widths[0], 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(widths))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%d"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("embedding width (dimensions)")
    ax.set_ylabel("macro AUROC (held-out proteins)")
    ax.set_title("Linear GO probes: macro AUROC versus width")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


BUILDERS: dict[str, Callable[[dict], Figure | None]] = {
    "coverage_namespace": coverage_namespace,
    "specificity": specificity,
    "attribution": attribution,
    "coverage_vs_attribution": coverage_vs_attribution,
    "residual_variance": residual_variance,
    "leakage": leakage,
    "probes": probes,
}


def make_figures(summary: dict) -> dict[str, bytes]:
    """All figures the summary has data for: key (see SPECS) -> PNG bytes. Deterministic."""
    out: dict[str, bytes] = {}
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(_RC)
        for key, build in BUILDERS.items():
            fig = build(summary)
            if fig is not None:
                out[key] = _png(fig)
    return out
