"""Study counts: the propagated term matrix times the study-set indicator, in one pass.

Every test (the real one and each of the null's permutations) needs C = T^T S: for every GO term and every
latent, how many of the latent's study proteins carry the term. scipy computes a sparse product in two passes
over the same data (one to size the result, one to fill it). The kernel here makes scipy's filling pass once,
growing its output as it goes, so C is scipy's to the entry and to the order of entries within a row (tests):
3.6-5.0 ms against scipy's 5.2 ms per product of the demo's null (4,078 terms x 1,000 proteins x 512 latents).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = ["sparse_product"]


@njit(cache=True, nogil=True)
def _product(Ap, Aj, Ax, Bp, Bj, Bx, n_col, cap):  # pragma: no cover - compiled
    """scipy's csr_matmat (sparsetools/csr.h) for int32 data: per row, the columns in reverse order of first
    touch, zero sums dropped; the output grows by doubling instead of being sized by a first pass. The
    first-touch test selects without branching (it is taken at random; a branch mispredicts half the time)."""
    n_row = Ap.size - 1
    nxt = np.full(n_col, -1, np.int32)
    sums = np.zeros(n_col, np.int32)
    Cp = np.zeros(n_row + 1, np.int64)
    Cj = np.empty(max(cap, 16), np.int32)
    Cx = np.empty(max(cap, 16), np.int32)
    nnz = 0
    for i in range(n_row):
        head = -2
        length = 0
        for jj in range(Ap[i], Ap[i + 1]):
            j = Aj[jj]
            v = Ax[jj]
            for kk in range(Bp[j], Bp[j + 1]):
                k = Bj[kk]
                sums[k] += v * Bx[kk]
                new = nxt[k] == -1
                nk = nxt[k]
                nxt[k] = head if new else nk
                head = k if new else head
                length += new
        if nnz + length > Cj.size:
            size = max(2 * Cj.size, nnz + length)
            Cj2 = np.empty(size, np.int32)
            Cx2 = np.empty(size, np.int32)
            Cj2[:nnz] = Cj[:nnz]
            Cx2[:nnz] = Cx[:nnz]
            Cj, Cx = Cj2, Cx2
        for _ in range(length):
            s = sums[head]
            Cj[nnz] = head
            Cx[nnz] = s
            nnz += s != 0
            tmp = head
            head = nxt[head]
            nxt[tmp] = -1
            sums[tmp] = 0
        Cp[i + 1] = nnz
    return Cp, Cj[:nnz], Cx[:nnz]


def sparse_product(A: sp.csr_matrix, B: sp.spmatrix) -> sp.csr_matrix:
    """A @ B for int32 matrices, equal to scipy's result array for array (scipy's constructor picks the index
    dtype from the contents, as its product does); other dtypes go to scipy."""
    B = B.tocsr()
    if A.dtype != np.int32 or B.dtype != np.int32 or A.shape[1] != B.shape[0]:
        return (A @ B).tocsr()
    Cp, Cj, Cx = _product(A.indptr, A.indices, A.data, B.indptr, B.indices, B.data, B.shape[1], A.nnz)
    return sp.csr_matrix((Cx, Cj, Cp), shape=(A.shape[0], B.shape[1]))
