"""The probe stage: linear probes from mean-pooled embeddings to frequent GO terms, per space.

A second lens beside SAE coverage (the paper's own): for each space (large, small, rd and its blocks, the
controls), each Matryoshka prefix of the rd space (the first k dims at every chain step's width and at a few
evenly spaced widths) and an amino-acid composition + log length baseline, the macro AUROC of one logistic
regression per GO term on held-out proteins, with a paired bootstrap interval over those proteins. All
feature sets share the proteins, terms, split and resamples, so their differences are paired.
Outputs: probes.json (the report's "probes" section).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rd_interp.data.run import load_analysis_set
from rd_interp.io.atomic import write_json
from rd_interp.io.fasta import read_fasta
from rd_interp.io.inputs import open_store
from rd_interp.io.manifest import Manifest, claim_dir, write_manifest
from rd_interp.io.options import key_dict
from rd_interp.io.split import seeded_subset
from rd_interp.probe.config import ProbeConfig
from rd_interp.probe.features import composition_features
from rd_interp.probe.protocol import go_tasks, macro, paired_difference, probe_go

STAGE = "probe"
OUTPUTS = ("probes.json",)


def prefix_widths(step_widths: list[int], n_truncations: int) -> list[int]:
    """The chain steps' widths plus n_truncations evenly spaced widths below the full width, sorted."""
    full = int(step_widths[-1])
    even = {max(1, int(round(full * i / (n_truncations + 1)))) for i in range(1, n_truncations + 1)}
    return sorted(even | {int(w) for w in step_widths})


def run(inputs: dict, cfg: ProbeConfig, out_dir: str | Path, *, spaces: list[dict], prefixes: dict | None = None,
        store_names: list[str | None] | None = None, seed: int = 0) -> Manifest:
    """inputs: {"data": data stage, "stores": [stage manifests holding stores]}.

    spaces: [{"label", "kind" ("space"|"control"), "store": index into inputs["stores"], "columns": [a, b]|None}];
    store_names: per entry of inputs["stores"], the store's name within a multi-store stage (or None).
    prefixes: {"label": rd label, "store": index, "widths": [chain step widths]} for the truncation curve, and
    "large": the index of the `spaces` entry the full-width rd space is compared with.
    """
    t0 = time.perf_counter()
    d = claim_dir(out_dir, STAGE, OUTPUTS)
    stores = [open_store(m, name)[0] for m, name in zip(inputs["stores"], store_names or [None] * len(inputs["stores"]))]
    ids = list(stores[0].ids)
    rows = np.arange(len(ids)) if not cfg.max_proteins else seeded_subset(ids, cfg.max_proteins, seed)
    sub_ids = [ids[i] for i in rows]
    _, annotations, ontology = load_analysis_set(inputs["data"])
    tasks = go_tasks(sub_ids, annotations, ontology, cfg.n_terms)
    kw = {"seed": seed, "test_fraction": cfg.test_fraction, "n_boot": cfg.n_boot,
          "min_positives": cfg.min_positives, "C": cfg.C}
    pooled: dict[int, np.ndarray] = {}

    def features(store: int, columns) -> np.ndarray:
        if store not in pooled:
            if stores[store].ids != ids:
                raise ValueError(f"{stores[store].path}: proteins differ from {stores[0].path}; stores must align")
            pooled[store] = stores[store].pooled("mean")[rows]
        X = pooled[store]
        return X if columns is None else X[:, columns[0]:columns[1]]

    seqs = {r.id: r.sequence for r in read_fasta(inputs["data"].path("proteins.fasta"))}
    results, out_rows = {}, []
    base = probe_go(composition_features([seqs[i] for i in sub_ids]), tasks, **kw)
    out_rows.append({"label": "amino-acid composition + log length", "kind": "baseline", "width": 21,
                     "macro_auroc": macro(base)})
    for sp in spaces:
        X = features(sp["store"], sp.get("columns"))
        results[sp["label"]] = probe_go(X, tasks, **kw)
        m = macro(results[sp["label"]])
        out_rows.append({"label": sp["label"], "kind": sp["kind"], "width": int(X.shape[1]), "macro_auroc": m,
                         "vs_baseline": paired_difference(results[sp["label"]], base)})
    truncation, equal = [], None
    if prefixes:
        for w in prefix_widths(prefixes["widths"], cfg.n_truncations):
            res = probe_go(features(prefixes["store"], [0, w]), tasks, **kw)
            m = macro(res)
            if m is None:
                continue
            truncation.append({"label": f"{prefixes['label']}[:{w}]", "width": int(w), "macro_auroc": m["mean"],
                               "lo": m["lo"], "hi": m["hi"]})
            if w == prefixes["widths"][-1] and prefixes.get("large") is not None:
                large = spaces[prefixes["large"]]["label"]
                diff = paired_difference(res, results[large])
                equal = {"width": int(w), "rd": m["mean"], "large": (macro(results[large]) or {}).get("mean"), **diff}
    probes = {"task": "one L2 logistic regression per GO term (standardised mean-pooled features); macro AUROC over "
                      "the terms of each namespace on held-out proteins, averaged over namespaces; interval: "
                      "bootstrap over the held-out proteins, paired across feature sets",
              "n_terms": {ns: len(t["terms"]) for ns, t in tasks.items()},
              "n_proteins": len(sub_ids), "level": 0.95, "rows": out_rows, "truncation": truncation,
              "large_at_equal_width": equal}
    write_json(d / "probes.json", probes)
    params = {"seed": seed, "spaces": spaces, "prefixes": prefixes, "store_names": store_names}
    return write_manifest(d, stage=STAGE, config=key_dict(cfg), inputs=inputs, outputs=OUTPUTS, params=params,
                          result={"n_feature_sets": len(out_rows) + len(truncation)},
                          seconds=time.perf_counter() - t0)
