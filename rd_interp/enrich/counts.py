"""Study counts: the propagated term matrix times the study-set indicator, in one pass.

Every test needs C = T^T S: for every GO term and every latent, how many of the latent's study proteins
carry the term. scipy computes a sparse product in two passes over the same data (one to size the result,
one to fill it). sparse_product makes scipy's filling pass once, growing its output as it goes, so C is
scipy's to the entry and to the order of entries within a row (tests): 3.6-5.0 ms against scipy's 5.2 ms
per product of the demo's null (4,078 terms x 1,000 proteins x 512 latents). The real test uses it.

The null distribution's ~100 permuted tests per SAE need only the over-represented counts >= the minimum and
each latent's number of hits, so over_represented never forms C: it sums one term's row densely, scans it,
and keeps what passes. Per permutation of the demo's large-model SAE (one-off script, 30 repeats, medians of
two rounds): 4.1-5.2 ms against 18.6-18.8 ms for sparse_product plus the numpy filters it replaced.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = ["over_represented", "sparse_product"]


@njit(cache=True, nogil=True)
def _grown(a, used, size):  # pragma: no cover - compiled
    """A larger copy of a growing output array: its first `used` entries in an array of `size`."""
    out = np.empty(size, a.dtype)
    out[:used] = a[:used]
    return out


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
            Cj, Cx = _grown(Cj, nnz, size), _grown(Cx, nnz, size)
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


@njit(cache=True, nogil=True)
def _over_represented(Ap, Aj, Bp, Bj, lo, hi, min_count, N, K, n, hits):  # pragma: no cover - compiled
    """Rows lo..hi-1 of A @ B for 0/1 matrices (only their patterns are read), one dense row of counts at a
    time, reduced as they are made: hits[l] += the number of rows where column l is non-zero, and the
    (row - lo, column, value) entries with value >= min_count and value * N > K[row - lo] * n[column], in row
    order, columns ascending."""
    n_col = n.size
    sums = np.zeros(n_col, np.int64)
    size = 1024
    term = np.empty(size, np.int64)
    lat = np.empty(size, np.int64)
    k = np.empty(size, np.int64)
    c = 0
    for i in range(lo, hi):
        if Ap[i] == Ap[i + 1]:
            continue
        for jj in range(Ap[i], Ap[i + 1]):
            j = Aj[jj]
            for kk in range(Bp[j], Bp[j + 1]):
                sums[Bj[kk]] += 1
        if c + n_col > size:
            size = max(2 * size, c + n_col)
            term = _grown(term, c, size)
            lat = _grown(lat, c, size)
            k = _grown(k, c, size)
        top = np.int64(0)
        for col in range(n_col):  # vectorised: no branch
            s = sums[col]
            hits[col] += s != 0
            top = max(top, s)
        if top >= min_count:
            Ki = K[i - lo]
            for col in range(n_col):
                s = sums[col]
                if s >= min_count:  # rare (most counts are 0 to 2): a branch that predicts well
                    term[c] = i - lo
                    lat[c] = col
                    k[c] = s
                    c += s * N > Ki * n[col]
        sums[:] = 0
    return term[:c], lat[:c], k[:c]


def over_represented(A: sp.csr_matrix, S: sp.csr_matrix, lo: int, hi: int, min_count: int, N: int,
                     K: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The null distribution's reduction of the study counts C = A @ S (A: the propagated term matrix
    transposed, S: study indicator) over rows lo..hi-1 (one namespace's terms), without forming C:
    (term row - lo, latent, study count k) of the entries with k >= min_count that are over-represented
    (k / n > K / N: fold > 1), and each latent's number of non-zero counts (its hits in the namespace).

    Why: the null re-tests ~100 permuted study sets per SAE and needs only these. Summing each term's row
    densely and scanning it costs less than sparse_product's ordered output (kept for the real test, whose
    records follow scipy's order) followed by six numpy passes over its entries. Both matrices are 0/1
    (TermMatrix sets its data to 1, the indicator is boolean): only their patterns are read."""
    hits = np.zeros(len(n), np.int64)
    term, lat, k = _over_represented(A.indptr, A.indices, S.indptr, S.indices, int(lo), int(hi),
                                     int(min_count), int(N), np.ascontiguousarray(K, dtype=np.int64),
                                     np.ascontiguousarray(n, dtype=np.int64), hits)
    return term, lat, k, hits
