"""Interpretability reports: figures, HTML, Markdown, JSON.

``render(summary, out_dir, run_info=...)`` is the entry point; ``load_summary``/``load_run_info`` read a
written report folder back (for re-rendering) and ``space_label`` is the key convention for the per-space
sections.
"""

from rd_interp.report.render import RUN_INFO, load_run_info, render
from rd_interp.report.schema import SECTIONS, canonical, dumps, load_summary, space_label, validate

__all__ = ["RUN_INFO", "SECTIONS", "canonical", "dumps", "load_run_info", "load_summary", "render", "space_label",
           "validate"]
