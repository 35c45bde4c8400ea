"""Interpretability reports: figures, HTML, Markdown, JSON.

``render(summary, out_dir)`` is the entry point; ``load_summary`` reads a written summary.json back and
``space_label`` is the key convention for the per-space sections.
"""

from rd_interp.report.render import render
from rd_interp.report.schema import SECTIONS, canonical, dumps, load_summary, space_label, validate

__all__ = ["SECTIONS", "canonical", "dumps", "load_summary", "render", "space_label", "validate"]
