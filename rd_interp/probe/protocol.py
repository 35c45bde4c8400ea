"""The GO probe protocol: per namespace, the most frequent terms, one probe each, macro AUROC.

One implementation for the pipeline's probe stage and analyses/probe_family.py: the same terms, split and
bootstrap for every feature set, so macro AUROCs of two feature sets on the same proteins are paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rd_interp.probe.features import label_matrix, top_terms
from rd_interp.probe.linear import ProbeResult, evaluate_probe

NAMESPACES = ("BP", "MF", "CC")


def go_tasks(protein_ids: Sequence[str], annotations, ontology, n_terms: int) -> dict[str, dict]:
    """Per namespace: the proteins annotated in it (row indices), its n_terms most frequent terms, labels."""
    tasks = {}
    for ns in NAMESPACES:
        by = annotations.by_namespace(ontology, ns)
        rows = np.array([i for i, p in enumerate(protein_ids) if p in by], dtype=np.int64)
        pid = [protein_ids[i] for i in rows]
        terms = top_terms(pid, by, n_terms)
        tasks[ns] = {"rows": rows, "ids": pid, "terms": terms, "Y": label_matrix(pid, by, terms)}
    return tasks


def probe_go(X: np.ndarray, tasks: dict[str, dict], *, seed: int = 0, test_fraction: float = 0.2,
             n_boot: int = 1000, min_positives: int = 3, C: float = 1.0) -> dict[str, ProbeResult]:
    """ProbeResult per namespace for features X (rows in the protein order the tasks were built on).

    A namespace without any term that has enough positives and negatives on both sides of the split (a small
    analysis set) is left out; callers see which namespaces are present."""
    out = {}
    for ns, t in tasks.items():
        if not t["terms"] or len(t["ids"]) < 10:
            continue
        Y = t["Y"]
        # a term needs min_positives positives and negatives on both sides of the split (checked again inside)
        if not ((Y.sum(0) >= 2 * min_positives) & ((~Y).sum(0) >= 2 * min_positives)).any():
            continue
        try:
            out[ns] = evaluate_probe(X[t["rows"]], Y, t["ids"], t["terms"], seed=seed, test_fraction=test_fraction,
                                     n_boot=n_boot, min_positives=min_positives, C=C)
        except ValueError as exc:
            if "no term has" not in str(exc):
                raise
    return out


def macro(results: dict[str, ProbeResult]) -> dict | None:
    """Mean over namespaces of the macro AUROC, with the interval from the paired bootstrap draws."""
    ns = list(results)
    if not ns:
        return None
    boot = np.mean([results[n].boot_macro for n in ns], axis=0)
    conf = results[ns[0]].confidence
    a = (1 - conf) / 2
    return {"mean": float(np.mean([results[n].macro_auroc for n in ns])),
            "lo": float(np.nanquantile(boot, a)), "hi": float(np.nanquantile(boot, 1 - a)),
            "per_namespace": {n: float(results[n].macro_auroc) for n in ns}}


def paired_difference(a: dict[str, ProbeResult], b: dict[str, ProbeResult]) -> dict:
    """a - b of the namespace-averaged macro AUROC with its paired bootstrap interval."""
    ns = [n for n in a if n in b]
    if not ns:
        return {"diff": None, "lo": None, "hi": None}
    d = np.mean([a[n].boot_macro - b[n].boot_macro for n in ns], axis=0)
    conf = a[ns[0]].confidence
    q = (1 - conf) / 2
    return {"diff": float(np.mean([a[n].macro_auroc - b[n].macro_auroc for n in ns])),
            "lo": float(np.nanquantile(d, q)), "hi": float(np.nanquantile(d, 1 - q))}
