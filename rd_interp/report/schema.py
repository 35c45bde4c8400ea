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

SCHEMA = 2

SECTIONS = (
    "provenance",
    "definitions",
    "family",
    "headline",
    "verdicts",
    "comparisons",
    "coverage",
    "specificity",
    "attribution",
    "strata",
    "distillation",
    "leakage",
    "probes",
    "sae_quality",
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


def row_label(row: dict) -> str:
    """The label of a headline/coverage/sae_quality record: its "label", else space[/subspace]."""
    label = row.get("label")
    if isinstance(label, str) and label:
        return label
    sub = row.get("subspace")
    return space_label(str(row.get("space") or "?"), None if sub in (None, "", "full") else str(sub))


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


def _is_bool(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _is_str_or_obj(v: Any) -> bool:
    return v is None or isinstance(v, (str, dict))


def _is_num_list(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(_is_num(x) for x in v))


def _is_num_map(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(_is_num(x) for x in v.values()))


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (_is_str, "a string"),
    "int": (_is_int, "an integer"),
    "num": (_is_num, "a number"),
    "bool": (_is_bool, "true or false"),
    "text": (_is_str_or_obj, "a string or an object"),
    "nums": (_is_num_list, "a list of numbers"),
    "nummap": (_is_num_map, "an object of numbers (e.g. per namespace)"),
}

# A seed statistic: mean over SAE seeds with its interval ("t": Student t, "range": min-max of 2 seeds,
# "none": a single seed, no interval).
STAT_METHODS = ("t", "range", "none")
STAT_FIELDS = {"mean": "num", "sd": "num", "lo": "num", "hi": "num", "method": "str", "per_seed": "nums",
               "level": "num"}
NULL_FIELDS = {"method": "str", "n_permutations": "int", "mean": "num", "lo": "num", "hi": "num", "p": "num"}
# Nested objects: field name -> (fields, what it is for the error message).
_NESTED: dict[str, dict[str, str]] = {"stat": STAT_FIELDS, "null": NULL_FIELDS}

SPACE_KINDS = ("space", "control")
PROBE_KINDS = ("space", "control", "baseline", "prefix")

ROW_FIELDS: dict[str, dict[str, str]] = {
    "family": {
        "name": "str", "layers": "int", "dim": "int", "params": "int", "tokens_seen": "int", "heldout_ppl": "num",
        "unigram_ppl": "num", "probe_macro_auroc": "nummap",
    },
    "headline": {
        "space": "str", "subspace": "str", "label": "str", "kind": "str", "d_in": "int", "n_latents": "int",
        "k": "int", "n_seeds": "int", "nonredundant": "stat", "raw": "stat", "best_terms": "stat",
        "latent_fraction": "stat", "null": "null", "general_fraction": "num", "depth_mean": "num", "ic_mean": "num",
    },
    "verdicts": {"text": "str", "supported": "bool"},
    "comparisons": {
        "a": "str", "b": "str", "metric": "str", "diff": "num", "lo": "num", "hi": "num", "relative": "num",
        "p_welch": "num", "p_permutation": "num", "min_p_permutation": "num", "n_a": "int", "n_b": "int",
        "level": "num", "test": "str",
    },
    "coverage": {
        "space": "str", "subspace": "str", "label": "str", "kind": "str", "namespace": "str",
        "nonredundant": "stat", "raw": "stat", "general_fraction": "num", "depth_mean": "num", "ic_mean": "num",
        "null": "null",
    },
    "strata": {
        "space": "str", "stratum": "str", "n_seeds": "int", "n_latents": "num", "n_terms": "num",
        "depth_mean": "num", "ic_mean": "num",
    },
    "distillation": {
        "step": "str", "k_small": "int", "k_large": "int", "n_samples": "int", "n_significant_pcs": "int",
        "sigma_sq": "num", "threshold": "num", "r2": "num", "r2_variance_weighted": "num",
        "residual_explained_variance_ratio": "nums", "regressor": "str", "residual_variance_fraction": "num",
        "fit_set": "text", "n_fit_proteins": "int",
    },
    "leakage": {
        "step": "str", "regressor": "str", "evaluated_on": "str", "n_rows": "int",
        "residual_predictable_share": "num", "canonical_correlations": "nums", "r2_large_from_small_vw": "num",
        "r2_large_from_small_mean": "num", "r2_large_from_rd_vw": "num", "r2_large_from_rd_mean": "num",
    },
    "sae_quality": {
        "space": "str", "subspace": "str", "label": "str", "seed": "int", "architecture": "str", "d_in": "int",
        "n_latents": "int", "k": "int", "fvu": "num", "mse": "num", "cosine": "num", "l0": "num",
        "dead_fraction": "num", "dense_fraction": "num", "block_scaling": "bool", "untrained": "bool",
    },
    "top_latents": {"space": "str", "seed": "int", "latent": "int", "n_terms": "int"},
}
REQUIRED = {"verdicts": ("text", "supported")}
KIND_VALUES = {"headline": SPACE_KINDS, "coverage": SPACE_KINDS}
TERM_FIELDS = {
    "go_id": "str", "name": "str", "namespace": "str", "p_adj": "num", "fold": "num", "depth": "int", "ic": "num",
}
PROTEIN_FIELDS = {"id": "str", "score": "num"}
PROBES_FIELDS = {"task": "str", "n_terms": "nummap", "n_proteins": "int", "level": "num"}
PROBE_ROW_FIELDS = {"label": "str", "kind": "str", "width": "int", "per_namespace": "nummap"}
PROBE_AUROC_FIELDS = {"mean": "num", "lo": "num", "hi": "num", "per_namespace": "nummap", "method": "str"}
PROBE_DIFF_FIELDS = {"diff": "num", "lo": "num", "hi": "num"}
TRUNCATION_FIELDS = {"width": "int", "macro_auroc": "num", "lo": "num", "hi": "num", "label": "str"}
EQUAL_WIDTH_FIELDS = {"width": "int", "rd": "num", "large": "num", "diff": "num", "lo": "num", "hi": "num"}
SPECIFICITY_FIELDS = {"depth": "nums", "ic": "nums", "level": "nums"}
ATTRIBUTION_FIELDS = {"base_share": "nums", "relative_share": "nums", "n_terms": "nums", "base_fraction": "num",
                      "margin": "num", "scaling": "str"}
# Fields only a schema-1 summary has: such a file is refused with a clear message instead of half-rendering.
V1_FIELDS = {"coverage": ("n_terms_mean", "n_terms_ci", "control"), "comparisons": ("statistic", "effect")}


def _record_name(row: dict) -> str:
    name = row.get("label") or row.get("space") or row.get("name") or row.get("step")
    return f" (record {name!r})" if isinstance(name, str) and name else ""


def _check_fields(row: Any, fields: dict[str, str], where: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    for name, kind in fields.items():
        if name not in row:
            continue
        value = row[name]
        if kind in _NESTED:
            if value is None:
                continue
            _check_fields(value, _NESTED[kind], f"{where}.{name}")
            if kind == "stat":
                _check_stat(value, f"{where}.{name}")
            continue
        ok, what = _KINDS[kind]
        if not ok(value):
            raise ValueError(f"{where}.{name}: expected {what}, got {value!r}{_record_name(row)}")


def _check_stat(stat: dict, where: str) -> None:
    """An interval is only where its method makes one, and lo <= hi: a report must never show a false CI."""
    method = stat.get("method")
    if method not in STAT_METHODS:
        raise ValueError(f"{where}.method: expected one of {', '.join(STAT_METHODS)}, got {method!r}")
    lo, hi = stat.get("lo"), stat.get("hi")
    if method == "none" and (lo is not None or hi is not None):
        raise ValueError(f"{where}: method 'none' (a single seed) cannot have an interval, got lo={lo!r}, hi={hi!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{where}: interval lower end {lo!r} is above its upper end {hi!r}")


def _check_interval(row: dict, where: str) -> None:
    lo, hi = row.get("lo"), row.get("hi")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{where}: interval lower end {lo!r} is above its upper end {hi!r}")


def _check_rows(summary: dict, section: str, fields: dict[str, str]) -> None:
    rows = summary.get(section)
    if rows is None:
        return
    if not isinstance(rows, list):
        raise ValueError(f"summary.{section}: expected a list of records, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"summary.{section}[{i}]"
        if isinstance(row, dict):
            old = [f for f in V1_FIELDS.get(section, ()) if f in row]
            if old:
                raise ValueError(f"{where}: field {old[0]!r} belongs to summary schema 1; this report reads schema "
                                 f"{SCHEMA}: rebuild summary.json from the run's stages (rd-interp report)")
        _check_fields(row, fields, where)
        for name in REQUIRED.get(section, ()):
            if row.get(name) is None:
                raise ValueError(f"{where}.{name}: required, missing")
        if section in KIND_VALUES and row.get("kind") is not None and row["kind"] not in KIND_VALUES[section]:
            raise ValueError(f"{where}.kind: expected one of {', '.join(KIND_VALUES[section])}, got {row['kind']!r}")
        if section == "comparisons":
            _check_interval(row, where)
        if section == "top_latents":
            for key, sub in (("best_terms", TERM_FIELDS), ("top_proteins", PROTEIN_FIELDS)):
                items = row.get(key)
                if items is None:
                    continue
                if not isinstance(items, list):
                    raise ValueError(f"{where}.{key}: expected a list, got {items!r}")
                for j, item in enumerate(items):
                    _check_fields(item, sub, f"{where}.{key}[{j}]")


def _check_by_label(summary: dict, section: str, fields: dict[str, str]) -> None:
    block = summary.get(section)
    if block is None:
        return
    if not isinstance(block, dict):
        raise ValueError(f"summary.{section}: expected an object keyed by space label, got {type(block).__name__}")
    for label, entry in block.items():
        where = f"summary.{section}[{label!r}]"
        _check_fields(entry, fields, where)
        if section == "attribution":
            lengths = {k: len(entry[k]) for k in ("base_share", "relative_share", "n_terms")
                       if entry.get(k) is not None}
            if len(set(lengths.values())) > 1:
                what = " but ".join(f"{k} has {n}" for k, n in lengths.items())
                raise ValueError(f"{where}: {what} latents; they must be per-latent and aligned")


def _check_probes(probes: Any) -> None:
    where = "summary.probes"
    _check_fields(probes, PROBES_FIELDS, where)
    for key, fields in (("rows", PROBE_ROW_FIELDS), ("truncation", TRUNCATION_FIELDS)):
        rows = probes.get(key)
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise ValueError(f"{where}.{key}: expected a list of records, got {type(rows).__name__}")
        for i, row in enumerate(rows):
            _check_fields(row, fields, f"{where}.{key}[{i}]")
            if key == "truncation":
                _check_interval(row, f"{where}.{key}[{i}]")
                continue
            if row.get("kind") is not None and row["kind"] not in PROBE_KINDS:
                raise ValueError(f"{where}.rows[{i}].kind: expected one of {', '.join(PROBE_KINDS)}, "
                                 f"got {row['kind']!r}")
            for sub, sub_fields in (("macro_auroc", PROBE_AUROC_FIELDS), ("vs_baseline", PROBE_DIFF_FIELDS)):
                if row.get(sub) is not None:
                    _check_fields(row[sub], sub_fields, f"{where}.rows[{i}].{sub}")
                    _check_interval(row[sub], f"{where}.rows[{i}].{sub}")
    equal = probes.get("large_at_equal_width")
    if equal is not None:
        _check_fields(equal, EQUAL_WIDTH_FIELDS, f"{where}.large_at_equal_width")
        _check_interval(equal, f"{where}.large_at_equal_width")


def _check_provenance(prov: Any) -> None:
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
    for key in ("device", "command"):
        if not _is_str(prov.get(key)):
            raise ValueError(f"summary.provenance.{key}: expected a string, got {prov[key]!r}")


def validate(summary: Any) -> None:
    """Raise ValueError naming the section/record/field when the summary does not follow schema 2."""
    if not isinstance(summary, dict):
        raise ValueError(f"summary: expected an object (dict), got {type(summary).__name__}")
    if summary.get("schema") is not None and summary["schema"] != SCHEMA:
        raise ValueError(f"summary.schema: this report reads summary schema {SCHEMA}, got {summary['schema']!r}; "
                         "rebuild summary.json from the run's stages (rd-interp report)")
    for key in ("title", "run_id"):
        if key in summary and not isinstance(summary[key], (str, type(None))):
            raise ValueError(f"summary.{key}: expected a string, got {summary[key]!r}")
    for section, fields in ROW_FIELDS.items():
        _check_rows(summary, section, fields)
    _check_by_label(summary, "specificity", SPECIFICITY_FIELDS)
    _check_by_label(summary, "attribution", ATTRIBUTION_FIELDS)
    if summary.get("probes") is not None:
        _check_probes(summary["probes"])
    if summary.get("provenance") is not None:
        _check_provenance(summary["provenance"])
    defs = summary.get("definitions")
    if defs is not None:
        if not isinstance(defs, dict):
            raise ValueError(
                f"summary.definitions: expected an object of term -> definition, got {type(defs).__name__}")
        for term, text in defs.items():
            if not isinstance(text, str):
                raise ValueError(f"summary.definitions[{term!r}]: expected a string, got {text!r}")
    notes = summary.get("notes")
    if notes is not None:
        if not isinstance(notes, list):
            raise ValueError(f"summary.notes: expected a list of strings, got {type(notes).__name__}")
        for i, note in enumerate(notes):
            if not isinstance(note, str):
                raise ValueError(f"summary.notes[{i}]: expected a string, got {note!r}")


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
