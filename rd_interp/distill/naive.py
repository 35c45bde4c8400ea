"""Naive baseline: PCA of the concatenation [H_small, H_large] down to k_large dimensions.

Why keep it: it is the obvious alternative to reverse distillation (same output width, also linear),
but it mixes the two models' features in every output column, so the small model's features are not
a prefix. Comparing SAE/GO results on both shows what the rd structure buys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rd_interp.distill.pcr import eigh_desc
from rd_interp.distill.stats import PairedMoments, as_2d, resolve_device
from rd_interp.distill.stores import aligned_chunks, check_aligned, is_store
from rd_interp.io.atomic import read_json, sha256_file, write_json, write_npz
from rd_interp.io.provenance import versions

NAIVE_FORMAT = "rd_interp.naive_concat_pca/1"


class NaiveConcatPCA:
    """Exact (streamed float64 covariance) PCA of [H_small | H_large]; n_components defaults to k_large."""

    def __init__(self, n_components: int | None = None, *, device: str = "cpu", chunk_rows: int = 65536):
        self.n_components = n_components
        self.device = device
        self.chunk_rows = int(chunk_rows)

    def fit(self, H_small: Any, H_large: Any = None) -> NaiveConcatPCA:
        if H_large is None:
            pairs = H_small
        else:
            srcs = [s if is_store(s) else as_2d(s, n) for s, n in ((H_small, "H_small"), (H_large, "H_large"))]
            check_aligned(srcs)
            pairs = aligned_chunks(srcs, self.chunk_rows)
        mom = None
        for i, (x, y) in enumerate(pairs):
            x, y = as_2d(x, "H_small"), as_2d(y, "H_large")
            if mom is None:
                mom = PairedMoments(x.shape[1], y.shape[1], device=resolve_device(self.device))
            mom.update(x, y, where=f"chunk {i}: ")
        if mom is None:
            raise ValueError("fit: no data (empty input)")
        k = self.n_components if self.n_components is not None else mom.k_y
        if not 1 <= k <= mom.k:
            raise ValueError(f"n_components must be in [1, {mom.k}], got {k}")
        if mom.n <= mom.k:
            raise ValueError(f"fewer rows than dimensions: {mom.n} rows for {mom.k} concatenated dims")
        m = mom.finish()
        vals, vecs = eigh_desc(m.cov)
        self.k_small_, self.k_large_, self.n_samples_, self.n_components_ = mom.k_x, mom.k_y, m.n, int(k)
        self.mean_ = np.concatenate([m.mean_x, m.mean_y])
        self.components_ = np.ascontiguousarray(vecs[:, :k].T)
        self.eigenvalues_ = np.clip(vals, 0.0, None)
        self.explained_variance_ = self.eigenvalues_[:k].copy()
        total = self.eigenvalues_.sum()
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else self.explained_variance_
        return self

    def transform(self, H_small: Any, H_large: Any) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise ValueError("NaiveConcatPCA is not fitted yet")
        x, y = as_2d(H_small, "H_small"), as_2d(H_large, "H_large")
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
        if x.shape[0] != y.shape[0] or x.shape[1] != self.k_small_ or y.shape[1] != self.k_large_:
            raise ValueError(f"inputs {x.shape}, {y.shape} do not match the fitted widths "
                             f"({self.k_small_}, {self.k_large_}) or each other's row counts")
        dt = np.result_type(x.dtype, y.dtype, np.float32)
        p = self.k_small_
        Vx = self.components_[:, :p].T.astype(dt)
        Vy = self.components_[:, p:].T.astype(dt)
        out = np.empty((x.shape[0], self.n_components_), dtype=dt)
        for a in range(0, x.shape[0], self.chunk_rows):
            b = min(x.shape[0], a + self.chunk_rows)
            xc = x[a:b].astype(dt, copy=False) - self.mean_[:p].astype(dt)
            yc = y[a:b].astype(dt, copy=False) - self.mean_[p:].astype(dt)
            out[a:b] = xc @ Vx + yc @ Vy
        if not np.isfinite(out).all():
            raise ValueError("NaN or Inf in the input")
        return out

    def fit_transform(self, H_small: Any, H_large: Any) -> np.ndarray:
        return self.fit(H_small, H_large).transform(H_small, H_large)

    def summary(self) -> dict:
        return {"method": "naive_concat_pca", "k_small": int(self.k_small_), "k_large": int(self.k_large_),
                "n_components": int(self.n_components_), "n_samples": int(self.n_samples_),
                "explained_variance_fraction": float(np.sum(self.explained_variance_ratio_))}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_npz(path / "naive.npz", mean_=self.mean_, components_=self.components_, eigenvalues_=self.eigenvalues_)
        write_json(path / "naive.json", {"format": NAIVE_FORMAT, "k_small": self.k_small_, "k_large": self.k_large_,
                                         "n_samples": self.n_samples_, "n_components": self.n_components_,
                                         "npz_sha256": sha256_file(path / "naive.npz"), "versions": versions()})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> NaiveConcatPCA:
        path = Path(path)
        meta = read_json(path / "naive.json")
        if meta.get("format") != NAIVE_FORMAT:
            raise ValueError(f"{path / 'naive.json'}: format {meta.get('format')!r}, expected {NAIVE_FORMAT!r}")
        if sha256_file(path / "naive.npz") != meta["npz_sha256"]:
            raise ValueError(f"{path / 'naive.npz'}: checksum mismatch")
        obj = cls(meta["n_components"])
        with np.load(path / "naive.npz", allow_pickle=False) as z:
            obj.mean_, obj.components_, obj.eigenvalues_ = z["mean_"], z["components_"], z["eigenvalues_"]
        obj.k_small_, obj.k_large_ = meta["k_small"], meta["k_large"]
        obj.n_samples_, obj.n_components_ = meta["n_samples"], meta["n_components"]
        obj.explained_variance_ = obj.eigenvalues_[: obj.n_components_].copy()
        total = obj.eigenvalues_.sum()
        obj.explained_variance_ratio_ = obj.explained_variance_ / total if total > 0 else obj.explained_variance_
        return obj
