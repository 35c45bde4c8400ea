"""Exact per-row top-k with the selected latents in ascending index order: the selection every TopK SAE
step and every encoding pass makes.

Why a kernel of our own: on CPU, torch.topk copies each row into (value, index) pairs and runs
std::nth_element over all of them; at the sizes SAEs use (k = 8..64 of 512..16,384 latents) that is 2-4x
the dense encoder product it follows, and the largest single cost of training and encoding. Here each row
is bounded first: it is cut into g contiguous blocks (g >= 2k, blocks of ~32), and the k-th largest block
maximum is a threshold that at least k entries reach. Only the blocks whose maximum reaches it (k of the g,
typically) are scanned for candidates, and only those (typically under 2k) are ranked. Both selections
(among the g maxima, among the candidates) are a quickselect that partitions without branches on the
data. The block maxima are a fast-math vector loop, which needs the row to be NaN-free: an integer pass
(|bits| > +Inf's bits) proves that first at memory speed. Measured at 1 thread (B = 4,096; one-off
script, best of 5): k = 32 of 4,096 in 31 ms vs torch.topk 77 ms (2.5x) and 52 ms for this module's
previous kernel (maxima of interleaved groups, then a scan of the whole row); k = 64 of 16,384 85 vs 256
and 167 ms; k = 20 of 512 ~3x torch.topk and level with the previous kernel. analyses/bench_sae.py
times both in its step floor (README).

Why ascending order: torch.topk(sorted=False) returns the k entries in an order it does not specify (an
artefact of nth_element), and the decoder's sum over the active latents follows that order, so results
depended on it in the last bits. Ascending latent index is one order on every machine and thread count.

Compiled once per source version by numba (about a second) and cached beside this module, like its .pyc
files (numba's own files, written and read by this process, never downloaded); later processes load it in
a fraction of a second. Ties at the threshold go to the lower index. Rows holding NaN, tensors that are
not float32 on the CPU, and k outside the kernel's range use torch.topk (NaN ranks highest there), then the
same ascending order.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from rd_interp.sae.slices import map_slices

__all__ = ["topk_ascending"]

_MAX_K = 64  # beyond, torch.topk (the kernel has not been measured or tested there)
_MIN_ROWS_PER_THREAD = 256  # below this a row slice is not worth a thread


def _blocks(k: int, n: int) -> int:
    """How many contiguous blocks a row of n is cut into: blocks of ~32 (one vector loop each), and at
    least 2k so that the k-th largest block maximum is a tight threshold (measured best at
    n = 512..16,384, k = 8..64)."""
    return min(n, max(2 * k, n // 32))


@njit(cache=True, nogil=True, inline="always")
def _has_nan(bits):  # pragma: no cover - compiled
    """Whether a float32 row (viewed as int32) holds a NaN: NaN is |bits| above +Inf's bits. An integer max
    vectorises without fast-math, so this pass runs at memory speed and proves the row NaN-free for
    _block_max's fast-math."""
    m = np.int32(0)
    for j in range(bits.shape[0]):
        m = max(m, bits[j] & np.int32(0x7fffffff))
    return m > np.int32(0x7f800000)


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"}, inline="always")
def _block_max(blk):  # pragma: no cover - compiled
    """Maximum of a NaN-free block. Fast-math lets the reduction vectorise (a strict float max does not);
    'nsz' may return -0.0 for +0.0, which compares equal, so the threshold it feeds is the same."""
    m = blk[0]
    for j in range(1, blk.shape[0]):
        v = blk[j]
        m = v if v > m else m  # noqa: FURB136 - a select vectorises; max() did not
    return m


@njit(cache=True, nogil=True)
def _kth_largest(a, m, k, tmp):  # pragma: no cover - compiled
    """The k-th largest (1-based) of a[:m]; reorders a[:m], uses tmp[:m]. Quickselect whose partition
    steps count and compact without branches on the data (a branchy partition mispredicts on every
    other element and cost 2.6x more at 64 values). Every step drops the pivot, so it ends; with NaN
    in a[:m] (which no comparison keeps) it may end early with a meaningless value, and the caller
    discards such rows."""
    while True:
        p = a[m >> 1]
        gt = 0
        eq = 0
        for i in range(m):
            gt += a[i] > p
            eq += a[i] == p
        if k <= gt:  # among the values above p
            c = 0
            for i in range(m):
                v = a[i]
                tmp[c] = v
                c += v > p
        elif k <= gt + eq:
            return p
        else:  # among the values below p
            c = 0
            for i in range(m):
                v = a[i]
                tmp[c] = v
                c += v < p
            k -= gt + eq
        if c == 0:  # only with NaN present
            return p
        for i in range(c):
            a[i] = tmp[i]
        m = c


@njit(cache=True, nogil=True)
def _topk_kernel(pre, k, ng, idx_out, val_out):  # pragma: no cover - compiled
    """Rows of `pre` into idx_out/val_out; returns how many rows hold NaN (their output is not valid)."""
    B, n = pre.shape
    n_nan = 0
    s = n // ng  # block size; the last block also takes the n % ng tail
    bm = np.empty(ng, np.float32)
    gm = np.empty(ng, np.float32)
    cv = np.empty(n + 1, np.float32)
    ci = np.empty(n + 1, np.int64)
    scratch = np.empty(n, np.float32)
    tmp = np.empty(n, np.float32)
    bits = pre.view(np.int32)
    for b in range(B):
        row = pre[b]
        if _has_nan(bits[b]):
            n_nan += 1
            continue
        for g in range(ng - 1):
            bm[g] = _block_max(row[g * s:g * s + s])
        bm[ng - 1] = _block_max(row[(ng - 1) * s:])
        gm[:] = bm
        thr = _kth_largest(gm, ng, k, tmp)  # >= k block maxima, so >= k entries, reach it (reorders gm)
        c = 0  # candidates from the blocks that reach the threshold, in index order (branch-free append)
        for g in range(ng):
            if bm[g] >= thr:
                hi = g * s + s if g < ng - 1 else n
                for j in range(g * s, hi):
                    v = row[j]
                    cv[c] = v
                    ci[c] = j
                    c += v >= thr
        vi, vv = idx_out[b], val_out[b]
        if c == k:
            for j in range(k):
                vi[j] = ci[j]
                vv[j] = cv[j]
        else:  # the k-th largest candidate, then the candidates above it and the first ties, in order
            for j in range(c):
                scratch[j] = cv[j]
            t = _kth_largest(scratch, c, k, tmp)
            above = 0
            for j in range(c):
                above += cv[j] > t
            ties = k - above
            o = 0
            for j in range(c):
                v = cv[j]
                if v > t or (v == t and ties > 0):
                    if v == t:
                        ties -= 1
                    vi[o] = ci[j]
                    vv[o] = v
                    o += 1
    return n_nan


def _uses_kernel(pre: torch.Tensor, k: int) -> bool:
    return (pre.device.type == "cpu" and pre.dtype == torch.float32 and pre.ndim == 2
            and 1 <= k <= _MAX_K and 2 * k < pre.shape[1] and pre.shape[0] > 0)


def _run_kernel(x: np.ndarray, k: int, idx: np.ndarray, val: np.ndarray) -> bool:
    """Row slices on as many threads as torch may use (sae/slices.py); False if a row holds NaN."""
    ng = _blocks(k, x.shape[1])
    return sum(map_slices(lambda a, b: _topk_kernel(x[a:b], k, ng, idx[a:b], val[a:b]), x.shape[0],
                          _MIN_ROWS_PER_THREAD)) == 0


def topk_ascending(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B, k], indices [B, k] int64) of each row's k largest entries, indices ascending per row."""
    if _uses_kernel(pre, k):
        x = pre.detach().contiguous().numpy()
        idx = np.empty((x.shape[0], k), dtype=np.int64)
        val = np.empty((x.shape[0], k), dtype=np.float32)
        if _run_kernel(x, int(k), idx, val):
            return torch.from_numpy(val), torch.from_numpy(idx)
    vals, idx = pre.topk(k, dim=1, sorted=False)
    idx, perm = idx.sort(dim=1)
    return vals.gather(1, perm), idx
