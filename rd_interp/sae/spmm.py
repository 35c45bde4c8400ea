"""Products of one SAE step's sparse activations S [B, n] (B*k active (row, latent) pairs) with dense
matrices: S^T @ Y (the weight gradients of encoder and decoder) and the entries of G @ W^T at S's pattern
(the gradient of the decoded values S @ W with respect to S's values).

S^T @ Y: sorted by latent once per step (model._Pattern), the product is one pass per latent over its rows of Y. On CPU a numba kernel makes that pass, writing each
output row once, with the same sums in the same order as torch's sparse-CSR product (equal bit for bit,
tests/test_sae_core.py). analyses/bench_sae.py times both (`grad_product_*`): on this project's AMD EPYC
machine, at 4,096 x 4,096 latents on 2 threads, 8.9 vs 11.7 ms at 1,280 dims and 5.0 vs 4.0 ms at 480; at
the demo's 2,048 x 512 x 160 on one thread (a worker's) about 0.4 vs 0.8 ms.
Elsewhere (CUDA, other dtypes) torch's sparse-CSR product does it.

AuxK's dense block (model._DenseAux): its weight gradients Z^T @ G are sums over the batch, and BLAS sums
those in an order that depends on the thread count when the output has few rows (on this project's AMD EPYC,
MKL for 5 to 11 rows, and for 4 to 15 rows of 16 columns even in its strict reproducible mode; OpenBLAS too).
On the CPU a kernel sums them row by row in a fixed order instead (AuxK then costs ~1.8x its BLAS time at
4,096 x 480 with 82 or 400 dead latents; the demo's SAE units spend about 3 of 80 s in the dense block).

The values' gradient is row-wise (each batch row reads its k decoder rows). torch's embedding_bag decodes
fast (FBGEMM), but its per_sample_weights backward cost 2-3x the kernel here, which runs on torch's thread
budget with each batch row on one thread in a fixed order (results independent of the thread count).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from numba import njit

from rd_interp.sae.slices import map_slices

__all__ = ["dense_aux_products", "latent_sorted_product", "sampled_rows_dot", "sort_by_latent", "uses_row_kernels"]

_MIN_LATENTS_PER_THREAD = 128


_BLOCK = 16  # latents per block of the plain product (and of AuxK's dense block)
# latents per block of the transposed product: each of its d output rows then gets 256 contiguous bytes per block
# instead of one 64-byte line, a quarter of the scattered writes (rows are n * 4 bytes apart, a page or more).
# At 4,096 x 480 x 4,096 on 2 threads (one-off script, 25 interleaved repeats, twice): 12.9 and 18.4 ms vs 14.9
# and 19.2 ms with blocks of 16; the sums, one latent at a time, are the same bits with any block.
_BLOCK_T = 64


@njit(cache=True, nogil=True)
def _kernel(crow, rows, order, vals, Y, out, acc, lo, hi, transposed):  # pragma: no cover - compiled
    """Row l of S^T Y = sum over j in crow[l]:crow[l+1] of vals[order[j]] * Y[rows[j]], for latents lo <= l < hi,
    into out[l] or, when `transposed`, out[:, l] (the encoder's weight is [d, n]; a separate transpose of the
    [n, d] product cost more than the product). Latents are summed a block at a time into `acc` [block, d]
    so a transposed block writes whole lines. Y may have more than d columns (the first d are read)."""
    block, d = acc.shape
    for l0 in range(lo, hi, block):
        nb = min(block, hi - l0)
        for t in range(nb):
            lat = l0 + t
            for c in range(d):
                acc[t, c] = 0.0
            for j in range(crow[lat], crow[lat + 1]):
                v = vals[order[j]]
                r = rows[j]
                for c in range(d):
                    acc[t, c] += v * Y[r, c]
        if transposed:
            for c in range(d):
                for t in range(nb):
                    out[c, l0 + t] = acc[t, c]
        else:
            for t in range(nb):
                for c in range(d):
                    out[l0 + t, c] = acc[t, c]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sampled_kernel(idx, G, W, out, lo, hi):  # pragma: no cover - compiled
    """out[b, j] = <G[b], W[idx[b, j]]> for rows lo <= b < hi. Reassociated (vector lanes of partial sums, as
    BLAS does): a strictly ordered float sum does not vectorise and ran 2.5x slower. The order is fixed by
    the compiled code, so results do not depend on the thread count."""
    d = W.shape[1]
    for b in range(lo, hi):
        for j in range(idx.shape[1]):
            r = idx[b, j]
            s = np.float32(0.0)
            for c in range(d):
                s += G[b, c] * W[r, c]
            out[b, j] = s


@njit(cache=True, nogil=True)
def _count_sort_kernel(flat, m, crow, order, rows):  # pragma: no cover - compiled
    """Stable counting sort of `flat` (latent of each (row, slot) entry, row-major with m slots per row) by
    latent: crow[l]:crow[l+1] spans latent l's entries, order[j] their flat positions, rows[j] their rows."""
    n = crow.shape[0] - 1
    for l in range(n + 1):
        crow[l] = 0
    for i in range(flat.shape[0]):
        crow[flat[i] + 1] += 1
    for l in range(n):
        crow[l + 1] += crow[l]
    nxt = crow[:-1].copy()
    for i in range(flat.shape[0]):
        p = nxt[flat[i]]
        order[p] = i
        rows[p] = i // m
        nxt[flat[i]] = p + 1


def sort_by_latent(idx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow [n + 1], order, rows) of the [B, m] latent index matrix idx sorted by latent, stably: the CSR
    pattern of S^T that latent_sorted_product walks. CPU: one counting sort (O(B*m + n), one thread; 0.9 ms
    at 4,096 x 32 where a radix argsort plus bincount, cumsum and division took 1.4 ms); elsewhere torch's."""
    m = idx.shape[1]
    flat = idx.reshape(-1)
    if flat.device.type == "cpu":
        crow = np.empty(n + 1, np.int64)
        order, rows = np.empty(flat.shape[0], np.int64), np.empty(flat.shape[0], np.int64)
        _count_sort_kernel(flat.contiguous().numpy(), m, crow, order, rows)
        return torch.from_numpy(crow), torch.from_numpy(order), torch.from_numpy(rows)
    order = torch.argsort(flat, stable=True)
    crow = torch.zeros(n + 1, dtype=torch.long, device=idx.device)
    torch.cumsum(torch.bincount(flat, minlength=n), 0, out=crow[1:])
    return crow, order, torch.div(order, m, rounding_mode="floor")


def latent_sorted_product(crow: torch.Tensor, rows: torch.Tensor, order: torch.Tensor, values: torch.Tensor,
                          Y: torch.Tensor, shape: tuple[int, int], *, transposed: bool = False) -> torch.Tensor:
    """S^T @ Y [n, d] with S[rows[j], latent] = values.flat[order[j]] for crow[latent] <= j < crow[latent + 1];
    its transpose [d, n] (contiguous) when `transposed`."""
    n = shape[0]
    if Y.device.type == "cpu" and Y.dtype == torch.float32 and values.dtype == torch.float32 and Y.ndim == 2:
        d = Y.shape[1]
        y = _rows_with_margin(Y.detach()).numpy()
        v = values.detach().reshape(-1).contiguous().numpy()
        c, r, o = crow.numpy(), rows.numpy(), order.numpy()
        out = np.empty((d, n) if transposed else (n, d), dtype=np.float32)
        block = _BLOCK_T if transposed else _BLOCK
        map_slices(lambda a, b: _kernel(c, r, o, v, y, out, np.empty((block, d), np.float32), a, b, transposed), n,
                   _MIN_LATENTS_PER_THREAD, block)
        return torch.from_numpy(out)
    v = values.reshape(-1)[order].to(Y.dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        S = torch.sparse_csr_tensor(crow, rows, v, size=shape, check_invariants=False)
    out = S @ Y
    return out.t().contiguous() if transposed else out


def _rows_with_margin(Y: torch.Tensor) -> torch.Tensor:
    """A contiguous [B, >= d] matrix whose first d columns are Y: Y's own rows with whatever follows them when
    Y is a column slice of a contiguous matrix (the training forward's xc, model._dense_pre), else a copy."""
    B, d = Y.shape
    if Y.is_contiguous() or B == 0 or Y.stride(1) != 1 or Y.stride(0) < d:
        return Y.contiguous()
    width = Y.stride(0)
    if Y.storage_offset() + B * width > Y.untyped_storage().nbytes() // Y.element_size():
        return Y.contiguous()
    return Y.as_strided((B, width), (width, 1))


_MIN_ROWS_PER_THREAD = 256


def _cpu_float32(*matrices: torch.Tensor) -> bool:
    return all(m.dtype == torch.float32 and m.device.type == "cpu" and m.ndim == 2 for m in matrices)


def uses_row_kernels(idx: torch.Tensor, *matrices: torch.Tensor) -> bool:
    """Does sampled_rows_dot run here (CPU, int64 indices, float32 matrices, all 2-D)?"""
    return idx.dtype == torch.int64 and idx.device.type == "cpu" and idx.ndim == 2 and _cpu_float32(*matrices)


def sampled_rows_dot(idx: torch.Tensor, G: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """(G @ W^T)[b, idx[b, j]] as [B, k]: the gradient of the values of S @ W (CPU float32; see uses_row_kernels)."""
    i, g, w = (t.detach().contiguous().numpy() for t in (idx, G, W))
    out = np.empty(i.shape, dtype=np.float32)
    map_slices(lambda a, b: _sampled_kernel(i, g, w, out, a, b), i.shape[0], _MIN_ROWS_PER_THREAD)
    return torch.from_numpy(out)


@njit(cache=True, nogil=True)
def _dense_aux_kernel(Z, G, GZ, X, out_zg, out_gx, colsum, acc_zg, acc_gx, lo, hi):  # pragma: no cover - compiled
    """For latents lo <= l < hi: out_zg[l] = sum_b Z[b, l] G[b], out_gx[l] = sum_b GZ[b, l] X[b] and
    colsum[l] = sum_b GZ[b, l], over b in order, skipping rows where Z[b, l] is 0 (GZ is 0 there too).
    _BLOCK latents at a time, so each row of G and X is read once per block."""
    B, d = G.shape
    for l0 in range(lo, hi, _BLOCK):
        nb = min(_BLOCK, hi - l0)
        acc_zg[:nb] = 0.0
        acc_gx[:nb] = 0.0
        for t in range(nb):
            colsum[l0 + t] = 0.0
        for b in range(B):
            for t in range(nb):
                z = Z[b, l0 + t]
                if z != 0.0:
                    gz = GZ[b, l0 + t]
                    colsum[l0 + t] += gz
                    for c in range(d):
                        acc_zg[t, c] += z * G[b, c]
                        acc_gx[t, c] += gz * X[b, c]
        out_zg[l0:l0 + nb] = acc_zg[:nb]
        out_gx[l0:l0 + nb] = acc_gx[:nb]


def dense_aux_products(Z: torch.Tensor, G: torch.Tensor, GZ: torch.Tensor,
                       X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Z^T @ G, GZ^T @ X, GZ.sum(0)) for [B, m] Z and GZ (GZ zero wherever Z is) and [B, d] G and X: the
    decoder, encoder and bias gradients of AuxK's dense block. CPU float32: the kernel above, the same bits on
    any thread count; elsewhere torch's products."""
    if not _cpu_float32(Z, G, GZ, X):
        return Z.t() @ G, GZ.t() @ X, GZ.sum(0)
    z, g, gz, x = (t.detach().contiguous().numpy() for t in (Z, G, GZ, X))
    m, d = z.shape[1], g.shape[1]
    out_zg, out_gx = np.empty((m, d), np.float32), np.empty((m, d), np.float32)
    colsum = np.empty(m, np.float32)
    map_slices(lambda a, b: _dense_aux_kernel(z, g, gz, x, out_zg, out_gx, colsum, np.empty((_BLOCK, d), np.float32),
                                              np.empty((_BLOCK, d), np.float32), a, b), m, _BLOCK, _BLOCK)
    return torch.from_numpy(out_zg), torch.from_numpy(out_gx), torch.from_numpy(colsum)
