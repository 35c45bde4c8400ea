"""Per-residue heat strips: quantisation, the shared offline page scaffold, and a small strip page.

The strip itself is drawn in the browser (``atlas_assets/strip.js``, a canvas under the sequence with the
maximum marked), so the atlas and the ``explain --html`` page show residues the same way. Activations
travel as uint8 (``round(levels * a / scale)``, scale = the protein's max): 10x smaller than float32 text
and still finer than any colour scale can show.

Pages built here open from disk with no network: inline script and style are allowed by their sha256
only (Content-Security-Policy), data sits in non-executable ``<script type="application/json">`` /
``application/octet-stream`` blocks, and the scripts insert every data string with ``textContent``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.io.atomic import write_text

__all__ = ["StripProtein", "StripTrack", "asset", "quantize", "render_page", "write_strip_page"]


def quantize(values: Any, levels: int = 255) -> tuple[np.ndarray, float]:
    """Non-negative activations [L] -> (uint8 [L] in 0..levels, scale); value ~= q / levels * scale.

    A residue that fires at all stays >= 1 (never rounded to "silent"), so the strip shows every firing."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not 1 <= levels <= 255:
        raise ValueError(f"levels must be in 1..255, got {levels}")
    if v.size and (not np.isfinite(v).all() or (v < 0).any()):
        raise ValueError("per-residue activations must be finite and >= 0")
    scale = float(v.max()) if v.size else 0.0
    if scale <= 0:
        return np.zeros(v.size, np.uint8), 0.0
    q = np.rint(v / scale * levels)
    q[(v > 0) & (q < 1)] = 1
    return q.astype(np.uint8), scale


def asset(name: str) -> str:
    """Text of a file in rd_interp/report/atlas_assets (package data)."""
    return (resources.files("rd_interp.report") / "atlas_assets" / name).read_text(encoding="utf-8")


def json_script(obj: Any) -> str:
    """JSON safe inside <script>: '<', '>' and '&' escaped as \\u sequences (no '</script>' can appear)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(title: str, meta: Mapping[str, Any], chunks: Mapping[str, bytes], script: str, css: str,
                body: str) -> str:
    """A page with inline CSS/JS allowed by hash only, `meta` as JSON (id "atlas-meta") and `chunks` as
    base64 blocks (id "chunk-<key>"). Nothing in it can load from the network."""
    csp = (f"default-src 'none'; script-src {_sha(script)}; style-src {_sha(css)}; img-src data: blob:; "
           "connect-src 'none'; base-uri 'none'; form-action 'none'")
    data = "\n".join(f'<script type="application/octet-stream" id="chunk-{escape(k)}">'
                     f'{base64.b64encode(v).decode("ascii")}</script>' for k, v in chunks.items())
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{escape(csp, quote=False)}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>{escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n{body}\n"
            f'<script type="application/json" id="atlas-meta">{json_script(meta)}</script>\n'
            f"{data}\n<script>{script}</script>\n</body>\n</html>\n")


# ---------------------------------------------------------------------------------------------- strip page
@dataclass
class StripTrack:
    """One latent's activations along one protein."""

    label: str  # e.g. "rd · seed 0 · latent 123"
    values: Any  # float [L] per-residue activations (>= 0)
    terms: list[tuple[str, str, float]] = field(default_factory=list)  # (go_id, name, p_adj)
    note: str = ""


@dataclass
class StripProtein:
    accession: str
    sequence: str
    tracks: list[StripTrack]
    name: str = ""


_STRIP_BODY = """<header class="top"><h1 id="title"></h1><p class="meta" id="subtitle"></p></header>
<main class="single" id="strips"></main>
<noscript><p class="warn">This page needs JavaScript (it runs only code embedded in this file).</p></noscript>"""


def write_strip_page(path: str | Path, proteins: Sequence[StripProtein], *, title: str = "Where latents fire",
                     notes: Sequence[str] = ()) -> Path:
    """A small self-contained page: for each protein, each track as a heat strip under its sequence."""
    data = []
    for p in proteins:
        tracks = []
        for t in p.tracks:
            q, scale = quantize(t.values)
            if q.size != len(p.sequence):
                raise ValueError(f"{p.accession}: track {t.label!r} has {q.size} values for a sequence of "
                                 f"{len(p.sequence)} residues")
            tracks.append({"label": t.label, "note": t.note, "scale": scale, "levels": 255,
                           "q": base64.b64encode(q.tobytes()).decode("ascii"),
                           "terms": [[g, n, float(pv)] for g, n, pv in t.terms]})
        data.append({"acc": p.accession, "name": p.name, "seq": p.sequence, "tracks": tracks})
    meta = {"title": title, "notes": list(notes), "proteins": data}
    script = asset("strip.js") + "\n" + asset("strip_page.js")
    html = render_page(title, meta, {}, script, asset("strip.css"), _STRIP_BODY)
    path = Path(path)
    write_text(path, html)
    return path
