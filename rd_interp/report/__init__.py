"""Interpretability reports: figures, HTML, Markdown, JSON."""
