"""Self-contained HTML report: inline CSS, figures as base64 data URIs, no scripts, nothing fetched.

A Content-Security-Policy meta tag forbids every network load and every script, so even a hostile string
that escaped escaping could not run or phone home. All text from the summary goes through html.escape.
"""

from __future__ import annotations

import base64
from html import escape

from rd_interp.report import fmt
from rd_interp.report.document import (
    SECTION_TITLES,
    Block,
    Bold,
    BulletList,
    Code,
    DefinitionList,
    Em,
    Estimate,
    FigureBlock,
    Heading,
    Mark,
    Paragraph,
    PValue,
    Table,
    Tag,
    figure_caption,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --ink: #1d2330; --muted: #5b6473; --rule: #d9dde3; --band: #f5f7fa; --accent: #2b5d9b; }
* { box-sizing: border-box; }
body { margin: 0; background: #ffffff; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Helvetica, Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1260px; margin: 0 auto; padding: 28px 32px 64px; }
header h1 { font-size: 26px; margin: 0 0 4px; font-weight: 650; }
header .meta { color: var(--muted); margin: 0 0 18px; }
nav.toc { border: 1px solid var(--rule); border-radius: 6px; padding: 10px 16px; background: var(--band);
  margin-bottom: 8px; }
nav.toc ol { margin: 0; padding-left: 20px; columns: 2; column-gap: 32px; }
nav.toc a { color: var(--accent); text-decoration: none; }
h2 { font-size: 20px; margin: 38px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 16px; margin: 22px 0 6px; }
p { margin: 8px 0; max-width: 920px; }
ul { max-width: 920px; padding-left: 22px; } li { margin: 3px 0; }
code { font: 12.5px/1.4 "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  background: var(--band); padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin: 10px 0 4px; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; text-align: left; vertical-align: top; }
thead th { border-bottom: 1.5px solid var(--ink); font-weight: 600; background: #fff; }
tbody tr { border-bottom: 1px solid var(--rule); }
tbody tr:nth-child(even) { background: var(--band); }
td.num { text-align: right; white-space: nowrap; }
th.num { text-align: right; }
th { font-size: 12.5px; line-height: 1.25; }
table.headline { font-size: 13.5px; } table.headline th, table.headline td { padding: 5px 6px; }
table.headline td:first-child { font-weight: 600; }
table.compact { font-size: 13px; } table.compact th, table.compact td { padding: 3px 9px; }
table.facts thead { display: none; } table.facts td:first-child { color: var(--muted); white-space: nowrap; }
p.table-caption, p.caption, figcaption { color: var(--muted); font-size: 13px; margin: 4px 0 12px; }
p.notrun { color: #8a5a00; background: #fff7e6; border-left: 3px solid #e0a020; padding: 6px 12px; }
p.proteins { font-size: 13.5px; overflow-wrap: anywhere; }
figure { margin: 16px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); border-radius: 4px; }
figcaption b { color: var(--ink); }
sup { font-size: 75%; line-height: 0; }
tbody tr.group { background: #fff; border-bottom: 1px solid var(--ink); }
tbody tr.group th { padding: 12px 8px 3px; font-size: 12.5px; font-weight: 650; color: var(--ink); }
span.mark { color: var(--muted); font-size: 12px; font-style: italic; }
span.ci { display: block; color: var(--muted); font-size: 11.5px; line-height: 1.2; white-space: nowrap;
  font-weight: normal; }
span.ci i { font-size: 11px; }
table.headline td:first-child { min-width: 10em; }
table.steps td:first-child { white-space: nowrap; }
span.tag { display: inline-block; font-size: 11px; line-height: 1.35; padding: 0 6px; border-radius: 8px;
  white-space: nowrap; vertical-align: 1px; }
span.tag-control, span.tag-untrained { background: #eef0f3; color: #4a5260; border: 1px solid #cfd4db; }
span.tag-no { background: #fff3e0; color: #8a4b00; border: 1px solid #f0c88a; }
ul.verdicts { list-style: none; padding-left: 0; }
li.verdict-yes { border-left: 3px solid #2f7d4a; padding: 3px 10px; margin: 6px 0; }
li.verdict-no { border-left: 3px solid #e0a020; padding: 3px 10px; margin: 6px 0; color: var(--muted); }
dl { max-width: 960px; margin: 8px 0; display: grid; grid-template-columns: max-content 1fr; column-gap: 16px;
  row-gap: 5px; font-size: 14px; }
dt { font-weight: 600; } dd { margin: 0; color: var(--ink); }
table.headline tbody tr:not(.group) td:nth-child(7) { font-weight: 600; }
footer { margin-top: 48px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--rule);
  padding-top: 8px; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _span(span) -> str:
    if isinstance(span, list):
        return "".join(_span(s) for s in span)
    if isinstance(span, Code):
        return f"<code>{_e(span.text)}</code>"
    if isinstance(span, Bold):
        return f"<b>{_e(span.text)}</b>"
    if isinstance(span, Em):
        return f"<em>{_e(span.text)}</em>"
    if isinstance(span, Mark):
        return f'<span class="mark">{_e(span.text)}</span>'
    if isinstance(span, Estimate):
        if not span.interval and not span.mark:
            return _e(span.value)
        parts = [_e(span.interval)] if span.interval else []
        if span.mark:
            parts.append(f"<i>{_e(span.mark)}</i>")
        return f'{_e(span.value)}<span class="ci">{" ".join(parts)}</span>'
    if isinstance(span, Tag):
        return f'<span class="tag tag-{_e(span.tone)}">{_e(span.text)}</span>'
    if isinstance(span, PValue):
        parts = fmt.pvalue_parts(span.p)
        if parts is None:
            return _e(fmt.pvalue(span.p))
        mant, exp = parts
        return f"{_e(mant)}&#8239;×&#8239;10<sup>{_e(exp.replace('-', '−'))}</sup>"
    return _e(span)


def _table(block: Table) -> str:
    numeric = block.numeric + [False] * (len(block.headers) - len(block.numeric))
    cls = f' class="{_e(block.css)}"' if block.css else ""
    out = [f"<div class=\"table-wrap\"><table{cls}>", "<thead><tr>"]
    num = ' class="num"'
    out += [f"<th{num if numeric[i] else ''}>{_e(h)}</th>" for i, h in enumerate(block.headers)]
    out.append("</tr></thead><tbody>")
    for i_row, row in enumerate(block.rows):
        if i_row in block.groups:
            out.append(f'<tr class="group"><th colspan="{len(block.headers)}">{_e(block.groups[i_row])}</th></tr>')
        cells = "".join(
            f"<td{num if numeric[i] else ''}>{_span(c)}</td>" for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    if block.caption:
        out.append(f'<p class="table-caption">{_e(block.caption)}</p>')
    return "\n".join(out)


def _block(block: Block, figures: dict[str, bytes]) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{_e(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{_e(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        cls = f' class="{_e(block.css)}"' if block.css else ""
        return f"<p{cls}>{_span(block.text)}</p>"
    if isinstance(block, BulletList):
        classes = block.classes + [None] * (len(block.items) - len(block.classes))
        items = []
        for item, css in zip(block.items, classes):
            cls = f' class="{_e(css)}"' if css else ""
            items.append(f"<li{cls}>{_span(item)}</li>")
        ul = f'<ul class="{_e(block.css)}">' if block.css else "<ul>"
        return ul + "".join(items) + "</ul>"
    if isinstance(block, DefinitionList):
        return "<dl>" + "".join(f"<dt>{_e(term)}</dt><dd>{_span(text)}</dd>" for term, text in block.items) + "</dl>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, FigureBlock):
        title, caption = figure_caption(block.key)
        data = base64.b64encode(figures[block.key]).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(title)}">'
                f"<figcaption><b>{_e(title)}.</b> {_e(caption)}</figcaption></figure>")
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(title: str, meta: list[str], blocks: list[Block], figures: dict[str, bytes],
                footer: str = "") -> str:
    toc = "".join(f'<li><a href="#{_e(a)}">{_e(t)}</a></li>' for a, t in SECTION_TITLES)
    body = "\n".join(_block(b, figures) for b in blocks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><h1>{_e(title)}</h1><p class="meta">{' · '.join(_e(m) for m in meta)}</p></header>
<nav class="toc"><ol>{toc}</ol></nav>
{body}
<footer>{_e(footer)}</footer>
</main>
</body>
</html>
"""
