"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot).

Figures are drawn on ``FigureCanvasAgg`` directly so rendering a report never switches the user's
interactive backend, inside ``rc_context`` with matplotlib defaults so a user's matplotlibrc cannot change
the output, and saved without the version-bearing ``Software`` PNG tag so the same summary gives the
same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

from rd_interp.report.schema import space_label

DPI = 110
NAMESPACE_ORDER = ("BP", "MF", "CC", "all")
NAMESPACE_NAMES = {"BP": "Biological process", "MF": "Molecular function", "CC": "Cellular component",
                   "all": "All namespaces"}
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22")
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
    """A figure the report may contain: file name, caption, and what it shows (for the text)."""

    name: str
    title: str
    caption: str


SPECS = {
    "coverage_namespace": FigureSpec(
        "coverage_namespace.png",
        "GO coverage per namespace",
        "Distinct GO terms captured by at least one latent (BH-adjusted enrichment), per namespace. Bars: mean "
        "over SAE seeds; error bars: confidence interval over seeds; dots: individual seeds. Hatched, paler bars "
        "are the permuted-label null control of the same space.",
    ),
    "specificity": FigureSpec(
        "specificity.png",
        "Specificity of captured terms",
        "Distribution of the GO depth (longest path to the root) and information content of the terms each space "
        "captures. Higher means more specific. Boxes: quartiles; line: median; diamond: mean; whiskers: 1.5 IQR.",
    ),
    "attribution": FigureSpec(
        "attribution.png",
        "Attribution of latents to the base block",
        "Per latent, the share of its decoder direction's squared norm lying in the base (small-model) "
        "coordinates of the rd embedding: 0 = purely residual (new in the large model), 1 = purely base.",
    ),
    "coverage_vs_attribution": FigureSpec(
        "coverage_vs_attribution.png",
        "Coverage versus attribution",
        "Each dot is a latent: its base share (x) against the number of GO terms enriched in its top proteins "
        "(y, symmetric-log scale; small vertical jitter). The line is the mean number of terms per base-share "
        "decile bin (bins with at least five latents).",
    ),
    "residual_variance": FigureSpec(
        "residual_variance.png",
        "Residual variance spectrum",
        "Explained-variance ratio of the leading principal directions of the residual (what the large model "
        "adds beyond the small one), per distillation step; the dashed line is the cumulative share.",
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
    """Every space label in the summary, in pipeline order (coverage rows first, as the pipeline lists them).

    One order and one colour per space across all figures; dict sections alone would give alphabetical
    order because summary.json sorts keys.
    """
    labels: list[str] = []
    for section in ("coverage", "sae_quality"):
        for r in summary.get(section) or []:
            lab = space_label(r.get("space") or "?", r.get("subspace"))
            if lab not in labels:
                labels.append(lab)
    for section in ("specificity", "attribution"):
        for lab in summary.get(section) or {}:
            if lab not in labels:
                labels.append(lab)
    return labels


def order_spaces(summary: dict, keys) -> list[str]:
    rank = {lab: i for i, lab in enumerate(space_order(summary))}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def _finite(values) -> np.ndarray:
    arr = np.asarray([v for v in (values or []) if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _lighten(color: str, amount: float = 0.55) -> tuple[float, float, float]:
    rgb = np.asarray(to_rgb(color))
    return tuple(rgb + (1.0 - rgb) * amount)


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _two_lines(label: str, width: int = 16) -> str:
    """'rd_35M/residual' -> 'rd_35M\nresidual' so tick labels of neighbouring boxes do not collide."""
    head, sep, tail = label.partition("/")
    if sep and tail:
        return f"{_short(head, width)}\n{_short(tail, width)}"
    return _short(label, width)


# ----------------------------------------------------------------------------- individual figures


def coverage_namespace(summary: dict) -> Figure | None:
    rows = [r for r in summary.get("coverage") or [] if r.get("n_terms_mean") is not None]
    if not rows:
        return None
    labels: list[str] = []
    for r in rows:
        lab = space_label(r.get("space") or "?", r.get("subspace"))
        if lab not in labels:
            labels.append(lab)
    present = {r.get("namespace") for r in rows}
    namespaces = [ns for ns in NAMESPACE_ORDER if ns in present] + sorted(
        ns for ns in present if ns not in NAMESPACE_ORDER and ns is not None
    )
    controls = [c for c in ("real", "null") if any(r.get("control", "real") == c for r in rows)]
    index = {
        (space_label(r.get("space") or "?", r.get("subspace")), r.get("namespace"), r.get("control", "real")): r
        for r in rows
    }
    colors = _palette(space_order(summary))
    labels = order_spaces(summary, labels)
    n_bars = len(labels) * len(controls)
    width = 0.8 / n_bars
    # "all" has a much larger scale than single namespaces: give it its own axis so BP/MF/CC stay readable.
    panels = [[ns for ns in namespaces if ns != "all"], ["all"] if "all" in namespaces else []]
    panels = [p for p in panels if p]
    fig = _new_figure(10.0, 4.4)
    grid = fig.add_gridspec(1, len(panels), width_ratios=[len(p) for p in panels], wspace=0.18)
    for pi, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, pi])
        for g, ns in enumerate(panel):
            b = 0
            for lab in labels:
                for control in controls:
                    x = g - 0.4 + width * (b + 0.5)
                    b += 1
                    r = index.get((lab, ns, control))
                    if r is None:
                        continue
                    _coverage_bar(ax, x, width, r, colors[lab], control == "null")
        ax.set_xticks(range(len(panel)))
        ax.set_xticklabels([NAMESPACE_NAMES.get(ns, str(ns)) for ns in panel])
        ax.set_xlim(-0.5, len(panel) - 0.5)
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
        if pi == 0:
            ax.set_ylabel("distinct GO terms captured")
    fig.suptitle("GO coverage per namespace (mean over seeds; error bars: CI; dots: seeds)", fontsize=10.5, y=0.98)
    handles = [Patch(facecolor=colors[lab], edgecolor=colors[lab], label=_short(lab)) for lab in labels]
    if "null" in controls:
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label="null control (hatched)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.2 + 0.06 * ((len(handles) - 1) // 5), top=0.9)
    return fig


def _coverage_bar(ax, x: float, width: float, r: dict, color: str, null: bool) -> None:
    mean = r["n_terms_mean"]
    ax.bar(x, mean, width * 0.92, color=_lighten(color, 0.7) if null else color, edgecolor=color,
           linewidth=0.8, hatch="///" if null else None, zorder=2)
    ci = r.get("n_terms_ci")
    if ci and all(c is not None for c in ci):
        lo, hi = ci
        ax.errorbar(x, mean, yerr=[[max(mean - lo, 0.0)], [max(hi - mean, 0.0)]], fmt="none", ecolor="#222222",
                    elinewidth=1.0, capsize=2.5, zorder=3)
    seeds = _finite(r.get("n_terms_per_seed"))
    if seeds.size:
        offs = np.linspace(-0.22, 0.22, seeds.size) * width if seeds.size > 1 else np.zeros(1)
        ax.scatter(x + offs, seeds, s=9, color="#222222", alpha=0.75, zorder=4, linewidths=0)


def _boxplot(ax, data: list[np.ndarray], labels: list[str], colors: dict[str, str], ylabel: str) -> None:
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
        patch.set_facecolor(_lighten(colors[lab], 0.45))
        patch.set_edgecolor(colors[lab])
    ax.set_xticks(range(1, len(keep) + 1))
    ax.set_xticklabels([f"{_two_lines(lab)}\n(n={d.size:,})" for lab, d in keep], rotation=0)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)


def specificity(summary: dict) -> Figure | None:
    block = summary.get("specificity") or {}
    labels = [lab for lab in block if _finite(block[lab].get("depth")).size or _finite(block[lab].get("ic")).size]
    if not labels:
        return None
    labels = order_spaces(summary, labels)
    colors = _palette(space_order(summary))
    fig = _new_figure(min(max(7.5, 1.4 * len(labels) * 2 + 1), 10.5), 4.0)
    for i, (key, ylabel, title) in enumerate(
        (("depth", "GO depth (longest path to root)", "Depth"), ("ic", "information content (nats)", "IC"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        _boxplot(ax, [_finite(block[lab].get(key)) for lab in labels], labels, colors, ylabel)
        ax.set_title(f"{title} of captured terms")
    fig.subplots_adjust(wspace=0.3)
    return fig


def attribution(summary: dict) -> Figure | None:
    block = summary.get("attribution") or {}
    labels = order_spaces(summary, [lab for lab in block if _finite(block[lab].get("base_share")).size])
    if not labels:
        return None
    colors = _palette(space_order(summary))
    fig = _new_figure(7.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0.0, 1.0, 26)
    for lab in labels:
        share = np.clip(_finite(block[lab]["base_share"]), 0.0, 1.0)
        counts, _ = np.histogram(share, bins=bins)
        frac = counts / max(share.size, 1)
        ax.stairs(frac, bins, color=colors[lab], linewidth=1.6, label=f"{_short(lab)} (n={share.size:,})")
        ax.stairs(frac, bins, color=colors[lab], fill=True, alpha=0.12)
    ax.set_xlim(0, 1)
    ax.set_xlabel("base share of decoder norm (0 = residual, 1 = base)")
    ax.set_ylabel("fraction of latents")
    ax.set_title("Attribution of latents to base vs residual coordinates")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def coverage_vs_attribution(summary: dict) -> Figure | None:
    block = summary.get("attribution") or {}
    labels = []
    for lab in block:
        share, terms = block[lab].get("base_share"), block[lab].get("n_terms")
        if share and terms:
            labels.append(lab)
    if not labels:
        return None
    labels = order_spaces(summary, labels)
    colors = _palette(space_order(summary))
    ncols = min(len(labels), 3)
    nrows = math.ceil(len(labels) / ncols)
    fig = _new_figure(3.4 * ncols + 0.6, 3.2 * nrows)
    rng = np.random.default_rng(0)  # fixed: jitter must not change the PNG between renders
    ymax = 0.0
    axes = []
    for i, lab in enumerate(labels):
        pairs = [(s, t) for s, t in zip(block[lab]["base_share"], block[lab]["n_terms"])
                 if s is not None and t is not None]
        arr = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        share, terms = np.clip(arr[:, 0], 0.0, 1.0), arr[:, 1]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        axes.append(ax)
        jitter = rng.uniform(-0.18, 0.18, size=terms.size)
        ax.scatter(share, terms + jitter, s=6, alpha=0.35, color=colors.get(lab, _PALETTE[0]), linewidths=0,
                   rasterized=False)
        edges = np.linspace(0.0, 1.0, 11)
        idx = np.clip(np.digitize(share, edges) - 1, 0, 9)
        centres, means = [], []
        min_count = 5 if terms.size >= 50 else 1  # a mean over one or two latents is noise, not a trend
        for b in range(10):
            sel = idx == b
            if sel.sum() >= min_count:
                centres.append((edges[b] + edges[b + 1]) / 2)
                means.append(terms[sel].mean())
        ax.plot(centres, means, color="#222222", linewidth=1.4, marker="o", markersize=3)
        frac = float((terms > 0).mean()) if terms.size else float("nan")
        ax.set_title(f"{_short(lab, 30)}\n{terms.size:,} latents, {100 * frac:.0f}% with ≥1 term", fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("base share")
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
    fig.subplots_adjust(wspace=0.28, hspace=0.55)
    return fig


def residual_variance(summary: dict) -> Figure | None:
    steps = [d for d in summary.get("distillation") or [] if _finite(d.get("residual_explained_variance_ratio")).size]
    if not steps:
        return None
    fig = _new_figure(7.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = ax.twinx()
    ax2.spines["right"].set_visible(True)
    ax2.grid(False)
    colors = _palette([d.get("step") or f"step {i + 1}" for i, d in enumerate(steps)])
    for i, d in enumerate(steps):
        lab = d.get("step") or f"step {i + 1}"
        ratio = _finite(d["residual_explained_variance_ratio"])
        comps = np.arange(1, ratio.size + 1)
        ax.plot(comps, ratio, color=colors[lab], marker="o", markersize=2.5, linewidth=1.3, label=lab)
        ax2.plot(comps, np.cumsum(ratio), color=colors[lab], linestyle="--", linewidth=1.0)
    ax.set_xlabel("residual principal direction")
    ax.set_ylabel("explained variance ratio")
    ax2.set_ylabel("cumulative (dashed)")
    ax2.set_ylim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.set_title("Residual variance spectrum per distillation step")
    ax.legend(loc="center right")
    return fig


BUILDERS: dict[str, Callable[[dict], Figure | None]] = {
    "coverage_namespace": coverage_namespace,
    "specificity": specificity,
    "attribution": attribution,
    "coverage_vs_attribution": coverage_vs_attribution,
    "residual_variance": residual_variance,
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
