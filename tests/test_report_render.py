"""Report rendering: self-contained HTML, escaping, sections, missing data, determinism, CLI re-render."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections import Counter
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from report_fixtures import (
    EVIL_DEFINITION,
    EVIL_GO_NAME,
    EVIL_PROTEIN,
    EVIL_SPACE,
    EVIL_VERDICT,
    synthetic_summary,
)

from rd_interp.cli import main as cli_main
from rd_interp.report import canonical, figures, load_summary, render
from rd_interp.report.document import SECTION_TITLES
from rd_interp.report.figures import SPECS
from rd_interp.report.markdown import escape_md

FIGURE_FILES = sorted(f"figures/{s.name}" for s in SPECS.values())


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def summary() -> dict:
    return synthetic_summary()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, summary):
    out = tmp_path_factory.mktemp("report")
    written = render(summary, out)
    return out, written


def test_all_files_written(rendered):
    out, written = rendered
    assert sorted(written) == sorted(["report.html", "report.md", "summary.json"] + FIGURE_FILES)
    for rel, path in written.items():
        assert path == out / rel and path.is_file() and path.stat().st_size > 0
    for rel in FIGURE_FILES:
        data = (out / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        # No version-bearing metadata: the same summary must give the same bytes on any matplotlib.
        assert b"Software" not in data and b"matplotlib" not in data.lower()
    umask = os.umask(0)
    os.umask(umask)
    for path in written.values():  # permissions like any file the user creates, not the 0600 of temp files
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    # No temporary files left behind by the atomic writes.
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


class _Tags(HTMLParser):
    """Collect the real tags and attributes (escaped text that looks like a tag is not a tag)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_html_is_self_contained(rendered):
    html = (rendered[0] / "report.html").read_text(encoding="utf-8")
    tags = _tags(html)
    names = {t for t, _ in tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base", "form"}, names
    refs = [(t, k, v) for t, a in tags for k, v in a.items() if k in ("src", "href", "srcset", "action", "data")]
    assert refs, "expected image sources and in-page links"
    for tag, key, ref in refs:
        assert ref.startswith(("data:image/png;base64,", "#")), (tag, key, ref[:80])
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]  # no event handlers
    assert "@import" not in html and "url(" not in html  # CSS fetches nothing
    # A URL in the config is shown as text, never as a link.
    assert "https://example.org/should-not-be-a-link" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.IGNORECASE)
    csp = next(a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp  # the browser refuses any fetch even if something slipped through


def test_figures_embedded_match_files(rendered):
    out, _ = rendered
    html = (out / "report.html").read_text(encoding="utf-8")
    embedded = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]
    on_disk = sorted((out / rel).read_bytes() for rel in FIGURE_FILES)
    assert sorted(embedded) == on_disk
    md = (out / "report.md").read_text(encoding="utf-8")
    for rel in FIGURE_FILES:
        assert f"]({rel})" in md


def test_hostile_strings_are_escaped(rendered):
    out, _ = rendered
    html = (out / "report.html").read_text(encoding="utf-8")
    for evil in (EVIL_PROTEIN, EVIL_GO_NAME, EVIL_SPACE, EVIL_VERDICT, *EVIL_DEFINITION,
                 "<script>alert('note')</script>", "<script>alert('probe')</script>"):
        assert evil not in html
        assert escape(evil, quote=True) in html
    assert "<img src=x" not in html and "<b>35M</b>" not in html and "rd<i>" not in html
    assert sorted({t for t, _ in _tags(html)} - {"html", "head", "meta", "title", "style", "body", "main", "header",
                                                  "h1", "h2", "h3", "p", "nav", "ol", "ul", "li", "a", "b", "code",
                                                  "div", "table", "thead", "tbody", "tr", "th", "td", "sup",
                                                  "figure", "img", "figcaption", "footer", "dl", "dt", "dd",
                                                  "span", "i"}) == []
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    # A hostile verdict cannot open a link or bold text in Markdown.
    verdict_line = next(line for line in md.splitlines() if "alert('verdict')" in line)
    assert "[x\\](https" in verdict_line and "\\*bold\\*" in verdict_line and "&lt;script>" in verdict_line
    # Table cells: a '|' in a protein id or GO name must not split the cell.
    evil_row = next(line for line in md.splitlines() if "EVIL_HUMAN" in line or "onerror" in line)
    assert "\\|" in evil_row
    for line in md.splitlines():
        if line.startswith("| GO id"):
            n_cols = line.count(" | ") + 1
        elif line.startswith("| `GO:"):
            assert len(re.findall(r"(?<!\\)\|", line)) == n_cols + 1, line


def test_all_sections_present(rendered):
    out, _ = rendered
    html = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    for anchor, title in SECTION_TITLES:
        assert f'<h2 id="{anchor}">{escape(title)}</h2>' in html
        assert f"\n## {title}\n" in md
    positions = [html.index(f'<h2 id="{anchor}">') for anchor, _ in SECTION_TITLES]
    assert positions == sorted(positions)
    assert "Not run" not in html and "Not run" not in md
    # Key numbers reach the tables, formatted.
    assert "336,229" in html  # residues in the distillation table
    assert "0.812" in html and "0.969" in html  # R² mean over dims and variance-weighted
    assert "41.2%" in html and "0.830, 0.710, 0.550, …" in html  # leakage: predictable share, canonical corr.
    assert "4.98&#8239;×&#8239;10<sup>−3</sup>" in html and "4.98e-03" in md  # empirical p, scientific
    assert "30 min 43 s" in html  # stage timing
    assert "a" * 64 in html  # checksum
    assert "sae.n_latents" in html and "512" in html  # flattened config
    assert "688,224" in html and "125 M" in html  # family table: parameters, tokens seen
    assert "train_pool (disjoint from the analysis set), 1,000 proteins" in html  # distillation fit set
    assert "0.727 [0.714, 0.739]" in md and "+0.003 [−0.004, +0.010]" in md  # probes, equal-width difference


def test_how_to_read_explains_the_method(rendered, tmp_path):
    html = (rendered[0] / "report.html").read_text(encoding="utf-8")
    section = html[html.index('id="how-to-read"'):html.index('id="models"')]
    # Definitions as a definition list, the builder's order first.
    assert "<dl><dt>non-redundant terms</dt><dd>" in section and section.index("<dt>raw terms") < section.index(
        "<dt>captured")
    for phrase in ("one Benjamini–Hochberg family per SAE and namespace, over all its latents × terms at FDR 0.05",
                   "its 50 most strongly activated proteins", "Student t interval",
                   "permuted within 10 protein-length bins, 200 permutations per SAE", "1/(n + 1) = 4.98e-03",
                   "every SAE in the headline has 512 latents and the same sparsity ratio k / d_in ≈ 0.219",
                   "the SAEs are size-matched", "control: untrained SAE on mini-L"):
        assert escape(phrase, quote=False) in section, phrase
    s = synthetic_summary(evil=False)
    s["headline"][0]["n_latents"] = 768
    s["provenance"]["config"]["enrich"]["correction"] = "per_latent"
    s["headline"] = [r for r in s["headline"] if r["kind"] != "control"]
    html = render(s, tmp_path, figures=False)["report.html"].read_text(encoding="utf-8")
    assert "the SAEs in the headline are not size-matched (latents: 512, 768" in html
    assert "per-latent Benjamini–Hochberg" in html
    assert "none in this summary, so the report cannot show whether the spaces do better than an untrained" in html
    s = synthetic_summary(evil=False)
    for row in s["headline"]:
        row["k"] = 32  # the same k for every input width: the 32-dim residual block's SAE is dense
    html = render(s, tmp_path / "k", figures=False)["report.html"].read_text(encoding="utf-8")
    assert "the SAEs in the headline are not size-matched (latents: 512;" in html


def _cells(md: str, label: str, heading: str) -> list[str]:
    """Cells of the Markdown table row starting with `label` in the section under `heading`."""
    section = md[md.index(f"## {heading}"):]
    section = section[:section.index("\n## ", 1)]
    row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_headline_table(rendered, summary):
    out, _ = rendered
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    head = {r["label"]: r for r in summary["headline"]}
    rd = head["rd.mini-L"]["nonredundant"]
    cells = _cells(md, "rd.mini-L", "Headline: non-redundant GO terms per space")
    assert cells[:6] == ["rd.mini-L", "full", "96", "512", "21", "3"]
    assert cells[6] == f"{rd['mean']:.0f} [{rd['lo']:.0f}, {rd['hi']:.0f}] (t)"  # t interval, marked
    null = head["rd.mini-L"]["null"]
    assert cells[7].startswith(f"{null['mean']:.1f} [") and cells[8] == f"{null['p']:.2e}"
    # Controls come after every space, behind a divider row, and carry a tag.
    section = md[md.index("## Headline"):md.index("### Verdicts")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    divider = next(i for i, line in enumerate(rows) if line.startswith("| **Controls"))
    controls = [i for i, line in enumerate(rows) if "| *[control]* |" in line]
    assert len(rows) == len(head) + 1 and len(controls) == 3 and controls == list(range(divider + 1, len(rows)))
    assert "| control: untrained SAE on mini-L | *[control]* |" in section
    table = html[html.index('<table class="headline">'):]
    table = table[:table.index("</table>")]
    assert table.count('<tr class="group">') == 1 and table.count('class="tag tag-control"') == 3
    assert '<span class="ci">[' in table and "<i>t</i>" in table


def test_interval_methods_are_marked_and_none_shows_no_interval(tmp_path):
    s = synthetic_summary(evil=False)
    two, one = s["headline"][0]["nonredundant"], s["headline"][1]["nonredundant"]
    two.update(method="range", lo=min(two["per_seed"][:2]), hi=max(two["per_seed"][:2]),
               per_seed=two["per_seed"][:2])
    one.update(method="none", lo=None, hi=None, per_seed=one["per_seed"][:1], mean=one["per_seed"][0])
    md = render(s, tmp_path, figures=False)["report.md"].read_text(encoding="utf-8")
    heading = "Headline: non-redundant GO terms per space"
    assert _cells(md, "mini-L", heading)[6] == f"{two['mean']:.0f} [{two['lo']:.0f}, {two['hi']:.0f}] (range)"
    assert _cells(md, "rd.mini-L", heading)[6] == f"{one['mean']:.0f} (n=1)"  # a single seed: no interval at all
    s["headline"][1]["nonredundant"]["lo"] = 600.0
    with pytest.raises(ValueError, match=r"summary.headline\[1\].nonredundant: method 'none' \(a single seed\) "
                                         r"cannot have an interval"):
        render(s, tmp_path / "bad", figures=False)


def _sentences(text: str) -> list[str]:
    return [x for x in re.split(r"(?<=[.;:])\s+", text) if x]


def test_only_verdicts_compare_spaces(rendered, summary):
    """No comparative sentence about a space comes from the renderer: only the builder's verdicts name one."""
    html = (rendered[0] / "report.html").read_text(encoding="utf-8")
    md = (rendered[0] / "report.md").read_text(encoding="utf-8")
    labels = {r["label"] for r in summary["headline"]} | {"rd", "large", "small"}
    verdicts = [v["text"] for v in summary["verdicts"]]
    comparative = re.compile(r"\b(more|fewer|less|better|worse|higher|lower|larger|smaller|beats?|outperforms?)\b"
                             r"[^.]*\bthan\b", re.IGNORECASE)
    for text, esc in ((re.sub(r"<[^>]+>", " ", html), lambda v: escape(v, quote=True)), (md, escape_md)):
        for v in verdicts:
            assert esc(v) in text
            text = text.replace(esc(v), " ")
        offending = [s for s in _sentences(text) if comparative.search(s)
                     and any(re.search(rf"(?<![\w.\[-]){re.escape(lab)}(?![\w\[-])", s) for lab in labels)]
        assert offending == []
    # Each verdict appears once, with its support visible.
    section = html[html.index("<h3>Verdicts</h3>"):html.index('id="comparisons"')]
    for v in summary["verdicts"]:
        css = "verdict-yes" if v["supported"] else "verdict-no"
        assert section.count(f'<li class="{css}">') >= 1
    assert section.count('<li class="verdict-no"><span class="tag tag-no">not supported by the data</span>') == sum(
        not v["supported"] for v in summary["verdicts"])
    assert md.count("- *[not supported by the data]* ") == sum(not v["supported"] for v in summary["verdicts"])


def test_comparisons_table(rendered, summary):
    md = (rendered[0] / "report.md").read_text(encoding="utf-8")
    section = md[md.index("## Comparisons between spaces"):md.index("## Coverage per namespace")]
    c = summary["comparisons"][0]
    assert f"| **A = {c['a']}  ·  B = {c['b']}** |" in section
    row = next(line for line in section.splitlines() if line.startswith(f"| {c['metric']} |"))
    assert f"+{c['diff']:.1f} [" in row and f"{c['p_welch']:.2e}" in row and "1.00e-01" in row and "3 / 3" in row
    assert "smallest attainable value depends only on the seed counts" in section
    assert "No interval" in section


def test_stage_timings_in_pipeline_order(rendered):
    md = (rendered[0] / "report.md").read_text(encoding="utf-8")
    stages = [m for m in re.findall(r"^\| (\w+) \| [\d.]+ (?:s|min)", md, flags=re.MULTILINE)]
    assert stages == ["embed", "distill", "sae", "enrich", "report"]


def test_summary_json_is_canonical_and_unchanged(rendered, summary):
    out, _ = rendered
    text = (out / "summary.json").read_text(encoding="utf-8")
    assert json.loads(text) == canonical(summary)
    assert load_summary(out) == canonical(summary)  # a report directory is accepted too
    assert json.loads(text) == json.loads(json.dumps(summary))  # nothing added, nothing dropped
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_render_twice_is_identical(tmp_path, rendered, summary):
    out1, _ = rendered
    render(copy.deepcopy(summary), tmp_path / "again")
    assert _files(tmp_path / "again") == _files(out1)
    # Re-rendering the written summary.json reproduces every byte: see test_cli_rerenders_from_run_dir_and_file.


def test_user_matplotlib_settings_do_not_leak(tmp_path, summary):
    small = {k: summary[k] for k in ("specificity", "distillation")}  # two figures keep this test quick
    backend = matplotlib.get_backend()
    with matplotlib.rc_context({"font.size": 22, "axes.facecolor": "black", "lines.linewidth": 7}):
        written = render(small, tmp_path / "rc")
        assert matplotlib.rcParams["font.size"] == 22  # the user's settings survive rendering
    assert matplotlib.get_backend() == backend
    assert sorted(k for k in written if k.startswith("figures/")) == [
        "figures/residual_variance.png", "figures/specificity.png"]
    render(small, tmp_path / "plain")
    assert _files(tmp_path / "rc") == _files(tmp_path / "plain")


def test_numpy_values_and_nan_are_accepted(tmp_path):
    s = synthetic_summary(evil=False)
    s["attribution"] = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in s["attribution"].items()}
    s["coverage"][0]["nonredundant"]["mean"] = np.float32(12.5)
    s["coverage"][1]["ic_mean"] = float("nan")
    s["distillation"][0]["r2"] = np.float64(np.inf)
    s["extra_stage"] = {"x": np.arange(3)}
    written = render(s, tmp_path, figures=False)
    assert "sections this report does not draw: extra_stage" in written["report.html"].read_text()
    assert json.loads(written["summary.json"].read_text())["extra_stage"] == {"x": [0, 1, 2]}
    data = json.loads(written["summary.json"].read_text())
    assert data["coverage"][1]["ic_mean"] is None and data["distillation"][0]["r2"] is None
    assert data["coverage"][0]["nonredundant"]["mean"] == 12.5
    assert "NaN" not in written["summary.json"].read_text()


def test_missing_sections_say_not_run(tmp_path):
    written = render({}, tmp_path / "empty")
    assert sorted(written) == ["report.html", "report.md", "summary.json"]
    assert not (tmp_path / "empty" / "figures").exists()
    assert written["summary.json"].read_text() == "{}\n"
    html = written["report.html"].read_text(encoding="utf-8")
    md = written["report.md"].read_text(encoding="utf-8")
    for _, title in SECTION_TITLES:
        assert escape(title) in html and f"## {title}" in md
    assert html.count('class="notrun"') >= 13
    assert "<img" not in html and "![" not in md
    assert "How to read this report" in html and "Null distribution</b>: none in this summary" in html
    assert "No verdicts in this summary" in html

    # Only some sections: their content appears, the rest says "not run".
    full = synthetic_summary(evil=False)
    part = {"title": "partial", "coverage": full["coverage"], "sae_quality": full["sae_quality"],
            "leakage": full["leakage"]}
    written = render(part, tmp_path / "part")
    assert sorted(k for k in written if k.startswith("figures/")) == ["figures/coverage_namespace.png",
                                                                      "figures/leakage.png"]
    html = written["report.html"].read_text(encoding="utf-8")
    assert "Not run: no reverse distillation" in html and "Not run: no provenance" in html
    assert "Not run: no headline" in html and "Not run: no linear probes" in html
    assert "Not run: no SAE quality" not in html and "Not run: no per-namespace GO coverage" not in html
    assert "Not run: no leakage" not in html
    # Without a headline, the per-namespace table also shows all namespaces together.
    assert "All namespaces" in html and "see the headline" not in html


def test_figures_false_and_stale_figures_removed(tmp_path):
    out = tmp_path / "r"
    full = synthetic_summary(evil=False)
    s = {k: full[k] for k in ("specificity", "distillation")}
    render(s, out)
    assert (out / "figures" / "specificity.png").exists()
    del s["specificity"]
    written = render(s, out)
    assert not (out / "figures" / "specificity.png").exists()  # no stale figure left for report.md to show
    assert "figures/specificity.png" not in written
    written = render(s, out, figures=False)
    assert not (out / "figures").exists()
    assert "<img" not in written["report.html"].read_text() and "![" not in written["report.md"].read_text()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.__setitem__("coverage", {"a": 1}), "summary.coverage: expected a list"),
        (lambda s: s["sae_quality"][2].__setitem__("fvu", "low"), "summary.sae_quality[2].fvu: expected a number"),
        (lambda s: s["headline"][1]["nonredundant"].__setitem__("method", "bootstrap"),
         "summary.headline[1].nonredundant.method: expected one of t, range, none, got 'bootstrap'"),
        (lambda s: s["headline"][2]["raw"].__setitem__("lo", 1e9), "summary.headline[2].raw: interval lower end"),
        (lambda s: s["headline"][0].__setitem__("kind", "model"), "summary.headline[0].kind: expected one of space"),
        (lambda s: s["headline"][3]["null"].__setitem__("p", "tiny"), "summary.headline[3].null.p: expected a number"),
        (lambda s: s["coverage"][5]["raw"].__setitem__("per_seed", ["a"]),
         "summary.coverage[5].raw.per_seed: expected a list of numbers"),
        (lambda s: s["comparisons"][0].__setitem__("p_welch", "0.01"), "summary.comparisons[0].p_welch"),
        (lambda s: s["verdicts"][1].pop("supported"), "summary.verdicts[1].supported: required"),
        (lambda s: s["verdicts"][0].__setitem__("supported", "yes"), "summary.verdicts[0].supported: expected true"),
        (lambda s: s["family"][0].__setitem__("probe_macro_auroc", {"BP": "high"}),
         "summary.family[0].probe_macro_auroc: expected an object of numbers"),
        (lambda s: s["leakage"][1].__setitem__("canonical_correlations", "0.8"),
         "summary.leakage[1].canonical_correlations: expected a list of numbers"),
        (lambda s: s["probes"]["rows"][2].__setitem__("width", "wide"), "summary.probes.rows[2].width"),
        (lambda s: s["probes"]["rows"][2].__setitem__("kind", "model"), "summary.probes.rows[2].kind"),
        (lambda s: s["probes"]["truncation"][0].__setitem__("lo", 0.9), "summary.probes.truncation[0]: interval"),
        (lambda s: s["probes"].__setitem__("large_at_equal_width", {"rd": "x"}),
         "summary.probes.large_at_equal_width.rd"),
        (lambda s: s["attribution"]["rd.mini-L"]["relative_share"].pop(),
         "summary.attribution['rd.mini-L']: base_share has 1536 but relative_share has 1535 but n_terms has 1536"),
        (lambda s: s["top_latents"][1]["best_terms"][0].__setitem__("p_adj", "0.01"),
         "summary.top_latents[1].best_terms[0].p_adj"),
        (lambda s: s["provenance"]["timings"].__setitem__("sae", "long"), "timings['sae']"),
        (lambda s: s.__setitem__("notes", "text"), "summary.notes"),
        (lambda s: s["notes"].append(3), "summary.notes[2]: expected a string"),
        (lambda s: s["definitions"].__setitem__("IC", 3), "summary.definitions['IC']: expected a string"),
        (lambda s: s.__setitem__("schema", 1), "summary.schema: this report reads summary schema 2, got 1"),
        (lambda s: s["coverage"][3].__setitem__("n_terms_ci", [1.0, 2.0]),
         "summary.coverage[3]: field 'n_terms_ci' belongs to summary schema 1"),
        (lambda s: s.__setitem__("extra", object()), "summary['extra']: cannot store a object"),
    ],
)
def test_bad_summary_names_the_field(tmp_path, mutate, message):
    s = synthetic_summary(evil=False)
    mutate(s)
    with pytest.raises(ValueError) as err:
        render(s, tmp_path, figures=False)
    assert message in str(err.value)
    assert not (tmp_path / "report.html").exists()


def test_cli_rerenders_from_run_dir_and_file(tmp_path, rendered, capsys):
    out1, _ = rendered
    run_dir = tmp_path / "run"
    (run_dir / "report").mkdir(parents=True)
    (run_dir / "report" / "summary.json").write_bytes((out1 / "summary.json").read_bytes())
    assert cli_main(["report", str(run_dir), "--out", str(tmp_path / "cli")]) == 0
    assert "report.html" in capsys.readouterr().out
    assert _files(tmp_path / "cli") == _files(out1)
    # A summary.json path with no --out re-renders next to it.
    assert cli_main(["report", str(run_dir / "report" / "summary.json"), "--no-figures"]) == 0
    assert (run_dir / "report" / "report.html").is_file() and not (run_dir / "report" / "figures").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "nope" in capsys.readouterr().err
    bad = tmp_path / "summary.json"
    bad.write_text('{"coverage": [1, 2')
    assert cli_main(["report", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid JSON" in err and "line 1" in err
    bad.write_text('{"headline": [{"space": "x", "nonredundant": {"mean": "many"}}]}')
    assert cli_main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "summary.headline[0].nonredundant.mean" in err
    bad.write_text('{"coverage": [{"space": "x", "n_terms_mean": 3}]}')  # a schema-1 summary.json
    assert cli_main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "summary.coverage[0]: field 'n_terms_mean' belongs to summary schema 1" in err and err.count("\n") == 1
    assert cli_main(["report", str(tmp_path / "empty_dir_missing")]) == 1


def test_run_info_shown_but_kept_out_of_summary_json(tmp_path, capsys):
    s = synthetic_summary(evil=False)
    del s["provenance"]["timings"]
    run_a = {"timings": {"embed": 12.5, "sae": 301.0, "report": 1.25}, "device": "cuda:0 (H100)",
             "wall_seconds": 333.3}
    run_b = {"timings": {"sae-rd-s1": 0.02, "embed-mini-S": 0.01, "sae-rd-s0": 0.5, "report": 1}, "device": "cpu",
             "wall_seconds": 2.0}
    a = render(s, tmp_path / "a", figures=False, run_info=run_a)
    b = render(s, tmp_path / "b", figures=False, run_info=run_b)
    # Same config and seed -> identical summary.json, whatever this execution's timings were.
    assert a["summary.json"].read_bytes() == b["summary.json"].read_bytes()
    assert "timings" not in a["summary.json"].read_text()
    assert json.loads(a["run_info.json"].read_text()) == run_a
    md = a["report.md"].read_text()
    assert "| sae | 5 min 01 s | 301.00 |" in md and "5 min 33 s" in md and "cuda:0 (H100)" in md
    md_b = b["report.md"].read_text()
    assert "| sae | 2 | 0.52 s | 0.52 |" in md_b  # stage type totals when a type has several jobs
    assert re.findall(r"^\| ([\w-]+) \| [\d.]+ s \|", md_b, flags=re.MULTILINE) == [
        "embed-mini-S", "sae-rd-s0", "sae-rd-s1", "report"]
    # The CLI re-render carries run_info.json over, so the re-rendered report shows the same timings.
    assert cli_main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "c"), "--no-figures"]) == 0
    assert _files(tmp_path / "c") == _files(tmp_path / "a")
    # Rendering without run_info removes a previous execution's run_info.json.
    written = render(s, tmp_path / "a", figures=False)
    assert "run_info.json" not in written and not (tmp_path / "a" / "run_info.json").exists()
    with pytest.raises(ValueError, match=r"run_info.timings\['sae'\]: expected seconds"):
        render(s, tmp_path / "d", figures=False, run_info={"timings": {"sae": "slow"}})
    (tmp_path / "c" / "run_info.json").write_text("[1, 2]")
    assert cli_main(["report", str(tmp_path / "c")]) == 1
    assert "run_info.json: run_info: expected an object" in capsys.readouterr().err


def test_degenerate_inputs_render(tmp_path):
    """One seed, nothing captured, sparse rows, empty lists: the report still renders and says so."""
    one = {"mean": 0.0, "sd": 0.0, "lo": None, "hi": None, "method": "none", "per_seed": [0.0], "level": 0.95}
    s = {
        "headline": [{"space": "esm2_8M", "label": "esm2_8M", "kind": "space", "n_seeds": 1, "nonredundant": one,
                      "raw": None, "null": None},
                     {"space": "lonely"}],
        "verdicts": [],
        "coverage": [
            {"space": "esm2_8M", "label": "esm2_8M", "namespace": "BP", "nonredundant": one},
            {"space": "esm2_8M", "label": "esm2_8M", "namespace": "MF",
             "nonredundant": {**one, "mean": 3.0, "per_seed": [3.0]}},
            {"space": "lonely"},
        ],
        "specificity": {"esm2_8M": {"depth": [], "ic": [], "level": []}},
        "attribution": {"rd": {"base_share": [0.0, 1.0, 0.5], "n_terms": [0, 0, 0]}},
        "sae_quality": [{"space": "esm2_8M", "seed": 0, "fvu": None}],
        "distillation": [{"step": "a->b", "residual_explained_variance_ratio": []}],
        "leakage": [{"step": "a->b", "canonical_correlations": []}],
        "probes": {"rows": [{"label": "baseline", "kind": "baseline", "width": 21, "macro_auroc": {"mean": 0.6}}],
                   "truncation": [], "large_at_equal_width": None},
        "family": [{"name": "esm2_8M"}],
        "comparisons": [{"a": "x", "b": "y", "metric": "non-redundant GO terms", "diff": 3.0, "lo": None,
                         "hi": None, "n_a": 1, "n_b": 1}],
        "top_latents": [{"space": "esm2_8M", "latent": 3, "best_terms": [], "top_proteins": []}],
        "provenance": {"versions": {}, "seeds": [0], "timings": {}},
    }
    written = render(s, tmp_path)
    assert sorted(k for k in written if k.startswith("figures/")) == [
        "figures/attribution.png", "figures/coverage_namespace.png", "figures/coverage_vs_attribution.png"]
    html = written["report.html"].read_text(encoding="utf-8")
    md = written["report.md"].read_text(encoding="utf-8")
    assert "No enriched GO terms." in html
    assert "| esm2_8M | full |" not in md and "| 0 (n=1) |" in md  # one seed: the mean alone, marked n=1
    assert "not run" in html  # the missing null is said, not silently blank
    assert "| +3.00 | — |" in md  # a difference without an interval shows no interval
    assert "Not run: no equal-width comparison" in html


def test_markdown_parses_with_consistent_tables(rendered):
    """A real CommonMark+tables parser sees every row with its header's cell count and no raw HTML."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    html = md.render((rendered[0] / "report.md").read_text(encoding="utf-8"))
    tables = re.findall(r"<table>.*?</table>", html, flags=re.DOTALL)
    assert len(tables) >= 10
    for table in tables:
        n_head = len(re.findall(r"<th[ >]", table))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.DOTALL):
            assert len(re.findall(r"<td[ >]", row)) == n_head, row
    tags = {t for t, _ in _tags(html)}
    assert not tags & {"script", "iframe", "b"}, tags  # '<b>35M</b>' in a space name stays text
    assert sorted(re.findall(r'<img src="([^"]+)"', html)) == FIGURE_FILES


def test_coverage_figure_whiskers_follow_the_interval_method(summary):
    """Whiskers only where the method makes an interval: none for one seed, dashed for a two-seed range."""
    s = canonical(copy.deepcopy(summary))
    s["coverage"][0]["nonredundant"].update(method="none", lo=None, hi=None, per_seed=[3.0])
    s["coverage"][1]["nonredundant"]["method"] = "range"
    fig = figures.coverage_namespace(s)
    bars = [c for ax in fig.axes for c in ax.containers if not isinstance(c, ErrorbarContainer)]
    whiskers = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(s["coverage"]) and len(whiskers) == len(s["coverage"]) - 1
    styles = [str(c.lines[2][0].get_linestyles()[0]) for c in whiskers]
    assert sorted(Counter(styles).values()) == [1, len(whiskers) - 1]  # exactly the range row is dashed


def test_fit_set_from_the_distill_record(tmp_path):
    """The distill stage records its fit set as an object; the report says where the map was fitted and whether
    that set overlaps the analysed proteins."""
    s = synthetic_summary(evil=False)
    fit = {"fasta": "train_pool.fasta.gz", "source": "shipped", "proteins": 40, "rows": 14125, "disjoint": True,
           "overlap": {"shared_ids": 0, "shared_sequences": 0}}
    s["distillation"][0]["fit_set"] = fit
    html = render(s, tmp_path / "a", figures=False)["report.html"].read_text(encoding="utf-8")
    assert ("Fitted on train_pool.fasta.gz (shipped); 40 proteins, 14,125 residues; disjoint from the analysis set "
            "(0 shared ids, 0 shared sequences); the analysed proteins are only transformed.") in html
    s["distillation"][0]["fit_set"] = {**fit, "disjoint": False, "overlap": {"shared_ids": 12}}
    html = render(s, tmp_path / "b", figures=False)["report.html"].read_text(encoding="utf-8")
    assert "overlapping the analysis set (12 shared ids)" in html
    del s["distillation"][0]["fit_set"], s["distillation"][0]["n_fit_proteins"]
    html = render(s, tmp_path / "c", figures=False)["report.html"].read_text(encoding="utf-8")
    assert "The summary does not record which proteins the map was fitted on." in html
