"""Markdown report (GitHub-flavoured tables); figures referenced as files under figures/.

Strings from the summary are neutralised for Markdown: ``|`` cannot split a table cell, ``<``/``>`` cannot
open raw HTML, newlines cannot end a table row, and code spans are fenced longer than any backtick run
inside them.
"""

from __future__ import annotations

import re

from rd_interp.report import fmt
from rd_interp.report.document import (
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
from rd_interp.report.figures import SPECS

# Escaped: backslash, backtick, '*', '|', '_' at a word edge (snake_case inside a word is harmless in
# GitHub Markdown and stays readable), and ']' before '(' (kills inline links/images). '<' becomes an
# entity so no raw HTML can open; '>' alone cannot.
_MD_SPECIAL = re.compile(r"([\\`*|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|\](?=\())")


def escape_md(text: object) -> str:
    """Plain text safe inside a Markdown paragraph or table cell."""
    s = " ".join(str(text).splitlines())
    s = s.replace("&", "&amp;") if re.search(r"&#?\w+;", s) else s  # keep a literal '&lt;' literal
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return s.replace("<", "&lt;")


def code_md(text: object, in_table: bool = False) -> str:
    s = " ".join(str(text).splitlines())
    if in_table:
        s = s.replace("|", "\\|")
    runs = [len(m) for m in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _span(span, in_table: bool = False) -> str:
    if isinstance(span, list):
        return "".join(_span(s, in_table) for s in span)
    if isinstance(span, Code):
        return code_md(span.text, in_table)
    if isinstance(span, Bold):
        return f"**{escape_md(span.text).strip()}**" + (" " if span.text.endswith(" ") else "")
    if isinstance(span, Em):
        return f"*{escape_md(span.text).strip()}*"
    if isinstance(span, Mark):
        return f"*{escape_md(span.text).strip()}*"
    if isinstance(span, Estimate):
        text = escape_md(span.value) + (f" {escape_md(span.interval)}" if span.interval else "")
        return text + (f" ({escape_md(span.mark)})" if span.mark else "")
    if isinstance(span, Tag):
        return f"*[{escape_md(span.text)}]*"
    if isinstance(span, PValue):
        return escape_md(fmt.pvalue(span.p))
    return escape_md(span)


def _table(block: Table) -> str:
    numeric = block.numeric + [False] * (len(block.headers) - len(block.numeric))
    head = "| " + " | ".join(escape_md(h) or " " for h in block.headers) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    lines = [head, rule]
    for i, row in enumerate(block.rows):
        if i in block.groups:
            cells = [f"**{escape_md(block.groups[i]).strip()}**"] + [" "] * (len(block.headers) - 1)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("| " + " | ".join(_span(c, in_table=True) for c in row) + " |")
    if block.caption:
        lines.append("")
        lines.append(f"*{escape_md(block.caption)}*")
    return "\n".join(lines)


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {escape_md(block.text)}"
    if isinstance(block, Paragraph):
        text = _span(block.text)
        return f"*{text}*" if block.css == "notrun" else text
    if isinstance(block, BulletList):
        return "\n".join(f"- {_span(item)}" for item in block.items)
    if isinstance(block, DefinitionList):
        return "\n".join(f"- **{escape_md(term).strip()}**: {_span(text)}" for term, text in block.items)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, FigureBlock):
        title, caption = figure_caption(block.key)
        return f"![{escape_md(title)}](figures/{SPECS[block.key].name})\n\n*{escape_md(title)}.* {escape_md(caption)}"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(title: str, meta: list[str], blocks: list[Block], footer: str = "") -> str:
    parts = [f"# {escape_md(title)}"]
    if meta:
        parts.append(" · ".join(escape_md(m) for m in meta))
    parts += [_block(b) for b in blocks]
    if footer:
        parts.append(f"---\n\n{escape_md(footer)}")
    return "\n\n".join(parts) + "\n"
