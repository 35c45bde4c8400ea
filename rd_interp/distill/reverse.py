"""ReverseDistiller: H_rd = [H_small, top (k_l - k_s) PCs of the residual of H_large given H_small].

Fit = one streamed pass of float64 moments (stats.py) + closed-form algebra on k x k matrices
(pcr.py), so it is exact (eigendecompositions, no randomised PCA), works for N beyond RAM, and
gives the same result for in-memory arrays, chunk iterators and stores.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rd_interp.distill.pcr import REGRESSORS, eigh_desc, regression_map, residual_covariance
from rd_interp.distill.stats import PairedMoments, as_2d, first_nonfinite_row, resolve_device, to_tensor
from rd_interp.distill.stores import aligned_chunks, check_aligned, is_store, transform_stores
from rd_interp.io.atomic import read_json, sha256_file, write_json, write_npz
from rd_interp.io.provenance import versions

log = logging.getLogger(__name__)

MODEL_FORMAT = "rd_interp.reverse_distiller/1"
_ARRAYS = ("mean_small_", "mean_large_", "coef_", "residual_mean_", "components_", "explained_variance_",
           "residual_eigenvalues_", "input_eigenvalues_", "input_components_", "large_variance_")


# ------------------------------------------------------------------------------------------------
class ReverseDistiller:
    """Scikit-learn style reverse distillation of one (small, large) pair.

    Parameters
    ----------
    regressor: "pcr" (Johnstone-selected PCs of H_small, the reference's default), "linear" (plain
        OLS on all PCs) or "ridge" (sklearn Ridge(alpha) semantics, intercept fitted).
    sigma_sq: noise variance for the Johnstone threshold; None estimates it as the reference does.
    alpha: ridge penalty. min_variance_explained: PCR fallback when no PC clears the threshold.
    n_components: residual width; default k_large - k_small so the output has k_large columns.
    device: "cpu", "cuda", "cuda:1" or "auto". Statistics are float64 on every device.
    chunk_rows: rows per block when streaming arrays or stores.
    small_name / large_name: model names recorded in the saved metadata and summaries; None takes them
        from the stores' manifests at fit time (fitted as ``small_name_`` / ``large_name_``).

    Follows scikit-learn's estimator contract: parameters are stored as given and never changed by fit,
    fitted state ends in ``_``, ``get_params``/``set_params`` work and ``sklearn.base.clone`` round-trips.
    """

    def __init__(
        self,
        regressor: str = "pcr",
        sigma_sq: float | None = None,
        *,
        alpha: float = 1.0,
        min_variance_explained: float = 0.95,
        n_components: int | None = None,
        device: str = "cpu",
        chunk_rows: int = 65536,
        small_name: str | None = None,
        large_name: str | None = None,
    ):
        self.regressor = regressor
        self.sigma_sq = sigma_sq
        self.alpha = alpha
        self.min_variance_explained = min_variance_explained
        self.n_components = n_components
        self.device = device
        self.chunk_rows = chunk_rows
        self.small_name = small_name
        self.large_name = large_name
        self._validate_params()
        self._cache: dict = {}

    def _validate_params(self) -> None:
        if self.regressor not in REGRESSORS:
            raise ValueError(f"regressor must be one of {REGRESSORS}, got {self.regressor!r}")
        if self.n_components is not None and int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components}")
        if int(self.chunk_rows) < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")

    @classmethod
    def _get_param_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn contract; there are no nested estimators, so `deep` is moot)."""
        return {k: getattr(self, k) for k in self._get_param_names()}

    def set_params(self, **params: Any) -> ReverseDistiller:
        bad = sorted(set(params) - set(self._get_param_names()))
        if bad:
            raise ValueError(f"invalid parameter(s) {bad} for ReverseDistiller; valid: {self._get_param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        self._validate_params()
        self._cache = {}
        return self

    # -- fitting --------------------------------------------------------------------------------
    def _pairs(self, H_small: Any, H_large: Any) -> Iterator[tuple]:
        if H_large is None:
            if isinstance(H_small, (np.ndarray, torch.Tensor)):
                raise ValueError("fit(H_small, H_large): H_large is missing")
            for item in H_small:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise ValueError("fit(chunks): each chunk must be a pair (H_small_chunk, H_large_chunk)")
                yield item[0], item[1]
            return
        sources = [H_small if is_store(H_small) else as_2d(H_small, "H_small"),
                   H_large if is_store(H_large) else as_2d(H_large, "H_large")]
        self._check_dims(sources[0].shape[1] if not is_store(sources[0]) else sources[0].dim,
                         sources[1].shape[1] if not is_store(sources[1]) else sources[1].dim)
        n = check_aligned(sources, ["H_small", "H_large"])
        self._check_rows(n, sources[1].shape[1] if not is_store(sources[1]) else sources[1].dim)
        yield from aligned_chunks(sources, int(self.chunk_rows))

    def _check_dims(self, k_s: int, k_l: int) -> None:
        if k_s >= k_l:
            raise ValueError(
                f"k_small ({k_s}) must be smaller than k_large ({k_l}); reverse distillation adds the large "
                "model's extra dimensions to the small one (did you swap H_small and H_large?)"
            )

    def _check_rows(self, n: int, k_l: int) -> None:
        if n <= k_l:
            raise ValueError(
                f"fewer rows than dimensions: {n} rows for k_large={k_l}; the covariances are then rank "
                f"deficient. Fit on more residues (at least {k_l + 1})."
            )

    def fit(self, H_small: Any, H_large: Any = None) -> ReverseDistiller:
        """Fit on arrays (numpy/torch), two aligned stores, or an iterable of (small, large) chunks."""
        self._validate_params()
        self.small_name_ = self.small_name or (H_small.manifest.get("model") if is_store(H_small) else None)
        self.large_name_ = self.large_name or (H_large.manifest.get("model") if is_store(H_large) else None)
        dev = resolve_device(self.device)
        mom: PairedMoments | None = None
        for i, (x, y) in enumerate(self._pairs(H_small, H_large)):
            x, y = as_2d(x, "H_small"), as_2d(y, "H_large")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"chunk {i}: H_small has {x.shape[0]} rows but H_large has {y.shape[0]}; they must be "
                    "embeddings of the same residues"
                )
            if mom is None:
                self._check_dims(x.shape[1], y.shape[1])
                mom = PairedMoments(x.shape[1], y.shape[1], device=dev)
            elif (x.shape[1], y.shape[1]) != (mom.k_x, mom.k_y):
                raise ValueError(
                    f"chunk {i}: widths ({x.shape[1]}, {y.shape[1]}) differ from the first chunk's "
                    f"({mom.k_x}, {mom.k_y})"
                )
            mom.update(x, y, where=f"chunk {i}: ")
        if mom is None:
            raise ValueError("fit: no data (empty input)")
        self._check_rows(mom.n, mom.k_y)
        self._fit_moments(mom.finish())
        return self

    def _fit_moments(self, m) -> None:
        p, q, n = m.cov_xx.shape[0], m.cov_yy.shape[0], m.n
        d = int(self.n_components) if self.n_components is not None else q - p
        if d > q:
            raise ValueError(f"n_components={d} exceeds k_large={q}")
        reg = regression_map(m.cov_xx, m.cov_xy, n, regressor=self.regressor, sigma_sq=self.sigma_sq,
                             alpha=float(self.alpha), min_variance_explained=float(self.min_variance_explained))
        W = reg["W"]
        cov_r = residual_covariance(m.cov_xx, m.cov_xy, m.cov_yy, W)
        r_vals, r_vecs = eigh_desc(cov_r)
        self.k_small_, self.k_large_, self.n_samples_, self.n_components_ = p, q, n, d
        self.mean_small_ = m.mean_x
        self.mean_large_ = m.mean_y
        self.coef_ = W
        self.residual_mean_ = np.zeros(q)  # exact: the fit has an intercept, so training residuals have mean 0
        self.components_ = np.ascontiguousarray(r_vecs[:, :d].T)
        self.residual_eigenvalues_ = np.clip(r_vals, 0.0, None)
        self.explained_variance_ = self.residual_eigenvalues_[:d].copy()
        self.input_eigenvalues_ = np.clip(reg["input_eigenvalues"], 0.0, None)
        self.input_components_ = reg["input_components"]
        self.large_variance_ = np.clip(np.diagonal(m.cov_yy).copy(), 0.0, None)
        self.n_significant_pcs_ = int(reg["n_pcs"])
        self.sigma_sq_ = reg["sigma_sq"]
        self.threshold_ = reg["threshold"]
        self.pc_fallback_ = bool(reg["fallback"])
        self._set_derived(residual_variance=np.clip(np.diagonal(cov_r).copy(), 0.0, None))
        self._cache = {}
        log.info("reverse distillation %s -> %s: N=%d, %d/%d PCs kept, R^2=%.4f, residual top-%d captures %.3f",
                 self.small_name_ or p, self.large_name_ or q, n, self.n_significant_pcs_, p, self.r2_, d,
                 float(np.sum(self.residual_explained_variance_ratio_)))

    def _set_derived(self, residual_variance: np.ndarray) -> None:
        """R^2 and variance ratios from per-column variances (kept so load() restores them)."""
        self.residual_variance_ = residual_variance
        vy = self.large_variance_
        # Per-output R^2 averaged uniformly, as sklearn's r2_score (the reference logs this number);
        # a constant output column scores 1 if predicted exactly, else 0 (sklearn's force_finite).
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(vy > 0, 1.0 - residual_variance / np.where(vy > 0, vy, 1.0),
                           np.where(residual_variance > 0, 0.0, 1.0))
        self.r2_per_output_ = per
        self.r2_ = float(per.mean())
        self.r2_variance_weighted_ = float(1.0 - residual_variance.sum() / vy.sum()) if vy.sum() > 0 else 1.0
        total = float(self.residual_eigenvalues_.sum())
        self.residual_explained_variance_ratio_ = (self.explained_variance_ / total if total > 0
                                                   else np.zeros_like(self.explained_variance_))

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ValueError("this ReverseDistiller is not fitted yet; call fit() or load()")

    # -- applying -------------------------------------------------------------------------------
    def _consts(self, dev: torch.device | None, dtype: Any) -> tuple:
        """(mean_x, mean_y + residual_mean, U, W U) in the compute dtype; numpy when dev is None."""
        key = (str(dev), str(dtype))
        if key not in self._cache:
            U = np.ascontiguousarray(np.asarray(self.components_, dtype=np.float64).T)  # q x d
            WU = np.asarray(self.coef_, dtype=np.float64) @ U  # p x d: projection folded into one product
            c = (np.asarray(self.mean_small_, dtype=np.float64),
                 np.asarray(self.mean_large_, dtype=np.float64) + np.asarray(self.residual_mean_, dtype=np.float64),
                 U, WU)
            if dev is None:
                self._cache[key] = tuple(np.ascontiguousarray(a, dtype=dtype) for a in c)
            else:
                self._cache[key] = tuple(torch.from_numpy(a).to(device=dev, dtype=dtype) for a in c)
        return self._cache[key]

    def residual_block(self, x: Any, y: Any, *, where: str = "") -> np.ndarray | torch.Tensor:
        """H_res for one block: numpy on CPU, a torch tensor on the model's accelerator.

        Computed as (y - m_y) U - (x - m_x)(W U): the same value as projecting the residual, with
        d(p + q) instead of q(p + d) multiply-adds per row.
        """
        self._check_fitted()
        dev = resolve_device(self.device)
        if dev.type == "cpu" and not getattr(self, "_torch_path", False):  # tests set _torch_path to cover CUDA code
            xn = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            yn = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
            dtype = np.result_type(xn.dtype, yn.dtype, np.float32)
            mx, my, U, WU = self._consts(None, dtype)
            res = (yn.astype(dtype, copy=False) - my) @ U
            res -= (xn.astype(dtype, copy=False) - mx) @ WU
            ok = bool(np.isfinite(res).all())
        else:
            xt, yt = to_tensor(x), to_tensor(y)
            dtype = torch.promote_types(torch.promote_types(xt.dtype, yt.dtype), torch.float32)
            if not dtype.is_floating_point:
                dtype = torch.float64
            mx, my, U, WU = self._consts(dev, dtype)
            xc = xt.to(device=dev, dtype=dtype) - mx
            yc = yt.to(device=dev, dtype=dtype) - my
            res = torch.addmm(yc @ U, xc, WU, alpha=-1.0)
            ok = bool(torch.isfinite(res).all())
        if not ok:
            r = max(first_nonfinite_row(x), first_nonfinite_row(y))
            raise ValueError(f"{where}NaN or Inf in the input (row {r} of this block)" if r >= 0
                             else f"{where}transform overflowed")
        return res

    def _validate_pair(self, x: Any, y: Any) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"H_small has {x.shape[0]} rows but H_large has {y.shape[0]}; they must be "
                             "embeddings of the same residues")
        if x.shape[1] != self.k_small_ or y.shape[1] != self.k_large_:
            raise ValueError(f"widths ({x.shape[1]}, {y.shape[1]}) do not match the fitted model "
                             f"({self.k_small_}, {self.k_large_})")

    def transform(self, H_small: Any, H_large: Any) -> np.ndarray | torch.Tensor:
        """[H_small, H_res]: numpy in -> numpy out, torch in -> torch out (on H_small's device).

        The first k_small columns are H_small itself (exactly), in the promoted dtype (>= float32).
        """
        self._check_fitted()
        x, y = as_2d(H_small, "H_small"), as_2d(H_large, "H_large")
        self._validate_pair(x, y)
        is_torch = isinstance(x, torch.Tensor)
        n, p, d = x.shape[0], self.k_small_, self.n_components_
        if is_torch:
            yt = to_tensor(y)
            dt = torch.promote_types(torch.promote_types(x.dtype, yt.dtype), torch.float32)
            out = torch.empty((n, p + d), dtype=dt, device=x.device)
        else:
            yn = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
            dt = np.result_type(x.dtype, yn.dtype, np.float32)
            out = np.empty((n, p + d), dtype=dt)
            y = yn
        step = int(self.chunk_rows)
        for start in range(0, n, step):
            stop = min(n, start + step)
            res = self.residual_block(x[start:stop], y[start:stop], where=f"rows {start}-{stop - 1}: ")
            out[start:stop, :p] = x[start:stop]
            if is_torch:
                out[start:stop, p:] = to_tensor(res).to(device=out.device, dtype=out.dtype)
            else:
                out[start:stop, p:] = res.cpu().numpy() if isinstance(res, torch.Tensor) else res
        return out

    def transform_chunks(self, chunks: Iterable[tuple]) -> Iterator[np.ndarray]:
        """Apply block by block (e.g. to paired_chunks(...)) without holding everything in memory."""
        for x, y in chunks:
            yield self.transform(x, y)

    def fit_transform(self, H_small: Any, H_large: Any) -> np.ndarray | torch.Tensor:
        return self.fit(H_small, H_large).transform(H_small, H_large)

    def transform_store(self, store_small: Any, store_large: Any, out_path: str | os.PathLike, *,
                        dtype: str | None = None, progress: bool = False) -> Any:
        """Write [H_small, H_res] of two aligned stores to a new store (resumable)."""
        return transform_stores(lambda blocks: self.transform(blocks[0], blocks[1]), [store_small, store_large],
                                out_path, dim=self.k_small_ + self.n_components_, model=self.model_name(),
                                fingerprint=self.fingerprint(), dtype=dtype, chunk_rows=int(self.chunk_rows),
                                progress=progress, blocks=self.blocks())

    def blocks(self) -> dict[str, list[int]]:
        """Column layout of the output: the base prefix (= H_small) and the residual block."""
        self._check_fitted()
        p = int(self.k_small_)
        return {"base": [0, p], "residual": [p, p + int(self.n_components_)]}

    # -- reporting ------------------------------------------------------------------------------
    def model_name(self) -> str:
        return f"rd:{self.small_name_ or self.k_small_}->{self.large_name_ or self.k_large_}"

    def summary(self) -> dict:
        """JSON-able diagnostics for reports."""
        self._check_fitted()
        ratio = self.residual_explained_variance_ratio_
        return {
            "step": self.model_name(),
            "small": self.small_name_,
            "large": self.large_name_,
            "regressor": self.regressor,
            "k_small": int(self.k_small_),
            "k_large": int(self.k_large_),
            "n_components": int(self.n_components_),
            "n_samples": int(self.n_samples_),
            "n_significant_pcs": int(self.n_significant_pcs_),
            "pc_fallback": bool(self.pc_fallback_),
            "sigma_sq": None if self.sigma_sq_ is None else float(self.sigma_sq_),
            "threshold": None if self.threshold_ is None else float(self.threshold_),
            "alpha": self.alpha if self.regressor == "ridge" else None,
            "r2": float(self.r2_),
            "r2_variance_weighted": float(self.r2_variance_weighted_),
            "residual_variance_fraction": float(self.residual_variance_.sum() / self.large_variance_.sum())
            if self.large_variance_.sum() > 0 else 0.0,
            "residual_captured_fraction": float(np.sum(ratio)),
            "residual_explained_variance_ratio": [float(v) for v in ratio],
        }

    def fingerprint(self) -> str:
        """sha256 of the fitted arrays: identifies the model in derived stores' manifests."""
        self._check_fitted()
        h = hashlib.sha256()
        for k in _ARRAYS:
            a = np.ascontiguousarray(getattr(self, k), dtype=np.float64)
            h.update(k.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
        """Directory with distiller.npz (arrays, no pickle) and distiller.json (metadata + checksum)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in _ARRAYS}
        arrays["residual_variance_"] = self.residual_variance_
        write_npz(path / "distiller.npz", **arrays)
        params = self.get_params()
        params["device"] = "cpu" if params["device"] != "auto" else "auto"
        meta = {
            "format": MODEL_FORMAT,
            "params": params,
            "family": {"small": self.small_name_, "large": self.large_name_},
            "fitted": {"k_small": self.k_small_, "k_large": self.k_large_, "n_samples": self.n_samples_,
                       "n_components": self.n_components_, "n_significant_pcs": self.n_significant_pcs_,
                       "sigma_sq": self.sigma_sq_, "threshold": self.threshold_, "pc_fallback": self.pc_fallback_},
            "summary": self.summary(),
            "fingerprint": self.fingerprint(),
            "npz_sha256": sha256_file(path / "distiller.npz"),
            "versions": versions(),
            **({"extra": extra} if extra else {}),
        }
        write_json(path / "distiller.json", meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> ReverseDistiller:
        path = Path(path)
        mpath, npath = path / "distiller.json", path / "distiller.npz"
        for f in (mpath, npath):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing (not a saved ReverseDistiller directory?)")
        meta = read_json(mpath)
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"{mpath}: format {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
        if sha256_file(npath) != meta.get("npz_sha256"):
            raise ValueError(f"{npath}: checksum does not match {mpath} (file changed or corrupt)")
        params = dict(meta["params"])
        if device is not None:
            params["device"] = device
        obj = cls(**params)
        with np.load(npath, allow_pickle=False) as z:
            for k in _ARRAYS:
                if k not in z:
                    raise KeyError(f"{npath}: array {k!r} missing")
                setattr(obj, k, np.asarray(z[k], dtype=np.float64))
            resid_var = np.asarray(z["residual_variance_"], dtype=np.float64)
        f = meta["fitted"]
        obj.k_small_, obj.k_large_ = int(f["k_small"]), int(f["k_large"])
        obj.n_samples_, obj.n_components_ = int(f["n_samples"]), int(f["n_components"])
        obj.n_significant_pcs_ = int(f["n_significant_pcs"])
        obj.sigma_sq_, obj.threshold_ = f["sigma_sq"], f["threshold"]
        obj.pc_fallback_ = bool(f["pc_fallback"])
        fam = meta.get("family") or {}
        obj.small_name_, obj.large_name_ = fam.get("small"), fam.get("large")
        obj._set_derived(resid_var)
        if obj.fingerprint() != meta.get("fingerprint"):
            raise ValueError(f"{path}: arrays do not match the recorded fingerprint")
        return obj

    # -- interoperability with the reference implementation -------------------------------------
    @classmethod
    def from_reference(cls, path: str | os.PathLike, **kwargs: Any) -> ReverseDistiller:
        """Wrap a published `reverse-distillation` npz scaler; transform() then equals its step()."""
        from rd_interp.distill.reference import load_reference_npz

        ref = load_reference_npz(path)
        obj = cls(regressor=ref.regressor, **kwargs)
        obj.small_name_, obj.large_name_ = obj.small_name, obj.large_name
        p, q, d = ref.k_small, ref.k_large, ref.pca_components.shape[0]
        obj.k_small_, obj.k_large_, obj.n_components_ = p, q, d
        obj.n_samples_ = -1  # not recorded in the reference files
        obj.mean_small_ = ref.input_mean
        obj.mean_large_ = ref.intercept + ref.output_mean
        obj.coef_ = ref.linear_map()
        obj.residual_mean_ = ref.pca_mean
        obj.components_ = ref.pca_components
        obj.explained_variance_ = (ref.explained_variance if ref.explained_variance is not None
                                   else np.full(d, np.nan))
        obj.residual_eigenvalues_ = obj.explained_variance_.copy()
        obj.input_eigenvalues_ = ref.input_eigenvalues if ref.input_eigenvalues is not None else np.full(p, np.nan)
        obj.input_components_ = ref.input_components if ref.input_components is not None else np.eye(p)
        obj.large_variance_ = np.full(q, np.nan)
        obj.n_significant_pcs_ = ref.n_significant_pcs if ref.n_significant_pcs is not None else p
        obj.sigma_sq_, obj.threshold_ = ref.sigma_sq, ref.threshold
        obj.pc_fallback_ = False
        obj.residual_variance_ = np.full(q, np.nan)
        obj.r2_ = obj.r2_variance_weighted_ = float("nan")
        obj.r2_per_output_ = np.full(q, np.nan)
        obj.residual_explained_variance_ratio_ = (ref.explained_variance_ratio if ref.explained_variance_ratio
                                                  is not None else np.full(d, np.nan))
        obj._cache = {}
        return obj

    def to_reference_npz(self, path: str | os.PathLike) -> Path:
        """Write this model with the reference's npz keys so `reverse-distillation` can load it."""
        self._check_fitted()
        W, mx, my = self.coef_, self.mean_small_, self.mean_large_
        arrays: dict[str, Any] = {}
        if self.regressor == "pcr":
            m = self.n_significant_pcs_
            Vm = self.input_components_[:, :m]
            arrays.update({
                "regressor__coef_": (Vm.T @ W).T,  # W = V_m B exactly for PCR
                "regressor__intercept_": np.zeros(self.k_large_),
                "regressor__input_mean_": mx,
                "regressor__output_mean_": my,
                "regressor__input_components_": self.input_components_,
                "regressor__input_eigenvalues_": self.input_eigenvalues_,
                "regressor__n_significant_pcs_": np.int64(m),
                "regressor__johnstone_threshold_": np.float64(self.threshold_),
                "regressor__sigma_sq_": np.float64(self.sigma_sq_),
            })
        else:
            arrays.update({
                "regressor__coef_": W.T,
                "regressor__intercept_": my - mx @ W,
                "regressor__n_features_in_": np.int64(self.k_small_),
            })
        arrays.update({
            "pca__mean_": self.residual_mean_,
            "pca__components_": self.components_,
            "pca__explained_variance_": self.explained_variance_,
            "pca__explained_variance_ratio_": self.residual_explained_variance_ratio_,
            "pca__n_components": np.int64(self.n_components_),
        })
        write_npz(path, **arrays)
        return Path(path)

    def __repr__(self) -> str:
        fitted = f", fitted N={self.n_samples_}, {self.k_small_}->{self.k_large_}" if hasattr(self, "coef_") else ""
        return f"ReverseDistiller(regressor={self.regressor!r}, sigma_sq={self.sigma_sq!r}{fitted})"
