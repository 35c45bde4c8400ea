"""The summary dict a report renders: canonical form and validation.

Rendering always starts from the canonical form (JSON round trip with sorted keys, non-finite floats as
null) so that ``render(summary)`` and a later re-render from the written ``summary.json`` produce
byte-identical output. Validation is shallow but names the exact record and field that is wrong, because a
bad summary usually means a pipeline bug that a scientist has to report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = (
    "provenance",
    "distillation",
    "sae_quality",
    "coverage",
    "comparisons",
    "specificity",
    "attribution",
    "strata",
    "top_latents",
    "notes",
)


def space_label(space: str, subspace: str | None = None) -> str:
    """The label used for a (space, subspace) pair in figures and as key of ``specificity``/``attribution``.

    The pipeline should key those two sections with this function so colours match across figures.
    """
    if not subspace:
        return str(space)
    return f"{space}/{subspace}"


def _plain(obj: Any, where: str) -> Any:
    """Convert numpy scalars/arrays, tuples and Paths to JSON types; non-finite floats become None."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {type(key).__name__} {key!r}")
            out[key] = _plain(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), where)
    if isinstance(obj, np.generic):
        return _plain(obj.item(), where)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    raise ValueError(f"{where}: cannot store a {type(obj).__name__} in a JSON summary")


def dumps(summary: dict) -> str:
    """Deterministic JSON text of a summary (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(_plain(summary, "summary"), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- validation


def _is_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _is_int(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and float(v).is_integer()
    )


def _is_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _is_num_list(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(_is_num(x) for x in v))


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (_is_str, "a string"),
    "int": (_is_int, "an integer"),
    "num": (_is_num, "a number"),
    "nums": (_is_num_list, "a list of numbers"),
}

ROW_FIELDS: dict[str, dict[str, str]] = {
    "distillation": {
        "step": "str", "k_small": "int", "k_large": "int", "n_samples": "int", "n_significant_pcs": "int",
        "sigma_sq": "num", "threshold": "num", "r2": "num", "residual_explained_variance_ratio": "nums",
    },
    "sae_quality": {
        "space": "str", "subspace": "str", "seed": "int", "architecture": "str", "n_latents": "int", "k": "int",
        "fvu": "num", "mse": "num", "cosine": "num", "l0": "num", "dead_fraction": "num", "dense_fraction": "num",
    },
    "coverage": {
        "space": "str", "subspace": "str", "control": "str", "namespace": "str", "n_terms_mean": "num",
        "n_terms_sd": "num", "n_terms_ci": "nums", "n_terms_per_seed": "nums",
        "latents_with_term_fraction_mean": "num", "terms_per_latent_mean": "num", "general_fraction_mean": "num",
        "depth_mean": "num", "ic_mean": "num",
    },
    "comparisons": {
        "a": "str", "b": "str", "metric": "str", "test": "str", "statistic": "num", "p": "num", "effect": "num",
    },
    "strata": {
        "space": "str", "stratum": "str", "n_latents": "int", "n_terms": "int", "depth_mean": "num",
        "ic_mean": "num",
    },
    "top_latents": {"space": "str", "seed": "int", "latent": "int", "n_terms": "int"},
}
TERM_FIELDS = {
    "go_id": "str", "name": "str", "namespace": "str", "p_adj": "num", "fold": "num", "depth": "int", "ic": "num",
}
PROTEIN_FIELDS = {"id": "str", "score": "num"}


def _check_fields(row: Any, fields: dict[str, str], where: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    for name, kind in fields.items():
        if name in row:
            ok, what = _KINDS[kind]
            if not ok(row[name]):
                raise ValueError(f"{where}.{name}: expected {what}, got {row[name]!r}")


def validate(summary: Any) -> None:
    """Raise ValueError naming the section/record/field when the summary does not follow the schema."""
    if not isinstance(summary, dict):
        raise ValueError(f"summary: expected an object (dict), got {type(summary).__name__}")
    for key in ("title", "run_id"):
        if key in summary and not isinstance(summary[key], (str, type(None))):
            raise ValueError(f"summary.{key}: expected a string, got {summary[key]!r}")
    for section, fields in ROW_FIELDS.items():
        rows = summary.get(section)
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise ValueError(f"summary.{section}: expected a list of records, got {type(rows).__name__}")
        for i, row in enumerate(rows):
            _check_fields(row, fields, f"summary.{section}[{i}]")
            if section == "coverage":
                ci = row.get("n_terms_ci")
                if ci is not None and len(ci) != 2:
                    raise ValueError(f"summary.coverage[{i}].n_terms_ci: expected [lo, hi], got {ci!r}")
            if section == "top_latents":
                for key, sub in (("best_terms", TERM_FIELDS), ("top_proteins", PROTEIN_FIELDS)):
                    items = row.get(key)
                    if items is None:
                        continue
                    if not isinstance(items, list):
                        raise ValueError(f"summary.top_latents[{i}].{key}: expected a list, got {items!r}")
                    for j, item in enumerate(items):
                        _check_fields(item, sub, f"summary.top_latents[{i}].{key}[{j}]")
    for section, fields in (("specificity", ("depth", "ic", "level")), ("attribution", ("base_share", "n_terms"))):
        block = summary.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise ValueError(f"summary.{section}: expected an object keyed by space label, got {type(block).__name__}")
        for label, entry in block.items():
            _check_fields(entry, {f: "nums" for f in fields}, f"summary.{section}[{label!r}]")
        if section == "attribution":
            for label, entry in block.items():
                share, terms = entry.get("base_share"), entry.get("n_terms")
                if share is not None and terms is not None and len(share) != len(terms):
                    raise ValueError(
                        f"summary.attribution[{label!r}]: base_share has {len(share)} latents but n_terms has "
                        f"{len(terms)}; they must be per-latent and aligned"
                    )
    prov = summary.get("provenance")
    if prov is not None:
        if not isinstance(prov, dict):
            raise ValueError(f"summary.provenance: expected an object, got {type(prov).__name__}")
        for key in ("versions", "config", "data_checksums", "timings"):
            if key in prov and not isinstance(prov[key], (dict, type(None))):
                raise ValueError(f"summary.provenance.{key}: expected an object, got {type(prov[key]).__name__}")
        if prov.get("timings"):
            for stage, sec in prov["timings"].items():
                if not _is_num(sec):
                    raise ValueError(f"summary.provenance.timings[{stage!r}]: expected seconds, got {sec!r}")
        if not _is_num(prov.get("wall_seconds")):
            raise ValueError(f"summary.provenance.wall_seconds: expected seconds, got {prov['wall_seconds']!r}")
        if "seeds" in prov and not (prov["seeds"] is None or isinstance(prov["seeds"], list)):
            raise ValueError(f"summary.provenance.seeds: expected a list, got {prov['seeds']!r}")
    notes = summary.get("notes")
    if notes is not None and not isinstance(notes, list):
        raise ValueError(f"summary.notes: expected a list of strings, got {type(notes).__name__}")


def canonical(summary: dict) -> dict:
    """Validated, JSON-round-tripped copy with sorted keys: the only form the renderers see."""
    if not isinstance(summary, dict):
        raise ValueError(f"summary: expected an object (dict), got {type(summary).__name__}")
    out = json.loads(dumps(summary))  # numpy values -> plain JSON types first, so validation sees numbers
    validate(out)
    return out


def canonical_run_info(run_info: Any) -> dict:
    """Validated JSON form of the per-execution facts (stage timings, device, total wall seconds).

    They differ between two executions of the same config and seed, so they are kept out of
    summary.json (which must then be identical) and written to run_info.json instead.
    """
    if not isinstance(run_info, dict):
        raise ValueError(f"run_info: expected an object (dict), got {type(run_info).__name__}")
    out = json.loads(dumps(run_info))
    timings = out.get("timings")
    if timings is not None:
        if not isinstance(timings, dict):
            raise ValueError(f"run_info.timings: expected an object, got {type(timings).__name__}")
        for stage, sec in timings.items():
            if not _is_num(sec):
                raise ValueError(f"run_info.timings[{stage!r}]: expected seconds, got {sec!r}")
    if not _is_num(out.get("wall_seconds")):
        raise ValueError(f"run_info.wall_seconds: expected seconds, got {out['wall_seconds']!r}")
    if not _is_str(out.get("device")):
        raise ValueError(f"run_info.device: expected a string, got {out['device']!r}")
    return out


def merged_view(summary: dict, run_info: dict | None) -> dict:
    """What the report shows: the summary with this execution's timings/device laid over its provenance."""
    if not run_info:
        return summary
    view = dict(summary)
    prov = dict(summary.get("provenance") or {})
    if run_info.get("timings"):
        prov["timings"] = {**(prov.get("timings") or {}), **run_info["timings"]}
    if run_info.get("device"):
        prov["device"] = run_info["device"]
    if run_info.get("wall_seconds") is not None:
        prov["wall_seconds"] = run_info["wall_seconds"]
    view["provenance"] = prov
    return view


def load_summary(path: str | Path) -> dict:
    """Read a summary.json, or the summary.json of a run/report directory."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "summary.json", path / "report" / "summary.json"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path}: no summary.json here (looked for {', '.join(str(c) for c in candidates)})"
            )
        path = found
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: no such summary file or run directory")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        validate(obj)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return obj
