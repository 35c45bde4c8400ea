"""AUROC, exact and weighted, and its bootstrap over proteins (vectorised over resamples).

Why weighted: a bootstrap resample of n proteins is a vector of multiplicities (multinomial counts);
AUROC of the resample equals the count-weighted AUROC of the original scores, so each term's scores
are sorted once and every resample is a cumulative sum, not a new sort.
"""

from __future__ import annotations

import numpy as np


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); nan when y has one class only."""
    return float(weighted_auroc(np.asarray(y, dtype=bool), np.asarray(score, dtype=np.float64),
                                np.ones((1, len(y))))[0])


def weighted_auroc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one score vector under each row of `weights` [B, n] (multiplicities) -> [B].

    P(score_pos > score_neg) + 0.5 P(equal), pairs weighted by w_i * w_j; nan where a row has no
    positive or no negative weight.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if y.shape != score.shape or y.ndim != 1 or w.shape[1] != len(y):
        raise ValueError(f"shapes: y {y.shape}, score {score.shape}, weights {w.shape}")
    if not np.isfinite(score).all():
        raise ValueError("scores must be finite")
    order = np.argsort(score, kind="stable")
    s, pos = score[order], y[order]
    w = w[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups in sorted order
    wneg = np.where(pos, 0.0, w)
    wpos = np.where(pos, w, 0.0)
    neg_group = np.add.reduceat(wneg, starts, axis=1)  # [B, groups]
    pos_group = np.add.reduceat(wpos, starts, axis=1)
    neg_below = np.cumsum(neg_group, axis=1) - neg_group
    num = (pos_group * (neg_below + 0.5 * neg_group)).sum(axis=1)
    den = pos_group.sum(axis=1) * neg_group.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] multiplicities of n proteins drawn with replacement (seeded; shared by all models
    scored on the same proteins, so their intervals and differences are paired)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def bootstrap_macro_auroc(Y: np.ndarray, S: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro AUROC (mean over terms with both classes in the resample) per bootstrap row -> [B].

    Y: [n, terms] bool labels, S: [n, terms] scores, weights: [B, n].
    """
    Y = np.asarray(Y, dtype=bool)
    per = np.stack([weighted_auroc(Y[:, t], S[:, t], weights) for t in range(Y.shape[1])], axis=1)
    ok = np.isfinite(per)
    n_ok = ok.sum(axis=1)
    total = np.where(ok, per, 0.0).sum(axis=1)
    return np.where(n_ok > 0, total / np.maximum(n_ok, 1), np.nan)
