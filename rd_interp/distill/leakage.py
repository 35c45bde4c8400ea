"""Leakage diagnostics of reverse distillation: how much of the residual block the small model still explains.

Why: reverse distillation promises H_rd = [H_small, H_res] with H_res holding what the large model adds.
With the PCR regressor only the Johnstone-significant PCs of H_small are regressed out, so part of H_res
stays a linear function of H_small; with OLS ("linear") the blocks are exactly uncorrelated on the fit
rows, and only approximately on new rows. A reader comparing "base" and "residual" latents needs these
numbers, measured on rows the distillation was NOT fitted on.

Everything is streamed: one pass over aligned row blocks accumulates float64 moments of [H_small | H_res]
(rd_interp.distill.stats.PairedMoments) and per-column error sums; the k x k algebra runs at the end.
For a chain, "H_small" of step k is that step's small input (rd_(k-1) in chain mode, H_0 in direct mode)
and "H_large" is the member it adds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rd_interp.distill.chain import ReverseDistillationChain
from rd_interp.distill.pcr import eigh_desc, numerical_rank
from rd_interp.distill.reverse import ReverseDistiller
from rd_interp.distill.stats import PairedMoments
from rd_interp.distill.stores import aligned_chunks, is_store

#: Canonical correlations reported per step (the largest ones).
N_CANONICAL = 5
_SUB_ROWS = 16384  # rows per float64 sub-block (bounds the scratch memory)

#: One-line definitions, written with the figures so a report can print them verbatim.
DEFINITIONS = {
    "notation": "per step: H_small = the step's small input (rd of the previous step in chain mode, the "
                "smallest model in direct mode), H_large = the member it adds, H_res = the step's residual "
                "block; all figures on the rows named in 'rows'",
    "residual_predictable_share": "share of H_res's total variance explained by an OLS fit (with intercept) "
                                  "of H_res on H_small on these rows: 1 - tr Cov(H_res | H_small) / tr Cov(H_res) "
                                  "(variance-weighted; 0 = nothing linearly predictable)",
    "residual_predictable_per_dim_mean": "the same OLS R^2 computed per H_res dimension and averaged uniformly "
                                         "over dimensions (a mean of R^2 values, not a variance share)",
    "canonical_correlations": "the largest canonical correlations between H_small and H_res on these rows, "
                              "descending (1 = some direction of H_res is a linear function of H_small, "
                              "0 = uncorrelated)",
    "r2_large_from_small_variance_weighted": "1 - sum of squared errors / total sum of squares (about the "
                                             "rows' mean), summed over all H_large dimensions, predicting "
                                             "H_large with the step's fitted regression on H_small",
    "r2_large_from_small_per_dim_mean": "R^2 of that prediction per H_large dimension, averaged uniformly over "
                                        "dimensions (not a variance share)",
    "r2_large_from_rd_variance_weighted": "as r2_large_from_small_variance_weighted, reconstructing H_large "
                                          "from the whole rd embedding: the fitted regression plus H_res mapped "
                                          "back through the residual PCs",
    "r2_large_from_rd_per_dim_mean": "R^2 of that reconstruction per H_large dimension, averaged uniformly "
                                     "(not a variance share)",
    "residual_block_variance_share": "tr Cov(H_res) / (tr Cov(H_small) + tr Cov(H_res)): the residual block's "
                                     "share of the rd embedding's total variance on these rows, unscaled",
}


def _np64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _r2(sse: np.ndarray, sst: np.ndarray) -> tuple[float, float]:
    """(variance-weighted R^2, per-dimension mean R^2); a constant column scores 1 if fitted exactly, else 0
    (scikit-learn's force_finite rule, as ReverseDistiller.r2_)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse > 0, 0.0, 1.0))
    total = float(sst.sum())
    vw = 1.0 - float(sse.sum()) / total if total > 0 else float(per.mean())
    return vw, float(per.mean())


def _inv_sqrt(cov: np.ndarray) -> np.ndarray:
    """Whitening map (k x r) of a covariance on its numerical range: W^T cov W = I_r."""
    vals, vecs = eigh_desc(cov)
    r = numerical_rank(vals, cov.shape[0])
    return vecs[:, :r] / np.sqrt(vals[:r])


class StepLeakage:
    """Streamed diagnostics of one fitted ReverseDistiller: update(small, res, large) per row block."""

    def __init__(self, step: ReverseDistiller):
        step._check_fitted()
        self.step = step
        p, q, d = int(step.k_small_), int(step.k_large_), int(step.n_components_)
        self.moments = PairedMoments(p, d)
        self._mx = np.asarray(step.mean_small_, dtype=np.float64)
        self._offset = np.asarray(step.mean_large_, dtype=np.float64) + np.asarray(step.residual_mean_,
                                                                                  dtype=np.float64)
        self._W = np.asarray(step.coef_, dtype=np.float64)
        self._C = np.asarray(step.components_, dtype=np.float64)  # d x q
        self._shift: np.ndarray | None = None
        self._s1 = np.zeros(q)
        self._s2 = np.zeros(q)
        self._sse_small = np.zeros(q)
        self._sse_rd = np.zeros(q)
        self.n = 0

    def update(self, small: Any, res: Any, large: Any) -> None:
        n = int(small.shape[0])
        if not (res.shape[0] == large.shape[0] == n):
            raise ValueError(f"row counts differ: H_small {n}, H_res {res.shape[0]}, H_large {large.shape[0]}")
        for a in range(0, n, _SUB_ROWS):
            b = min(n, a + _SUB_ROWS)
            x, r, y = _np64(small[a:b]), _np64(res[a:b]), _np64(large[a:b])
            self.moments.update(x, r)
            if self._shift is None:
                self._shift = y.mean(axis=0)
            yc = y - self._shift
            self._s1 += yc.sum(axis=0)
            self._s2 += np.einsum("ij,ij->j", yc, yc)
            err = y - ((x - self._mx) @ self._W + self._offset)  # error of the regression part
            self._sse_small += np.einsum("ij,ij->j", err, err)
            err -= r @ self._C  # error of the reconstruction from [H_small, H_res]
            self._sse_rd += np.einsum("ij,ij->j", err, err)
            self.n += b - a

    def finish(self, n_canonical: int = N_CANONICAL) -> dict[str, Any]:
        if self.n < 2:
            raise ValueError(f"leakage diagnostics need at least 2 rows, got {self.n}")
        m = self.moments.finish()
        cxx, cxr, crr = m.cov_xx, m.cov_xy, m.cov_yy
        tot = np.clip(np.diagonal(crr), 0.0, None)
        wx = _inv_sqrt(cxx)
        explained = np.clip(np.einsum("ij,ij->j", wx.T @ cxr, wx.T @ cxr), 0.0, None)  # diag(Crx Cxx^+ Cxr)
        explained = np.minimum(explained, tot)
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(tot > 0, explained / np.where(tot > 0, tot, 1.0), 0.0)
        share = float(explained.sum() / tot.sum()) if tot.sum() > 0 else 0.0
        wr = _inv_sqrt(crr)
        cc = np.linalg.svd(wx.T @ cxr @ wr, compute_uv=False) if wx.size and wr.size else np.zeros(0)
        cc = np.clip(cc, 0.0, 1.0)
        sst = np.clip(self._s2 - self._s1 ** 2 / self.n, 0.0, None)
        vw_s, pd_s = _r2(self._sse_small, sst)
        vw_rd, pd_rd = _r2(self._sse_rd, sst)
        st = self.step
        var_x = float(np.trace(cxx))
        return {
            "step": st.model_name(), "regressor": st.regressor, "n_significant_pcs": int(st.n_significant_pcs_),
            "k_small": int(st.k_small_), "k_large": int(st.k_large_), "n_components": int(st.n_components_),
            "n_rows": int(self.n),
            "residual_predictable_share": share,
            "residual_predictable_per_dim_mean": float(per.mean()) if per.size else 0.0,
            "n_canonical": int(min(n_canonical, cc.size)),
            "canonical_correlations": [float(v) for v in cc[:n_canonical]],
            "r2_large_from_small_variance_weighted": vw_s,
            "r2_large_from_small_per_dim_mean": pd_s,
            "r2_large_from_rd_variance_weighted": vw_rd,
            "r2_large_from_rd_per_dim_mean": pd_rd,
            "residual_block_variance_share": float(tot.sum() / (var_x + tot.sum())) if var_x + tot.sum() > 0
            else 0.0,
        }


def _block_iter(data: Any, n_inputs: int, chunk_rows: int) -> Iterable[list]:
    """Aligned row blocks from a list of arrays/stores (one per input) or an iterable of block lists."""
    if isinstance(data, (list, tuple)) and len(data) == n_inputs and all(
            is_store(d) or (hasattr(d, "shape") and len(d.shape) == 2) for d in data):
        return aligned_chunks(list(data), chunk_rows)
    return data


def leakage(model: ReverseDistiller | ReverseDistillationChain, data: Any, *, n_canonical: int = N_CANONICAL,
            chunk_rows: int = 65536, rows: str = "given rows") -> dict[str, Any]:
    """Leakage diagnostics of a fitted step or chain on the rows of `data`, per step.

    data: the model's inputs, smallest model first ([H_small, H_large] for a step, [H_0, ..., H_K] for a
    chain), as aligned arrays/stores, or an iterable of aligned row blocks (lists in that order), e.g.
    only the held-out rows. `rows` labels them in the result. Returns {"rows", "n_rows", "regressor",
    "n_canonical", "definitions", "steps": [one dict per step]}.
    """
    if isinstance(model, ReverseDistillationChain):
        model._check_fitted()
        steps, chain = list(model.steps_), model
    elif isinstance(model, ReverseDistiller):
        steps, chain = [model], None
    else:
        raise TypeError(f"leakage: expected a fitted ReverseDistiller or ReverseDistillationChain, got "
                        f"{type(model).__name__}")
    accs = [StepLeakage(s) for s in steps]
    for blocks in _block_iter(data, len(steps) + 1, chunk_rows):
        blocks = list(blocks)
        if len(blocks) != len(steps) + 1:
            raise ValueError(f"leakage: each row block needs {len(steps) + 1} aligned inputs, got {len(blocks)}")
        outs = chain.transform_blocks(blocks) if chain is not None else [steps[0].transform(blocks[0], blocks[1])]
        for k, (acc, out) in enumerate(zip(accs, outs)):
            out = _np64(out) if hasattr(out, "detach") else out
            p = int(steps[k].k_small_)
            acc.update(out[:, :p], out[:, p:], blocks[k + 1])
    res = [a.finish(n_canonical) for a in accs]
    return {"rows": rows, "n_rows": res[0]["n_rows"], "regressor": steps[0].regressor,
            "n_canonical": int(n_canonical), "definitions": dict(DEFINITIONS), "steps": res}

