"""Report rendering: self-contained HTML, escaping, sections, missing data, determinism, CLI re-render."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from report_fixtures import EVIL_GO_NAME, EVIL_PROTEIN, EVIL_SPACE, synthetic_summary

from rd_interp.cli import main as cli_main
from rd_interp.report import canonical, load_summary, render
from rd_interp.report.document import SECTION_TITLES
from rd_interp.report.figures import SPECS

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
    for evil in (EVIL_PROTEIN, EVIL_GO_NAME, EVIL_SPACE, "<script>alert('note')</script>"):
        assert evil not in html
        assert escape(evil, quote=True) in html
    assert "<img src=x" not in html and "<b>35M</b>" not in html
    assert sorted({t for t, _ in _tags(html)} - {"html", "head", "meta", "title", "style", "body", "main", "header",
                                                  "h1", "h2", "h3", "p", "nav", "ol", "ul", "li", "a", "b", "code",
                                                  "div", "table", "thead", "tbody", "tr", "th", "td", "sup",
                                                  "figure", "img", "figcaption", "footer"}) == []
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "<img" not in md
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
    assert "Not run" not in html and "Not run" not in md
    # Key numbers reach the tables, formatted.
    assert "1,234,567" in html  # residues in the distillation table
    assert "0.812" in html  # R^2
    assert "3.2&#8239;×&#8239;10<sup>−4</sup>" in html and "3.20e-04" in md  # p in scientific notation
    assert "30 min 43 s" in html  # stage timing
    assert "a" * 64 in html  # checksum
    assert "sae.n_latents" in html and "2048" in html  # flattened config


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
    s["coverage"][0]["n_terms_mean"] = np.float32(12.5)
    s["coverage"][1]["ic_mean"] = float("nan")
    s["distillation"][0]["r2"] = np.float64(np.inf)
    s["extra_stage"] = {"x": np.arange(3)}
    written = render(s, tmp_path, figures=False)
    assert "sections this report does not draw: extra_stage" in written["report.html"].read_text()
    assert json.loads(written["summary.json"].read_text())["extra_stage"] == {"x": [0, 1, 2]}
    data = json.loads(written["summary.json"].read_text())
    assert data["coverage"][1]["ic_mean"] is None and data["distillation"][0]["r2"] is None
    assert data["coverage"][0]["n_terms_mean"] == 12.5
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
    assert html.count('class="notrun"') >= 8
    assert "<img" not in html and "![" not in md
    assert "How to read this report" in html and "null control" in html.lower()

    # Only some sections: their content appears, the rest says "not run".
    full = synthetic_summary(evil=False)
    part = {"title": "partial", "coverage": full["coverage"], "sae_quality": full["sae_quality"]}
    written = render(part, tmp_path / "part")
    assert sorted(k for k in written if k.startswith("figures/")) == ["figures/coverage_namespace.png"]
    html = written["report.html"].read_text(encoding="utf-8")
    assert "Not run: no reverse distillation" in html and "Not run: no provenance" in html
    assert "Not run: no SAE quality" not in html and "Not run: no GO coverage" not in html


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
        (lambda s: s["coverage"][3].__setitem__("n_terms_ci", [1.0]), "summary.coverage[3].n_terms_ci"),
        (lambda s: s["attribution"]["rd_35M/full"]["n_terms"].pop(), "base_share has 400 latents but n_terms has 399"),
        (lambda s: s["top_latents"][1]["best_terms"][0].__setitem__("p_adj", "0.01"),
         "summary.top_latents[1].best_terms[0].p_adj"),
        (lambda s: s["provenance"]["timings"].__setitem__("sae", "long"), "timings['sae']"),
        (lambda s: s.__setitem__("notes", "text"), "summary.notes"),
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
    bad.write_text('{"coverage": [{"space": "x", "fvu": 1, "n_terms_mean": "many"}]}')
    assert cli_main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "summary.coverage[0].n_terms_mean" in err
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
    s = {
        "coverage": [
            {"space": "esm2_8M", "subspace": "full", "control": "real", "namespace": "BP", "n_terms_mean": 0.0,
             "n_terms_per_seed": [0]},
            {"space": "esm2_8M", "subspace": "full", "control": "real", "namespace": "MF", "n_terms_mean": 3.0,
             "n_terms_ci": [None, None], "n_terms_per_seed": [3]},
            {"space": "lonely"},
        ],
        "specificity": {"esm2_8M/full": {"depth": [], "ic": [], "level": []}},
        "attribution": {"rd/full": {"base_share": [0.0, 1.0, 0.5], "n_terms": [0, 0, 0]}},
        "sae_quality": [{"space": "esm2_8M", "seed": 0, "fvu": None}],
        "distillation": [{"step": "a->b", "residual_explained_variance_ratio": []}],
        "top_latents": [{"space": "esm2_8M/full", "latent": 3, "best_terms": [], "top_proteins": []}],
        "provenance": {"versions": {}, "seeds": [0], "timings": {}},
    }
    written = render(s, tmp_path)
    assert sorted(k for k in written if k.startswith("figures/")) == [
        "figures/attribution.png", "figures/coverage_namespace.png", "figures/coverage_vs_attribution.png"]
    html = written["report.html"].read_text(encoding="utf-8")
    assert "No enriched GO terms." in html
    assert "Namespace" in html  # no 'all' rows: the headline lists namespaces separately
    assert "not run" in html  # the missing null control is said, not silently blank


def test_markdown_parses_with_consistent_tables(rendered):
    """A real CommonMark+tables parser sees every row with its header's cell count and no raw HTML."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    html = md.render((rendered[0] / "report.md").read_text(encoding="utf-8"))
    tables = re.findall(r"<table>.*?</table>", html, flags=re.S)
    assert len(tables) >= 10
    for table in tables:
        n_head = len(re.findall(r"<th[ >]", table))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S):
            assert len(re.findall(r"<td[ >]", row)) == n_head, row
    tags = {t for t, _ in _tags(html)}
    assert not tags & {"script", "iframe", "b"}, tags  # '<b>35M</b>' in a space name stays text
    assert sorted(re.findall(r'<img src="([^"]+)"', html)) == FIGURE_FILES
