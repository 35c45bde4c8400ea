"""Latent -> study set of proteins, from a sparse per-protein score matrix.

A latent's study set is the proteins it fires on most: the top N by score (ties broken by row
order, so results never depend on sort stability), or every protein scoring >= tau x the latent's
maximum. Latents active (score > 0) on fewer than ``min_proteins`` proteins are skipped and counted:
a GO test on three proteins says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError


@dataclass
class StudySetConfig:
    mode: Literal["top_n", "fraction_of_max"] = opt(
        "top_n", "study set of a latent: its top_n proteins by score, or every protein >= tau x its max")
    top_n: int = opt(50, "study-set size in top_n mode")
    tau: float = opt(0.5, "fraction of the latent's max score in fraction_of_max mode")
    min_proteins: int = opt(5, "skip latents active on fewer proteins than this (counted)")

    def validate(self) -> None:
        if self.mode not in ("top_n", "fraction_of_max"):
            raise ConfigError(f"enrich.mode must be 'top_n' or 'fraction_of_max', got {self.mode!r}")
        if self.top_n < 1:
            raise ConfigError(f"enrich.top_n must be >= 1, got {self.top_n}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"enrich.tau must be in (0, 1], got {self.tau}")
        if self.min_proteins < 1:
            raise ConfigError(f"enrich.min_proteins must be >= 1, got {self.min_proteins}")


@dataclass
class StudySetInfo:
    """What happened to each latent: how many proteins it is active on, its study size, skipped or not."""

    n_active: np.ndarray      # int64 [n_latents]: proteins with score > 0
    study_size: np.ndarray    # int64 [n_latents]: proteins in the study set (0 when skipped)
    skipped: np.ndarray       # int64 indices of skipped latents (active on < min_proteins)

    @property
    def n_latents(self) -> int:
        return int(self.n_active.size)

    @property
    def n_skipped(self) -> int:
        return int(self.skipped.size)

    @property
    def n_dead(self) -> int:
        return int((self.n_active == 0).sum())

    def to_dict(self) -> dict:
        kept = self.study_size[self.study_size > 0]
        return {
            "n_latents": self.n_latents,
            "n_skipped": self.n_skipped,
            "n_dead": self.n_dead,
            "n_with_study_set": int(kept.size),
            "study_size_min": int(kept.min()) if kept.size else 0,
            "study_size_median": float(np.median(kept)) if kept.size else 0.0,
            "study_size_max": int(kept.max()) if kept.size else 0,
        }


def _as_csc(scores) -> sp.csc_matrix:
    if not sp.issparse(scores):
        arr = np.asarray(scores)
        if arr.ndim != 2:
            raise ValueError(f"scores must be a 2-D [n_proteins, n_latents] matrix, got shape {arr.shape}")
        scores = sp.csc_matrix(arr)
    m = sp.csc_matrix(scores, dtype=np.float64, copy=True)
    m.sum_duplicates()  # canonical form: a protein stored twice in a column counts once, with its summed score
    if m.nnz and not np.isfinite(m.data).all():
        raise ValueError("scores contain NaN or infinite values")
    if m.nnz and (m.data < 0).any():
        raise ValueError("scores must be >= 0 (pooled SAE activations); found negative entries")
    m.eliminate_zeros()
    m.sort_indices()
    return m


def study_sets(scores, cfg: StudySetConfig | None = None) -> tuple[sp.csc_matrix, StudySetInfo]:
    """Study-set indicator [n_proteins, n_latents] (csc, bool) and per-latent bookkeeping."""
    cfg = cfg or StudySetConfig()
    cfg.validate()
    m = _as_csc(scores)
    n_prot, n_lat = m.shape
    n_active = np.diff(m.indptr).astype(np.int64)
    col = np.repeat(np.arange(n_lat), n_active)
    row = m.indices.astype(np.int64)
    val = m.data
    if cfg.mode == "top_n":
        # order within each column: score descending, then row ascending (deterministic ties)
        order = np.lexsort((row, -val, col))
        starts = m.indptr[:-1]
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size) - np.repeat(starts, n_active)
        keep = rank < cfg.top_n
    else:
        colmax = np.zeros(n_lat)
        has = n_active > 0
        colmax[has] = np.maximum.reduceat(val, m.indptr[:-1][has]) if val.size else 0.0
        keep = val >= cfg.tau * colmax[col]
    skip_lat = n_active < cfg.min_proteins
    keep &= ~skip_lat[col]
    ind = sp.csc_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (row[keep], col[keep])), shape=(n_prot, n_lat)
    )
    ind.sort_indices()
    info = StudySetInfo(
        n_active=n_active,
        study_size=np.diff(ind.indptr).astype(np.int64),
        skipped=np.flatnonzero(skip_lat).astype(np.int64),
    )
    return ind, info
