"""Model cards of the shipped family: what a reader should know about a model before reading SAE results.

A report on the mini family is only as meaningful as the biology its embeddings hold. The card of a
shipped member says its shape, size, training tokens, held-out perplexity (from data/models/family.json)
and, when analyses/probe_family.py has been run, the macro AUROC of GO-term probes per namespace
(data/models/probe.json). Models that are not shipped members (real ESM-2, user checkpoints) get no card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rd_interp.plm.esm import shipped_models

FAMILY_FILE = "family.json"
PROBE_FILE = "probe.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc}); restore it from git") from None


def member_card(name: str) -> dict[str, Any] | None:
    """{name, layers, dim, params, tokens_seen, heldout_ppl, unigram_ppl, probe_macro_auroc} of a shipped
    member, or None when `name` is not one. The probe entry is only given when probe.json was computed on
    the same weights (sha256), so a retrained member never shows its predecessor's probes."""
    path = shipped_models().get(str(name))
    if path is None:
        return None
    family = _read(path.parent / FAMILY_FILE) or {}
    rec = (family.get("members") or {}).get(name)
    if rec is None:
        return None
    held = rec.get("heldout") or {}
    card: dict[str, Any] = {"name": name, "layers": rec.get("layers"), "dim": rec.get("dim"),
                            "params": rec.get("n_params"), "tokens_seen": rec.get("tokens_seen"),
                            "heldout_ppl": held.get("perplexity"), "unigram_ppl": held.get("unigram_perplexity"),
                            "probe_macro_auroc": None}
    probe = _read(path.parent / PROBE_FILE) or {}
    row = (probe.get("rows") or {}).get(name)
    if row and row.get("sha256") == rec.get("sha256"):
        card["probe_macro_auroc"] = {ns: row[ns]["macro_auroc"] for ns in ("BP", "MF", "CC") if ns in row}
    return card
