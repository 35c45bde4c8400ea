"""PCA of the small embedding, Johnstone selection of significant PCs, and the regression on them.

Everything here works on covariance matrices (float64 numpy, on CPU), never on rows, so it is exact
for any N once the moments are accumulated (rd_interp.distill.stats).

The sigma^2 estimate and the fallback rule copy the reference implementation
(`reverse-distillation` 0.1.0, ``PCRegressionWrapper``) so that the same data gives the same number
of PCs; see DESIGN.md "Reverse distillation, precisely".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGRESSORS = ("pcr", "linear", "ridge")


def eigh_desc(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix, deterministic signs.

    Sign rule: each eigenvector's largest-magnitude entry is positive (first one on ties), so a
    refit, another device or another implementation gives the same columns, not their negatives.
    """
    cov = np.asarray(cov, dtype=np.float64)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return vals[::-1].copy(), fix_signs(vecs[:, ::-1])


def fix_signs(vecs: np.ndarray) -> np.ndarray:
    """Flip columns so the largest-|.| entry of each is positive."""
    vecs = np.array(vecs, dtype=np.float64)
    if vecs.size == 0:
        return vecs
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1
    return vecs * signs


def johnstone_sigma_sq(eigenvalues: np.ndarray, n_samples: int, n_features: int) -> float:
    """Noise variance as the reference estimates it.

    Median of the eigenvalues whose ratio to the mean eigenvalue lies below the Marchenko-Pastur edge
    (1 + sqrt(p/N))^2; if none do, the median of the smallest quarter of the eigenvalues.
    """
    eig = np.asarray(eigenvalues, dtype=np.float64)
    edge = (1.0 + np.sqrt(n_features / n_samples)) ** 2
    mean = eig.mean()
    normalized = eig / mean if mean > 0 else np.full_like(eig, np.inf)
    noise = eig[normalized < edge]
    if noise.size > 0:
        return float(np.median(noise))
    return float(np.median(eig[-max(1, n_features // 4):]))


def johnstone_threshold(n_samples: int, n_features: int, sigma_sq: float) -> float:
    """tau = sigma^2 (1 + sqrt(p/N))^2, the largest eigenvalue expected from pure noise."""
    return float(sigma_sq * (1.0 + np.sqrt(n_features / n_samples)) ** 2)


@dataclass
class PCSelection:
    n_significant: int
    sigma_sq: float
    threshold: float
    fallback: bool  # True when no PC cleared the threshold and the variance rule chose n


def select_pcs(
    eigenvalues: np.ndarray,
    n_samples: int,
    *,
    sigma_sq: float | None = None,
    min_variance_explained: float = 0.95,
) -> PCSelection:
    """Keep PCs with eigenvalue > tau; if none survive, enough PCs for `min_variance_explained`."""
    eig = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)  # SVD-derived values are >= 0
    p = eig.size
    if sigma_sq is None:
        sigma_sq = johnstone_sigma_sq(eig, n_samples, p)
    elif not np.isfinite(sigma_sq) or sigma_sq < 0:
        raise ValueError(f"sigma_sq must be a finite number >= 0, got {sigma_sq!r}")
    tau = johnstone_threshold(n_samples, p, sigma_sq)
    n = int(np.sum(eig > tau))
    fallback = False
    if n < 1:
        total = eig.sum()
        if total <= 0:
            raise ValueError("the small embedding has zero variance; nothing to regress on")
        cumvar = np.cumsum(eig) / total
        n = int(min(np.searchsorted(cumvar, min_variance_explained) + 1, p))
        fallback = True
    return PCSelection(n_significant=n, sigma_sq=float(sigma_sq), threshold=tau, fallback=fallback)


def numerical_rank(eigenvalues: np.ndarray, n_features: int) -> int:
    """Eigenvalues of a covariance above round-off (used for plain OLS = minimum-norm least squares)."""
    top = float(eigenvalues[0]) if eigenvalues.size else 0.0
    if top <= 0:
        return 0
    cut = top * max(n_features, 1) * float(np.finfo(np.float64).eps) * 10
    return int((eigenvalues > cut).sum())


def regression_map(
    cov_xx: np.ndarray,
    cov_xy: np.ndarray,
    n_samples: int,
    *,
    regressor: str = "pcr",
    sigma_sq: float | None = None,
    alpha: float = 1.0,
    min_variance_explained: float = 0.95,
) -> dict:
    """Linear map W (p x q) with prediction = (x - mean_x) W + mean_y, plus diagnostics.

    pcr:    W = V_m diag(1/lambda_m) V_m^T cov_xy on the m Johnstone-significant PCs.
    linear: the same on all numerically non-zero PCs (minimum-norm OLS, like scipy lstsq).
    ridge:  W = ((N-1) cov_xx + alpha I)^-1 (N-1) cov_xy, i.e. sklearn's Ridge(alpha) with an intercept.
    """
    if regressor not in REGRESSORS:
        raise ValueError(f"regressor must be one of {REGRESSORS}, got {regressor!r}")
    p = cov_xx.shape[0]
    vals, vecs = eigh_desc(cov_xx)
    out: dict = {"input_eigenvalues": vals, "input_components": vecs, "sigma_sq": None, "threshold": None,
                 "fallback": False}
    if regressor == "pcr":
        sel = select_pcs(vals, n_samples, sigma_sq=sigma_sq,
                         min_variance_explained=min_variance_explained)
        m = sel.n_significant
        rank = numerical_rank(vals, p)
        if m > rank:
            raise ValueError(
                f"{m} PCs were selected but the small embedding has numerical rank {rank}; "
                "pass a larger sigma_sq or use regressor='ridge'"
            )
        out.update(sigma_sq=sel.sigma_sq, threshold=sel.threshold, fallback=sel.fallback)
    elif regressor == "linear":
        m = numerical_rank(vals, p)
        if m == 0:
            raise ValueError("the small embedding has zero variance; nothing to regress on")
    else:
        if not (alpha >= 0 and np.isfinite(alpha)):
            raise ValueError(f"ridge alpha must be a finite number >= 0, got {alpha!r}")
        m = p
    if regressor == "ridge":
        n1 = n_samples - 1
        d = vals * n1 + alpha
        if bool((d <= 0).any()):
            raise ValueError("ridge system is singular (alpha=0 on rank-deficient input); use alpha > 0")
        W = vecs @ ((vecs.T @ cov_xy) * (n1 / d)[:, None])
    else:
        vm = vecs[:, :m]
        W = vm @ ((vm.T @ cov_xy) / vals[:m, None])
    out.update(W=W, n_pcs=m)
    return out


def residual_covariance(cov_xx: np.ndarray, cov_xy: np.ndarray, cov_yy: np.ndarray,
                        W: np.ndarray) -> np.ndarray:
    """cov(R) for R = (y - mean_y) - (x - mean_x) W, in closed form from the moments.

    cov(R) = cov_yy - cov_yx W - W^T cov_xy + W^T cov_xx W  (general: also right for ridge, where the
    fit is not a projection and the last two terms do not cancel).
    """
    cross = cov_xy.T @ W
    c = cov_yy - cross - cross.T + W.T @ cov_xx @ W
    return (c + c.T) / 2
