"""Products of one SAE step's sparse activations S [B, n] (B*k active (row, latent) pairs) with dense
matrices: S^T @ Y (the weight gradients of encoder and decoder) and the entries of G @ W^T at S's pattern
(the gradient of the decoded values S @ W with respect to S's values).

S^T @ Y: sorted by latent once per step (model._Pattern), the product is one pass per latent over its rows of Y. On CPU a numba kernel makes that pass, writing each
output row once, with the same sums in the same order as torch's sparse-CSR product (equal bit for bit,
tests/test_sae_core.py). analyses/bench_sae.py times both (`grad_product_*`): on this project's AMD EPYC
machine, at 4,096 x 4,096 latents on 2 threads, 8.9 vs 11.7 ms at 1,280 dims and 5.0 vs 4.0 ms at 480; at
the demo's 2,048 x 512 x 160 on one thread (a worker's) about 0.4 vs 0.8 ms.
Elsewhere (CUDA, other dtypes) torch's sparse-CSR product does it.

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

__all__ = ["latent_sorted_product", "sampled_rows_dot", "uses_row_kernels"]

_MIN_LATENTS_PER_THREAD = 128


_BLOCK = 16  # latents per block: a transposed write then fills one 64-byte line of each output row


@njit(cache=True, nogil=True)
def _kernel(crow, rows, order, vals, Y, out, acc, lo, hi, transposed):  # pragma: no cover - compiled
    """Row l of S^T Y = sum over j in crow[l]:crow[l+1] of vals[order[j]] * Y[rows[j]], for latents lo <= l < hi,
    into out[l] or, when `transposed`, out[:, l] (the encoder's weight is [d, n]; a separate transpose of the
    [n, d] product cost more than the product). Latents are summed _BLOCK at a time into `acc` [_BLOCK, d]
    so a transposed block writes whole lines."""
    d = Y.shape[1]
    for l0 in range(lo, hi, _BLOCK):
        nb = min(_BLOCK, hi - l0)
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


def latent_sorted_product(crow: torch.Tensor, rows: torch.Tensor, order: torch.Tensor, values: torch.Tensor,
                          Y: torch.Tensor, shape: tuple[int, int], *, transposed: bool = False) -> torch.Tensor:
    """S^T @ Y [n, d] with S[rows[j], latent] = values.flat[order[j]] for crow[latent] <= j < crow[latent + 1];
    its transpose [d, n] (contiguous) when `transposed`."""
    n = shape[0]
    if Y.device.type == "cpu" and Y.dtype == torch.float32 and values.dtype == torch.float32 and Y.ndim == 2:
        y = Y.detach().contiguous().numpy()
        v = values.detach().reshape(-1).contiguous().numpy()
        c, r, o = crow.numpy(), rows.numpy(), order.numpy()
        d = y.shape[1]
        out = np.empty((d, n) if transposed else (n, d), dtype=np.float32)
        map_slices(lambda a, b: _kernel(c, r, o, v, y, out, np.empty((_BLOCK, d), np.float32), a, b, transposed), n,
                   _MIN_LATENTS_PER_THREAD)
        return torch.from_numpy(out)
    v = values.reshape(-1)[order].to(Y.dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        S = torch.sparse_csr_tensor(crow, rows, v, size=shape, check_invariants=False)
    out = S @ Y
    return out.t().contiguous() if transposed else out


_MIN_ROWS_PER_THREAD = 256


def uses_row_kernels(idx: torch.Tensor, *matrices: torch.Tensor) -> bool:
    """Does sampled_rows_dot run here (CPU, int64 indices, float32 matrices, all 2-D)?"""
    return (idx.dtype == torch.int64 and all(m.dtype == torch.float32 for m in matrices)
            and all(t.device.type == "cpu" and t.ndim == 2 for t in (idx, *matrices)))


def sampled_rows_dot(idx: torch.Tensor, G: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """(G @ W^T)[b, idx[b, j]] as [B, k]: the gradient of the values of S @ W (CPU float32; see uses_row_kernels)."""
    i, g, w = (t.detach().contiguous().numpy() for t in (idx, G, W))
    out = np.empty(i.shape, dtype=np.float32)
    map_slices(lambda a, b: _sampled_kernel(i, g, w, out, a, b), i.shape[0], _MIN_ROWS_PER_THREAD)
    return torch.from_numpy(out)
