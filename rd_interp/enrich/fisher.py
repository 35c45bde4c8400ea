"""Fisher's exact test and Benjamini-Hochberg, bit-identical to goatools + scipy + statsmodels.

goatools computes each term's p-value with ``scipy.stats.fisher_exact([[a, b], [c, d]], alternative)``
(a = study count k, b = n - k, c = K - k, d = N - K - b) and corrects them with statsmodels'
``multipletests(method="fdr_bh")``. Here every distinct table (k, n, K, N) is evaluated once, with the
very expression scipy's fisher_exact evaluates for that alternative ("greater":
``hypergeom.cdf(n - k, N, n, N - K)``; "less": ``hypergeom.cdf(k, N, n, K)``; both clipped at 1, and
1.0 for a table with an empty row or column), vectorised over all distinct tables. "two-sided" replays
scipy's own two-sided algorithm (mode test, tail branch, binary search for the other tail) element-wise
with the same scipy ufuncs (checked == against scipy.stats.fisher_exact in the tests).
BH follows statsmodels' arithmetic step by step (p_sorted / (arange(1, m+1) / m), reverse cumulative
minimum, clip at 1), so corrected values are identical too.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import stats

ALTERNATIVES = ("greater", "two-sided", "less")


def _check_counts(k, n, K, N) -> None:
    if k.size == 0:
        return
    if (k < 0).any() or (n < k).any() or (K < k).any() or ((N - K) < (n - k)).any() or (n > N).any():
        i = int(np.flatnonzero((k < 0) | (n < k) | (K < k) | ((N - K) < (n - k)) | (n > N))[0])
        raise ValueError(
            f"inconsistent contingency counts: study_count={k[i]}, study_n={n[i]}, pop_count={K[i]}, pop_n={N}"
        )


def _table_pvalues(k: np.ndarray, n: np.ndarray, K: np.ndarray, N: int, alternative: str) -> np.ndarray:
    """p-values of distinct tables (arrays of equal length, N scalar)."""
    out = np.ones(k.shape, dtype=np.float64)
    # scipy: "if 0 in c.sum(axis=0) or 0 in c.sum(axis=1): return 1.0"  (row sums n, N-n; column sums K, N-K)
    ok = (n > 0) & (n < N) & (K > 0) & (K < N)
    if not ok.any():
        return out
    k_, n_, K_ = k[ok], n[ok], K[ok]
    N_ = np.full(k_.shape, N, dtype=np.int64)
    if alternative == "greater":
        p = stats.hypergeom.cdf(n_ - k_, N_, n_, N_ - K_)
        out[ok] = np.minimum(p, 1.0)
    elif alternative == "less":
        p = stats.hypergeom.cdf(k_, N_, n_, K_)
        out[ok] = np.minimum(p, 1.0)
    elif alternative == "two-sided":
        out[ok] = _two_sided(k_, n_, K_, N_)
    else:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return out


def _binary_search(a, d, lo, hi):
    """scipy's _binary_search_for_binom_tst, run for many searches at once (same comparisons, same result)."""
    lo, hi = lo.copy(), hi.copy()
    res = np.zeros(lo.shape, dtype=np.int64)
    found = np.zeros(lo.shape, dtype=bool)
    active = lo < hi
    while active.any():
        idx = np.flatnonzero(active)
        mid = lo[idx] + (hi[idx] - lo[idx]) // 2
        midval = a(mid, idx)
        less, more = midval < d[idx], midval > d[idx]
        eq = ~less & ~more
        lo[idx[less]] = mid[less] + 1
        hi[idx[more]] = mid[more] - 1
        res[idx[eq]] = mid[eq]
        found[idx[eq]] = True
        active = (lo < hi) & ~found
    rest = np.flatnonzero(~found)
    if rest.size:
        alo = a(lo[rest], rest)
        res[rest] = np.where(alo <= d[rest], lo[rest], lo[rest] - 1)
    return res


def _two_sided(k, n, K, N):
    """scipy.stats.fisher_exact(..., alternative="two-sided") for non-degenerate 2x2 tables, vectorised.

    Mirrors scipy 1.17's code path step by step: in its notation n1 = study size n, n = column sum K,
    pmf(x) = hypergeom.pmf(x, N, n1, n); the mode test, the lower/upper branch, the early returns and
    the binary search for the other tail are reproduced element-wise with the same scipy ufuncs.
    """
    hg = stats.hypergeom

    def pmf(x, idx):
        return hg.pmf(x, N[idx], n[idx], K[idx])

    mode = ((K + 1) * (n + 1) / (N + 2)).astype(np.int64)
    pexact = hg.pmf(k, N, n, K)
    pmode = hg.pmf(mode, N, n, K)
    epsilon = 1e-14
    gamma = 1 + epsilon
    out = np.empty(k.shape, dtype=np.float64)
    one = np.abs(pexact - pmode) / np.maximum(pexact, pmode) <= epsilon
    out[one] = 1.0
    lower = ~one & (k < mode)
    upper = ~one & ~(k < mode)
    if lower.any():
        i = np.flatnonzero(lower)
        plower = hg.cdf(k[i], N[i], n[i], K[i])
        early = hg.pmf(K[i], N[i], n[i], K[i]) > pexact[i] * gamma
        out[i[early]] = plower[early]
        j = i[~early]
        if j.size:
            guess = _binary_search(lambda x, idx: -pmf(x, j[idx]), -pexact[j] * gamma, mode[j], K[j].copy())
            out[j] = plower[~early] + hg.sf(guess, N[j], n[j], K[j])
    if upper.any():
        i = np.flatnonzero(upper)
        pupper = hg.sf(k[i] - 1, N[i], n[i], K[i])
        early = hg.pmf(np.zeros(i.size, dtype=np.int64), N[i], n[i], K[i]) > pexact[i] * gamma
        out[i[early]] = pupper[early]
        j = i[~early]
        if j.size:
            guess = _binary_search(lambda x, idx: pmf(x, j[idx]), pexact[j] * gamma,
                                   np.zeros(j.size, dtype=np.int64), mode[j].copy())
            out[j] = pupper[~early] + hg.cdf(guess, N[j], n[j], K[j])
    return np.minimum(out, 1.0)


def pvalue_lower_bound(k, n, K, N: int, alternative: str) -> np.ndarray:
    """Cheap lower bound on the Fisher p-value (to ~1e-9 relative): the one-sided tail on k's side.

    "greater": P(X >= k); "less": P(X <= k) = P(n - X >= n - k) with n - X ~ hypergeom(N, N - K, n);
    "two-sided": scipy sums every x with pmf(x) <= pmf(k), which includes the whole tail beyond k on
    k's side of the mode, so that tail bounds it from below.
    """
    k, n, K = (np.asarray(x, dtype=np.int64) for x in (k, n, K))
    if alternative == "greater":
        return upper_tail_lower_bound(k, n, K, N)
    if alternative == "less":
        return upper_tail_lower_bound(n - k, n, N - K, N)
    mode = ((K + 1) * (n + 1) / (N + 2)).astype(np.int64)
    low = k < mode
    out = np.empty(k.shape, dtype=np.float64)
    if low.any():
        out[low] = upper_tail_lower_bound(n[low] - k[low], n[low], N - K[low], N)
    if (~low).any():
        out[~low] = upper_tail_lower_bound(k[~low], n[~low], K[~low], N)
    return out


_EMPTY = -1  # packed tables are >= 0


@njit(cache=True, nogil=True)
def _slot(table, key, shift):  # pragma: no cover - compiled
    """Slot of `key` in an open-addressing table (Fibonacci hashing, linear probing): where it is, or the
    empty slot where it would go."""
    mask = table.size - 1
    i = np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift))
    while table[i] != key and table[i] != _EMPTY:
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True)
def _lookup(table, vals, shift, keys, out):  # pragma: no cover - compiled
    """out[i] = the value of keys[i]; returns the positions whose key is not in the table."""
    miss = np.empty(keys.size, np.int64)
    m = 0
    for i in range(keys.size):
        j = _slot(table, keys[i], shift)
        if table[j] == _EMPTY:
            miss[m] = i
            m += 1
        else:
            out[i] = vals[j]
    return miss[:m]


@njit(cache=True, nogil=True)
def _insert(table, vals, shift, keys, values):  # pragma: no cover - compiled
    for i in range(keys.size):
        j = _slot(table, keys[i], shift)
        table[j] = keys[i]
        vals[j] = values[i]


class TableMemo:
    """Values of a function of (k, n, K) tables of one population size N, remembered across calls.

    Why: the null distribution re-tests the same study sets against permuted labels ~100 times; the
    population counts K and the study sizes n do not change, so most (k, n, K) tables recur and their
    p-values (or p-value lower bounds) need computing once. Keys are the packed int64 tables, held in a
    hash table: a lookup is one probe per row, where sorting the rows' keys (np.unique) and searching a
    sorted memo cost a quarter of the demo's null distribution.
    """

    def __init__(self) -> None:
        self._shift = 64 - 10
        self._table = np.full(1 << 10, _EMPTY, dtype=np.int64)
        self._vals = np.empty(1 << 10, dtype=np.float64)
        self.size = 0

    def get(self, keys: np.ndarray, compute) -> np.ndarray:
        """Values for packed table `keys` (any order, repeats allowed); `compute(missing_keys)` is called once
        with the distinct keys not seen before (ascending) and must return their values."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        out = np.empty(keys.size, dtype=np.float64)
        miss = _lookup(self._table, self._vals, self._shift, keys, out)
        if miss.size:
            new, inverse = np.unique(keys[miss], return_inverse=True)
            val = np.asarray(compute(new), dtype=np.float64)
            out[miss] = val[inverse.ravel()]
            self._reserve(self.size + new.size)
            _insert(self._table, self._vals, self._shift, new, val)
            self.size += new.size
        return out

    def _reserve(self, n: int) -> None:
        """Keep the load factor at most 1/2 (short probe runs)."""
        cap = self._table.size
        if 2 * n <= cap:
            return
        while 2 * n > cap:
            cap *= 2
        old_keys, old_vals = self._table, self._vals
        self._shift = 64 - (cap.bit_length() - 1)
        self._table = np.full(cap, _EMPTY, dtype=np.int64)
        self._vals = np.empty(cap, dtype=np.float64)
        live = old_keys != _EMPTY
        _insert(self._table, self._vals, self._shift, old_keys[live], old_vals[live])


def _packable(N: int) -> bool:
    return (int(N) + 1) ** 3 < np.iinfo(np.int64).max


def _unpack(keys: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base = int(N) + 1
    uk, rest = np.divmod(keys, base * base)
    un, uK = np.divmod(rest, base)
    return uk, un, uK


def unique_tables(k: np.ndarray, n: np.ndarray, K: np.ndarray, N: int):
    """Distinct (k, n, K) tables of one population size N -> (uk, un, uK, inverse), via one packed int64 key.

    Packing is exact while (N + 1)^3 fits in int64 (N up to ~2 million proteins); beyond that the rows are
    compared directly (slower, same result).
    """
    base = int(N) + 1
    if _packable(N):
        key = (k * base + n) * base + K
        uniq, inverse = np.unique(key, return_inverse=True)
        uk, un, uK = _unpack(uniq, N)
    else:
        tab, inverse = np.unique(np.stack([k, n, K], axis=1), axis=0, return_inverse=True)
        uk, un, uK = tab[:, 0], tab[:, 1], tab[:, 2]
    return uk, un, uK, inverse.ravel()


def _lower_bounds(uk, un, uK, N: int) -> np.ndarray:
    lb = np.empty(uk.size)
    step = 1 << 16
    for a in range(0, uk.size, step):
        lb[a:a + step] = upper_tail_lower_bound(uk[a:a + step], un[a:a + step], uK[a:a + step], N)
    return lb


def _memoised(memo: TableMemo | None, k, n, K, N: int, fn) -> np.ndarray:
    """fn(uk, un, uK) over the distinct tables, through `memo` when given; values in the input order."""
    if memo is not None and _packable(N):
        base = int(N) + 1
        return memo.get((k * base + n) * base + K, lambda miss: fn(*_unpack(miss, N)))
    uk, un, uK, inverse = unique_tables(k, n, K, N)
    return fn(uk, un, uK)[inverse]


def greater_lower_bounds(k, n, K, N: int, *, memo: TableMemo | None = None) -> np.ndarray:
    """Lower bounds (1e-6 relative margin included) on the "greater" p-values of (k, n, K, N) tables."""
    k, n, K = (np.asarray(x, dtype=np.int64) for x in (k, n, K))
    return _memoised(memo, k, n, K, N, lambda a, b, c: _lower_bounds(a, b, c, N)) * (1.0 - 1e-6)


def maybe_below(k, n, K, N: int, t, *, memo: TableMemo | None = None) -> np.ndarray:
    """True where the "greater" p-value of (k, n, K, N) may be < t (False only when certainly >= t)."""
    return greater_lower_bounds(k, n, K, N, memo=memo) < t


def fisher_pvalues(k, n, K, N: int, alternative: str = "greater", *, screen: float | None = None,
                   memo: TableMemo | None = None) -> np.ndarray:
    """Fisher exact p-values for many tables sharing population size N; each distinct table computed once.

    k: study count, n: study size, K: population count, N: population size (as goatools'
    calc_pvalue(study_count, study_n, pop_count, pop_n)). Returns float64 with k's shape.
    screen: tables whose p is certainly >= screen (lower bound with a 1e-4 margin) are NOT computed and
    come back as 1.0; every other value is exact. For callers that only need p-values below a threshold.
    memo: a TableMemo for this N and alternative (exact values only, so not used with `screen`).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    k, n, K = (np.asarray(x, dtype=np.int64) for x in (k, n, K))
    k, n, K = np.broadcast_arrays(k, n, K)
    shape = k.shape
    k, n, K = k.ravel(), n.ravel(), K.ravel()
    N = int(N)
    _check_counts(k, n, K, N)
    if k.size == 0:
        return np.ones(shape, dtype=np.float64)
    if screen is None:
        return _memoised(memo, k, n, K, N, lambda a, b, c: _table_pvalues(a, b, c, N, alternative)).reshape(shape)
    uk, un, uK, inverse = unique_tables(k, n, K, N)
    if screen is not None:
        p = np.ones(uk.shape, dtype=np.float64)
        need = np.zeros(uk.shape, dtype=bool)
        step = 1 << 16
        for a in range(0, uk.size, step):
            sl = slice(a, a + step)
            need[sl] = pvalue_lower_bound(uk[sl], un[sl], uK[sl], N, alternative) * (1.0 - 1e-6) < screen * (1 + 1e-4)
        p[need] = _table_pvalues(uk[need], un[need], uK[need], N, alternative)
    else:
        p = _table_pvalues(uk, un, uK, N, alternative)
    return p[inverse.ravel()].reshape(shape)


def upper_tail_lower_bound(k, n, K, N: int, n_terms: int = 32) -> np.ndarray:
    """A float lower bound (to ~1e-9 relative) on P(X >= k), X ~ hypergeometric(N, K, n).

    Sums `n_terms` consecutive pmf terms of the tail (starting at k, or nearer the mode when the mode
    lies above k) in log-factorial arithmetic: any subset of the tail bounds it from below. Used only to SKIP
    exact evaluation of tables whose p-value certainly cannot matter (BH-adjusted value is 1); every
    p-value that is reported or ranked is still computed exactly.
    """
    from scipy.special import gammaln

    k, n, K = (np.asarray(x, dtype=np.int64) for x in (k, n, K))
    lf = gammaln(np.arange(N + 1, dtype=np.float64) + 1.0)
    const = lf[N] - lf[n] - lf[N - n]
    hi1 = np.minimum(n, K)
    mode = np.minimum((n + 1) * (K + 1) // (N + 2), hi1)
    start = np.maximum(k, mode - n_terms // 2)
    x = start[:, None] + np.arange(n_terms)[None, :]
    hi = hi1[:, None]
    ok = x <= hi
    xc = np.where(ok, x, start[:, None])
    Kb, nb = K[:, None], n[:, None]
    logpmf = (lf[Kb] - lf[xc] - lf[Kb - xc] + lf[N - Kb] - lf[nb - xc] - lf[N - Kb - nb + xc] - const[:, None])
    return np.where(ok, np.exp(logpmf), 0.0).sum(axis=1)


def bh(pvals) -> np.ndarray:
    """Benjamini-Hochberg corrected p-values, the statsmodels ``fdr_bh`` arithmetic exactly."""
    p = np.asarray(pvals, dtype=np.float64)
    return bh_with_ones(p, p.size)


def bh_with_ones(pvals, m: int) -> np.ndarray:
    """BH over a family of m tests of which only `pvals` (r <= m values) may be below 1.

    Tied p-values get equal corrected values whatever their sort order (reverse cumulative minimum),
    so this is also plain BH when r == m. The other m - r tests have p == 1.0 exactly (terms with study count 0 under "greater"); they sort
    last and their raw ratios 1 / (j / m) are >= 1, so they only ever clip. The result equals
    ``bh(concatenate([pvals, ones(m - r)]))[:r]`` bit for bit, without materialising the ones.
    """
    p = np.asarray(pvals, dtype=np.float64)
    r = p.size
    if r > m:
        raise ValueError(f"{r} p-values for a family of {m} tests")
    if r == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ps = p[order]
    ecdf = np.arange(1, r + 1) / float(m)
    corr = np.minimum.accumulate((ps / ecdf)[::-1])[::-1]
    corr[corr > 1] = 1
    out = np.empty_like(corr)
    out[order] = corr
    return out
