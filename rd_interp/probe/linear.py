"""Per-term logistic-regression probes on pooled embeddings, scored on held-out proteins.

Protocol (fixed, so that numbers from different models are comparable): proteins are split once by a
seeded hash of their id (the same protein lands on the same side for every model and row order);
features are standardised with training-split statistics; one L2 logistic regression per term (C fixed,
no tuning on the test split; the objective of scikit-learn's LogisticRegression, solved to a relative
gradient of 1e-10 by Newton's method for all terms at once); AUROC per term on the test proteins; macro AUROC over
the terms with enough positives on both sides; a percentile bootstrap interval over test proteins with
seeded resamples shared by every model, so intervals (and differences) are paired.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.special import expit

from rd_interp.probe.auroc import auroc, bootstrap_macro_auroc, bootstrap_weights

log = logging.getLogger(__name__)

#: float64 cells of the [terms, samples, features] block one Hessian batch builds (64 MB)
_HESSIAN_CELLS = 1 << 23


def split_proteins(protein_ids: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask: the round(test_fraction * n) proteins with the smallest sha256(seed:id).

    Why a hash of the id and not a permutation of rows: the split is a property of the protein,
    independent of file order, model and the other proteins present.
    """
    ids = list(protein_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("protein ids must be unique (the split is by protein)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * len(ids)))
    if not 0 < n_test < len(ids):
        raise ValueError(f"{len(ids)} proteins are too few for a test fraction of {test_fraction}")
    keys = [hashlib.sha256(f"{seed}:{p}".encode()).digest() for p in ids]
    order = sorted(range(len(ids)), key=keys.__getitem__)
    test = np.zeros(len(ids), dtype=bool)
    test[order[:n_test]] = True
    return test


def fit_logistic(A: np.ndarray, Y: np.ndarray, C: float, *, max_iter: int = 100,
                 tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Minimise C * sum_i log(1 + exp(-y_i a_i.theta)) + |theta[:-1]|^2 / 2 for every column of Y at once.

    A: [n, p] features with a last column of ones (its weight, the intercept, is not penalised), Y: [n, T]
    bool. This is scikit-learn's LogisticRegression objective. Why Newton and not lbfgs per term: p is small
    (a pooled embedding), so T Hessians cost a few GEMMs, and ~10 steps reach a gradient 1e-10 of the
    initial one, where lbfgs stopped at its tolerance after hundreds of Python-level calls per term (the
    demo's ~1,400 per-term fits: 36 s with scikit-learn's lbfgs, 9.5 s here). Each step halves until the
    objective falls (Armijo), so it always descends; a term stops when its gradient is down to `tol` of
    the initial one or its step no longer moves theta. Returns theta [T, p] and the steps each term took.
    """
    n, p = A.shape
    Yf = np.asarray(Y, dtype=np.float64)
    reg = np.ones(p)
    reg[-1] = 0.0

    def objective(theta: np.ndarray, cols: np.ndarray) -> np.ndarray:
        M = A @ theta.T
        return C * (np.logaddexp(0.0, M) - Yf[:, cols] * M).sum(axis=0) + 0.5 * (theta ** 2 * reg).sum(axis=1)

    T = Yf.shape[1]
    theta = np.zeros((T, p))
    n_iter = np.zeros(T, dtype=np.int64)
    f = objective(theta, np.arange(T))
    g0 = None
    active = np.arange(T)
    for _ in range(max_iter):
        th = theta[active]
        P = expit(A @ th.T)  # [n, t]
        G = C * (A.T @ (P - Yf[:, active])).T + th * reg  # [t, p]
        gmax = np.abs(G).max(axis=1)
        if g0 is None:
            g0 = np.maximum(gmax, 1e-300)
        left = gmax > tol * g0[active]
        active, th, P, G = active[left], th[left], P[:, left], G[left]
        if not active.size:
            break
        S = C * P * (1.0 - P)
        H = np.empty((active.size, p, p))
        step = max(1, _HESSIAN_CELLS // (n * p))
        for a in range(0, active.size, step):
            b = min(a + step, active.size)
            H[a:b] = A.T[None] @ (S[:, a:b].T[:, :, None] * A[None])
        H[:, np.arange(p), np.arange(p)] += reg
        H[:, -1, -1] += 1e-12 * max(1.0, C * n)  # the intercept's curvature vanishes only if every margin is huge
        D = np.linalg.solve(H, G[:, :, None])[:, :, 0]
        dec = (G * D).sum(axis=1)  # the Newton decrement, > 0
        t = np.ones(active.size)
        f_old = f[active]
        slack = 1e-13 * np.abs(f_old)  # rounding of the objective: below it a step cannot be judged
        for _ in range(60):
            f_new = objective(th - t[:, None] * D, active)
            bad = f_new > f_old - 1e-4 * t * dec + slack
            if not bad.any():
                break
            t[bad] *= 0.5
        theta[active] = th - t[:, None] * D
        f[active] = f_new
        n_iter[active] += 1
        # converged to rounding: the step no longer moves theta
        still = np.abs(t[:, None] * D).max(axis=1) > 1e-14 * (1.0 + np.abs(theta[active]).max(axis=1))
        active = active[still]
    if active.size:
        log.warning("logistic probe: %d of %d terms did not reach gradient tolerance %g in %d Newton steps",
                    active.size, T, tol, max_iter)
    return theta, n_iter


class LinearProbe:
    """One standardised L2 logistic regression per label column (scikit-learn estimator conventions)."""

    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"C": self.C, "max_iter": self.max_iter, "tol": self.tol}

    def set_params(self, **params) -> "LinearProbe":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"LinearProbe has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "LinearProbe":
        X = _check_X(X)
        Y = np.asarray(Y, dtype=bool)
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y must be [n_samples, n_labels] with {X.shape[0]} rows, got {Y.shape}")
        one_class = [j for j in range(Y.shape[1]) if Y[:, j].all() or not Y[:, j].any()]
        if one_class:
            raise ValueError(f"label columns {one_class[:5]} have a single class in the training data")
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mean_) / self.scale_
        A = np.hstack([Z, np.ones((Z.shape[0], 1))])
        theta, self.n_iter_ = fit_logistic(A, Y, self.C, max_iter=self.max_iter, tol=self.tol)
        self.coef_, self.intercept_ = theta[:, :-1].copy(), theta[:, -1].copy()
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """[n_samples, n_labels] log-odds."""
        if not hasattr(self, "coef_"):
            raise ValueError("LinearProbe is not fitted")
        X = _check_X(X)
        if X.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features, the probe was fitted on {self.coef_.shape[1]}")
        return ((X - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_


def _check_X(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be [n_samples, n_features], got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf (a protein without residues?)")
    return X


@dataclass
class ProbeResult:
    """Per-term AUROC on the test proteins and the macro AUROC with its bootstrap interval."""

    terms: list[str]
    auroc: np.ndarray  # [n_terms]
    macro_auroc: float
    ci_low: float
    ci_high: float
    n_train: int
    n_test: int
    test_positives: np.ndarray  # [n_terms]
    skipped_terms: list[str]  # too few positives (or negatives) on one side of the split
    seed: int
    n_boot: int
    confidence: float
    boot_macro: np.ndarray = field(repr=False)  # [n_boot] macro AUROC per resample (paired across models)
    test_ids: list[str] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"macro_auroc": self.macro_auroc, "ci": [self.ci_low, self.ci_high], "confidence": self.confidence,
                "n_terms": len(self.terms), "n_train": self.n_train, "n_test": self.n_test,
                "skipped_terms": list(self.skipped_terms), "seed": self.seed, "n_boot": self.n_boot,
                "per_term": {t: float(a) for t, a in zip(self.terms, self.auroc)}}

    def difference(self, other: "ProbeResult") -> tuple[float, float, float]:
        """Paired macro-AUROC difference self - other and its bootstrap interval (same proteins, terms, resamples)."""
        if self.terms != other.terms or self.test_ids != other.test_ids or self.n_boot != other.n_boot \
                or self.seed != other.seed:
            raise ValueError("paired difference needs the same terms, test proteins, seed and n_boot")
        d = self.boot_macro - other.boot_macro
        a = (1 - self.confidence) / 2
        return (self.macro_auroc - other.macro_auroc, float(np.nanquantile(d, a)), float(np.nanquantile(d, 1 - a)))


def evaluate_probe(X: np.ndarray, Y: np.ndarray, protein_ids: Sequence[str], terms: Sequence[str] | None = None, *,
                   seed: int = 0, test_fraction: float = 0.2, n_boot: int = 1000, confidence: float = 0.95,
                   min_positives: int = 3, C: float = 1.0) -> ProbeResult:
    """Probe every label column of Y from X; see the module docstring for the protocol.

    X: [n_proteins, d] pooled embeddings (or any features), Y: [n_proteins, n_terms] bool,
    protein_ids: [n_proteins] unique ids (they define the split). Terms with fewer than
    `min_positives` positives or negatives in the training or the test split are skipped (listed).
    """
    X = _check_X(X)
    Y = np.asarray(Y, dtype=bool)
    n = X.shape[0]
    terms = [f"term{j}" for j in range(Y.shape[1])] if terms is None else list(terms)
    if Y.ndim != 2 or Y.shape[0] != n or len(protein_ids) != n or len(terms) != Y.shape[1]:
        raise ValueError(f"shapes disagree: X {X.shape}, Y {Y.shape}, {len(protein_ids)} ids, {len(terms)} terms")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    test = split_proteins(protein_ids, test_fraction, seed)
    keep, skipped = [], []
    for j, t in enumerate(terms):
        counts = [int(Y[m, j].sum()) for m in (~test, test)] + [int((~Y[m, j]).sum()) for m in (~test, test)]
        (keep if min(counts) >= min_positives else skipped).append(j)
    if not keep:
        raise ValueError(f"no term has >= {min_positives} positives and negatives on both sides of the split")
    Yk = Y[:, keep]
    probe = LinearProbe(C=C).fit(X[~test], Yk[~test])
    S = probe.decision_function(X[test])
    Yt = Yk[test]
    per = np.array([auroc(Yt[:, j], S[:, j]) for j in range(Yt.shape[1])])
    boot = bootstrap_macro_auroc(Yt, S, bootstrap_weights(int(test.sum()), n_boot, seed))
    a = (1 - confidence) / 2
    return ProbeResult(
        terms=[terms[j] for j in keep], auroc=per, macro_auroc=float(per.mean()),
        ci_low=float(np.nanquantile(boot, a)), ci_high=float(np.nanquantile(boot, 1 - a)),
        n_train=int((~test).sum()), n_test=int(test.sum()), test_positives=Yt.sum(axis=0),
        skipped_terms=[terms[j] for j in skipped], seed=seed, n_boot=n_boot, confidence=confidence,
        boot_macro=boot, test_ids=[p for p, m in zip(protein_ids, test) if m],
    )
