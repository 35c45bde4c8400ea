"""Read the reference implementation's published npz scalers (`reverse-distillation` 0.1.0).

Why: users have scalers fitted on large corpora with that package; reading them lets them reuse
those without re-fitting and without the package's heavy dependencies. The files are read with
``allow_pickle=False``; only the keys the formula needs are touched, so unrelated object entries in a
file do not force unpickling.

Formula (the reference's ``rdScaler.step`` / ``rdScalerGPUOptimized.step``)::

    pcr:    pred = ((x - input_mean) @ input_components[:, :n]) @ coef.T + intercept + output_mean
    linear: pred = x @ coef.T + intercept            (also ridge)
    res     = (y - pred - pca_mean) @ pca_components.T
    out     = [x, res]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PCR_KEYS = ("regressor__input_mean_", "regressor__output_mean_", "regressor__input_components_",
             "regressor__n_significant_pcs_")
_COMMON_KEYS = ("regressor__coef_", "regressor__intercept_", "pca__mean_", "pca__components_")


@dataclass
class ReferenceScaler:
    regressor: str  # "pcr" or "linear" (linear also covers the reference's ridge files)
    coef: np.ndarray  # (q, m) for pcr, (q, p) for linear
    intercept: np.ndarray  # (q,)
    pca_mean: np.ndarray  # (q,)
    pca_components: np.ndarray  # (d, q)
    input_mean: np.ndarray  # (p,) zeros for linear
    output_mean: np.ndarray  # (q,) zeros for linear
    input_components: np.ndarray | None  # (p, p) pcr only
    n_significant_pcs: int | None
    input_eigenvalues: np.ndarray | None = None
    sigma_sq: float | None = None
    threshold: float | None = None
    explained_variance: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None

    @property
    def k_small(self) -> int:
        return int(self.input_components.shape[0] if self.regressor == "pcr" else self.coef.shape[1])

    @property
    def k_large(self) -> int:
        return int(self.pca_components.shape[1])

    def linear_map(self) -> np.ndarray:
        """W (p x q) with pred = (x - input_mean) @ W + intercept + output_mean."""
        if self.regressor == "pcr":
            return self.input_components[:, : self.n_significant_pcs] @ self.coef.T
        return self.coef.T.copy()

    def step(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The reference's formula verbatim (numpy, in float64), for checks and one-off use."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.regressor == "pcr":
            pcs = (x - self.input_mean) @ self.input_components[:, : self.n_significant_pcs]
            pred = pcs @ self.coef.T + self.intercept + self.output_mean
        else:
            pred = x @ self.coef.T + self.intercept
        res = (y - pred - self.pca_mean) @ self.pca_components.T
        return np.concatenate([x, res], axis=1)


def _get(z, key: str, path: Path, required: bool = True):
    if key not in z.files:
        if required:
            raise KeyError(f"{path}: key {key!r} missing; found {sorted(z.files)}")
        return None
    try:
        val = z[key]
    except ValueError as exc:  # object array: would need pickle
        if not required:
            return None  # optional diagnostics (e.g. a None saved as an object) are skipped
        raise ValueError(f"{path}: entry {key!r} is a pickled object array; refusing to unpickle ({exc})") from None
    return val


def load_reference_npz(path: str | os.PathLike) -> ReferenceScaler:
    """Parse a `reverse-distillation` rd scaler npz (pcr, linear or ridge regressor)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable npz file ({exc})") from None
    with z:
        for k in _COMMON_KEYS:
            _get(z, k, path)
        is_pcr = "regressor__input_components_" in z.files
        f = lambda k, req=True: (None if (v := _get(z, k, path, req)) is None
                                 else np.asarray(v, dtype=np.float64))
        coef = f("regressor__coef_")
        if coef.ndim == 1:
            coef = coef[None, :]
        comps = f("pca__components_")
        q = comps.shape[1]
        intercept = np.broadcast_to(f("regressor__intercept_"), (q,)).copy()
        ev, evr = f("pca__explained_variance_", False), f("pca__explained_variance_ratio_", False)
        if is_pcr:
            for k in _PCR_KEYS:
                _get(z, k, path)
            n = int(np.asarray(z["regressor__n_significant_pcs_"]).item())
            in_comp = f("regressor__input_components_")
            scaler = ReferenceScaler(
                regressor="pcr", coef=coef, intercept=intercept, pca_mean=f("pca__mean_"), pca_components=comps,
                input_mean=f("regressor__input_mean_"), output_mean=f("regressor__output_mean_"),
                input_components=in_comp, n_significant_pcs=n,
                input_eigenvalues=f("regressor__input_eigenvalues_", False),
                sigma_sq=_scalar(f("regressor__sigma_sq_", False)),
                threshold=_scalar(f("regressor__johnstone_threshold_", False)),
                explained_variance=ev, explained_variance_ratio=evr,
            )
            if coef.shape != (q, n) or in_comp.shape[1] < n:
                raise ValueError(f"{path}: coef_ has shape {coef.shape}, expected ({q}, {n}) for "
                                 f"{n} significant PCs")
        else:
            p = coef.shape[1]
            scaler = ReferenceScaler(
                regressor="linear", coef=coef, intercept=intercept, pca_mean=f("pca__mean_"), pca_components=comps,
                input_mean=np.zeros(p), output_mean=np.zeros(q), input_components=None, n_significant_pcs=None,
                explained_variance=ev, explained_variance_ratio=evr,
            )
            if coef.shape[0] != q:
                raise ValueError(f"{path}: coef_ has {coef.shape[0]} outputs but pca components {q} inputs")
    if scaler.pca_mean.shape != (q,):
        raise ValueError(f"{path}: pca__mean_ has shape {scaler.pca_mean.shape}, expected ({q},)")
    if scaler.k_small + comps.shape[0] != q:
        raise ValueError(f"{path}: k_small {scaler.k_small} + {comps.shape[0]} residual components != "
                         f"k_large {q}")
    return scaler


def _scalar(v: np.ndarray | None) -> float | None:
    return None if v is None else float(np.asarray(v).item())
