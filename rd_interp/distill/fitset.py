"""The rows a distillation (and its control spaces) is fitted on, and which analysis rows are held out.

Why a module: the distill stage and the controls stage must fit on exactly the same rows (the naive
PCA-of-concatenation baseline is comparable to the chain only when both saw the same data), and both
must say where those rows came from. Two cases:

- a separate fit set (inputs["fit"]: embed stages of the fitset stage's FASTA): fitted on its proteins
  (a seeded subset of `train_proteins` of them when there are more), every analysis protein is held out,
  except any that share an id or an exact sequence with a fit protein (counted, warned about, and left
  out of the held-out diagnostics);
- no fit set (distill.fasta = "analysis", the old behaviour): fitted on a seeded subset of the analysis
  proteins; the other analysis proteins are held out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.data.config import ANALYSIS
from rd_interp.distill.stores import aligned_chunks, check_aligned
from rd_interp.io.fasta import read_fasta
from rd_interp.io.inputs import open_store
from rd_interp.io.manifest import Manifest
from rd_interp.io.split import row_budget, seeded_subset
from rd_interp.io.store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass
class FitData:
    """Where a fit's rows are, and which analysis proteins are held out from it."""

    fit_stores: list[EmbeddingStore]  # the stores the fit rows live in (fit set, or the analysis stores)
    fit_proteins: np.ndarray  # indices of the fit proteins in fit_stores
    analysis_stores: list[EmbeddingStore]
    held_out: np.ndarray  # indices of analysis proteins not used in the fit (diagnostics run on these)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able record for the stage result
    row_subset: np.ndarray | None = None  # a residue budget's draw among the fit proteins' rows (see limit)

    @property
    def rows(self) -> np.ndarray | None:
        """Global row indices of the fit rows in fit_stores (None: every row)."""
        if self.row_subset is not None:
            return self.row_subset
        if self.fit_proteins.size == self.fit_stores[0].n_proteins:
            return None
        return self.fit_stores[0].protein_rows(self.fit_proteins)

    def limit(self, max_rows: int, seed: int) -> FitData:
        """At most max_rows fit rows, drawn uniformly over the fit proteins' residues (0: no limit)."""
        rows = self.rows
        everything = np.arange(self.fit_stores[0].n_rows, dtype=np.int64) if rows is None else rows
        if max_rows <= 0 or everything.size <= max_rows:
            return self
        sub = row_budget(everything, max_rows, seed)
        info = {**self.info, "rows": int(sub.size), "rows_available": int(everything.size)}
        return FitData(self.fit_stores, self.fit_proteins, self.analysis_stores, self.held_out, info, sub)

    def fit_sources(self) -> list:
        """What an estimator's fit() takes: the stores themselves (streamed) or the fit rows as arrays."""
        rows = self.rows
        return list(self.fit_stores) if rows is None else [s.take(rows) for s in self.fit_stores]

    def held_out_blocks(self, stores: Sequence[Any] | None = None, chunk_rows: int = 65536) -> Iterator[list]:
        """Aligned float32 row blocks of the held-out analysis proteins (of `stores`, default all analysis
        stores), in store order."""
        stores = list(self.analysis_stores if stores is None else stores)
        mask = np.zeros(stores[0].n_rows, dtype=bool)
        mask[stores[0].protein_rows(self.held_out)] = True
        start = 0
        for blocks in aligned_chunks(stores, chunk_rows):
            n = blocks[0].shape[0]
            keep = mask[start:start + n]
            start += n
            if keep.all():
                yield blocks
            elif keep.any():
                yield [b[keep] for b in blocks]


def sequence_digests(embed: Any) -> dict[str, str] | None:
    """{protein id: sha256 of its sequence} of the FASTA an embed stage embedded; None when unknown.

    The embed stage records its input as an upstream stage (data or fitset: proteins.fasta) or a file.
    """
    if not isinstance(embed, Manifest):
        return None
    ref = embed.inputs.get("data")
    if not isinstance(ref, dict):
        return None
    if "dir" in ref:
        fasta = embed.input("data").path("proteins.fasta")
    elif "path" in ref and Path(ref["path"]).is_file():
        fasta = Path(ref["path"])
    else:
        return None
    return {r.id: hashlib.sha256(r.sequence.encode()).hexdigest() for r in read_fasta(fasta)}


def overlap(fit_ids: Sequence[str], analysis_ids: Sequence[str], fit_seqs: dict[str, str] | None,
            analysis_seqs: dict[str, str] | None) -> dict[str, Any]:
    """How far a fit set and an analysis set overlap, by id and (when both are known) by exact sequence.

    Returns counts and the analysis indices that overlap (key "analysis_overlapping", not JSON-recorded).
    """
    fit_set, ana_set = set(fit_ids), set(analysis_ids)
    shared_ids = [i for i in analysis_ids if i in fit_set]
    by_seq = fit_seqs is not None and analysis_seqs is not None
    fit_hashes = {fit_seqs[i] for i in fit_ids if i in fit_seqs} if by_seq else set()
    ana_hashes = {analysis_seqs[i] for i in analysis_ids if i in analysis_seqs} if by_seq else set()
    fit_hit = [i for i in fit_ids if i in ana_set or (by_seq and fit_seqs.get(i) in ana_hashes)]
    ana_hit = [k for k, i in enumerate(analysis_ids)
               if i in fit_set or (by_seq and analysis_seqs.get(i) in fit_hashes)]
    return {"checked_by": ["id", "sequence"] if by_seq else ["id"],
            "shared_ids": len(shared_ids),
            "shared_sequences": len(fit_hashes & ana_hashes) if by_seq else None,
            "fit_proteins_overlapping": len(fit_hit),
            "analysis_proteins_overlapping": len(ana_hit),
            "analysis_overlapping": np.asarray(ana_hit, dtype=np.int64)}


def _check_same_models(analysis: list, fit: list) -> None:
    """The fit-set stores must come from the same models (and layer) as the analysis stores, in order."""
    if len(fit) != len(analysis):
        raise ValueError(f"distill: {len(fit)} fit-set embeddings for {len(analysis)} analysis embeddings; "
                         "give one per family member, smallest first")
    for k, (a, f) in enumerate(zip(analysis, fit)):
        sa, sf = open_store(a)[0], open_store(f)[0]
        wa = a.params.get("model_sha256") if isinstance(a, Manifest) else None
        wf = f.params.get("model_sha256") if isinstance(f, Manifest) else None
        same = (sa.dim == sf.dim and sa.manifest.get("layer") == sf.manifest.get("layer")
                and sa.manifest.get("model") == sf.manifest.get("model")
                and (wa is None or wf is None or wa == wf))
        if not same:
            raise ValueError(f"distill: fit-set embedding {k} ({sf.manifest.get('model')}, dim {sf.dim}, "
                             f"{sf.path}) is not from the same model/layer as analysis embedding {k} "
                             f"({sa.manifest.get('model')}, dim {sa.dim}, {sa.path})")


def fit_data(inputs: dict, cfg: Any, *, seed: int = 0) -> FitData:
    """The fit rows and held-out analysis proteins for inputs {"embed": [...], "fit": [...] (optional)}.

    `cfg` holds the FitSetConfig fields (a DistillConfig). Raises when every fit protein is also an
    analysis protein (then nothing is held out and "disjoint" would be false); warns on a partial overlap.
    """
    embeds = list(inputs["embed"])
    analysis = [open_store(m)[0] for m in embeds]
    check_aligned(analysis)
    n_ana = analysis[0].n_proteins
    fits = list(inputs.get("fit") or [])
    if not fits:
        if cfg.fasta != ANALYSIS:
            log.warning("distill.fasta = %r but no fit-set embeddings were given: fitting on a seeded subset "
                        "of the analysis set (recorded as fit_set.source = 'analysis')", cfg.fasta)
        n_fit = cfg.train_proteins if cfg.train_proteins and cfg.train_proteins < n_ana else n_ana
        fit_idx = seeded_subset(analysis[0].ids, n_fit, seed)
        held = np.setdiff1d(np.arange(n_ana), fit_idx)
        info = {"source": ANALYSIS, "disjoint": False, "proteins": int(fit_idx.size),
                "rows": int(analysis[0].lengths[fit_idx].sum()), "held_out_proteins": int(held.size),
                "held_out_rows": int(analysis[0].lengths[held].sum()),
                "note": "fitted on a seeded subset of the analysis set; diagnostics on the other analysis proteins"}
        if held.size == 0:
            held = np.arange(n_ana)
            info.update(held_out_proteins=0, held_out_rows=0,
                        note="fitted on every analysis protein: no held-out rows, diagnostics on the training rows")
        return FitData(analysis, fit_idx, analysis, held, info)
    _check_same_models(embeds, fits)
    fit_stores = [open_store(m)[0] for m in fits]
    check_aligned(fit_stores)
    n = fit_stores[0].n_proteins
    fit_idx = (seeded_subset(fit_stores[0].ids, cfg.train_proteins, seed)
               if cfg.train_proteins and cfg.train_proteins < n else np.arange(n))
    fit_ids = [fit_stores[0].ids[i] for i in fit_idx]
    ov = overlap(fit_ids, analysis[0].ids, sequence_digests(fits[0]), sequence_digests(embeds[0]))
    hit = ov.pop("analysis_overlapping")
    if ov["fit_proteins_overlapping"] == len(fit_ids):
        raise ValueError(f"distill: all {len(fit_ids)} fit-set proteins are also in the analysis set (by "
                         f"{' or '.join(ov['checked_by'])}), so the fit set is not disjoint; point distill.fasta "
                         "at other sequences, or set distill.fasta = 'analysis' to fit on a subset of the "
                         "analysis set knowingly")
    if ov["fit_proteins_overlapping"]:
        log.warning("distill: %d of %d fit-set proteins are also in the analysis set (by %s); the %d "
                    "overlapping analysis proteins are left out of the held-out diagnostics",
                    ov["fit_proteins_overlapping"], len(fit_ids), " or ".join(ov["checked_by"]), hit.size)
    held = np.setdiff1d(np.arange(n_ana), hit)
    if held.size == 0:
        raise ValueError(f"distill: every one of the {n_ana} analysis proteins is also in the fit set (by "
                         f"{' or '.join(ov['checked_by'])}), so nothing is held out; point distill.fasta at "
                         "sequences disjoint from the analysis set")
    source = _fit_source(fits[0])
    info = {**source, "disjoint": ov["fit_proteins_overlapping"] == 0, "proteins": int(fit_idx.size),
            "rows": int(fit_stores[0].lengths[fit_idx].sum()), "overlap": ov,
            "held_out_proteins": int(held.size), "held_out_rows": int(analysis[0].lengths[held].sum())}
    return FitData(fit_stores, fit_idx, analysis, held, info)


def _fit_source(fit_embed: Any) -> dict[str, Any]:
    """Where the fit-set embeddings came from: the fitset stage's source and FASTA record, when known."""
    if isinstance(fit_embed, Manifest) and isinstance(fit_embed.inputs.get("data"), dict) \
            and "dir" in fit_embed.inputs["data"]:
        up = fit_embed.input("data")
        rec = up.inputs.get("fasta") if isinstance(up.inputs.get("fasta"), dict) else {}
        return {"source": str(up.result.get("source", up.config.get("fasta", up.stage))),
                "fasta": rec.get("file"), "fasta_sha256": rec.get("sha256"), "fit_stage": up.stage}
    return {"source": "fit stores", "fasta": None, "fasta_sha256": None, "fit_stage": None}
