"""Streamed float64 first and second moments of paired row blocks [x | y].

Why: every quantity reverse distillation needs (means, cov(x), cov(x, y), cov(y), and from them the
regression and the residual covariance) is a function of sum x, sum y and the cross-product matrix of
[x | y]. Accumulating those over chunks gives the exact answer for any N with O((p+q)^2) memory.

Precision: rows are shifted by the mean of the first block before the products are formed, so the
final ``S - n m m^T`` subtraction does not cancel catastrophically when the columns have large means
(ESM-2 has a few large-offset dimensions). Products are accumulated in float64 on every device.
On CPU the cross-product uses BLAS ``dsyrk`` (half the flops of a general matrix product).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rd_interp.device import resolve_device  # noqa: F401  (re-exported for distill modules)

try:  # scipy ships OpenBLAS with a symmetric rank-k update; torch exposes none.
    from scipy.linalg import blas as _blas
except ImportError:  # pragma: no cover - scipy is a dependency
    _blas = None

# Rows per internal block: bounds the float64 scratch buffer to ~64 MiB whatever the chunk size.
_BLOCK_ELEMS = 1 << 23


def as_2d(a: Any, name: str) -> np.ndarray | torch.Tensor:
    """Accept numpy arrays, torch tensors and array-likes; reject anything not a 2-D float matrix."""
    if isinstance(a, torch.Tensor):
        t = a.detach()
        if t.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D matrix (rows x dims), got shape {tuple(t.shape)}")
        if not (t.is_floating_point()):
            t = t.to(torch.float64)
        return t
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix (rows x dims), got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr


def to_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Zero-copy numpy -> torch, also for read-only (memory-mapped) arrays, which are only read."""
    if isinstance(a, torch.Tensor):
        return a
    a = np.ascontiguousarray(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": we never write to it
        return torch.from_numpy(a)


def first_nonfinite_row(a: np.ndarray | torch.Tensor) -> int:
    """Index of the first row holding NaN/Inf (for error messages), -1 if none."""
    if isinstance(a, torch.Tensor):
        bad = (~torch.isfinite(a)).any(dim=1).nonzero()
        return int(bad[0, 0]) if bad.numel() else -1
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    return int(bad[0]) if bad.size else -1


@dataclass
class Moments:
    """Finished statistics (float64 numpy arrays, ddof=1 covariances)."""

    n: int
    mean_x: np.ndarray
    mean_y: np.ndarray
    cov_xx: np.ndarray
    cov_xy: np.ndarray
    cov_yy: np.ndarray

    @property
    def cov(self) -> np.ndarray:
        """Covariance of the concatenation [x | y]."""
        return np.block([[self.cov_xx, self.cov_xy], [self.cov_xy.T, self.cov_yy]])


class PairedMoments:
    """Accumulate n, sum and cross-products of [x | y] over chunks; `finish()` -> Moments.

    `update(x, y)` with y=None treats x as the only block (q = 0).
    use_blas: None picks scipy dsyrk on CPU and torch addmm elsewhere; False forces the torch path
    (what CUDA runs), which lets CPU-only tests cover it.
    """

    def __init__(self, k_x: int, k_y: int, device: str | torch.device = "cpu", *, use_blas: bool | None = None):
        self.k_x, self.k_y = int(k_x), int(k_y)
        self.k = self.k_x + self.k_y
        self.device = resolve_device(device)
        self.n = 0
        self.n_chunks = 0
        self.shift = None
        if use_blas is None:
            use_blas = self.device.type == "cpu" and _blas is not None
        if use_blas and (self.device.type != "cpu" or _blas is None):
            raise ValueError("use_blas=True needs the CPU device and scipy")
        # CPU: numpy + OpenBLAS only (no torch thread pool competing with BLAS threads on few cores);
        # other devices: torch float64 on the device.
        self._np = bool(use_blas)
        if self._np:
            self._sum = np.zeros(self.k, dtype=np.float64)
            # Fortran order so dsyrk accumulates in place (upper triangle only).
            self._gram = np.zeros((self.k, self.k), dtype=np.float64, order="F")
        else:
            self._sum = torch.zeros(self.k, dtype=torch.float64, device=self.device)
            self._gram = torch.zeros((self.k, self.k), dtype=torch.float64, device=self.device)
        self._buf = None

    # ------------------------------------------------------------------------------------------
    def _scratch(self, rows: int):
        """A reusable float64 (rows, k) block buffer (re-used so pages are not faulted in per block)."""
        if self._buf is None or self._buf.shape[0] < rows:
            self._buf = (np.empty((rows, self.k), dtype=np.float64) if self._np
                         else torch.empty((rows, self.k), dtype=torch.float64, device=self.device))
        return self._buf[:rows]

    def update(self, x: Any, y: Any = None, *, where: str = "") -> None:
        xs = [as_2d(x, "x")] + ([as_2d(y, "y")] if y is not None else [])
        widths = [b.shape[1] for b in xs]
        if sum(widths) != self.k or widths[0] != self.k_x:
            raise ValueError(f"{where}chunk has {widths} columns, expected ({self.k_x}, {self.k_y})")
        n = xs[0].shape[0]
        if any(b.shape[0] != n for b in xs):
            raise ValueError(f"{where}row counts differ between blocks: {[b.shape[0] for b in xs]}")
        if n == 0:
            return
        block_rows = max(256, _BLOCK_ELEMS // max(self.k, 1))
        for start in range(0, n, block_rows):
            stop = min(n, start + block_rows)
            self._update_block([b[start:stop] for b in xs], where)
        self.n_chunks += 1

    def _update_block(self, parts: list, where: str) -> None:
        rows = parts[0].shape[0]
        buf = self._scratch(rows)  # (rows, k) = [x | y] - shift, in float64
        finite = np.isfinite if self._np else (lambda t: torch.isfinite(t).cpu().numpy())
        if self.shift is None:
            means = [(p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p)).mean(
                axis=0, dtype=np.float64) for p in parts]
            shift = np.concatenate(means)
            if not np.isfinite(shift).all():
                self._raise_nonfinite(parts, where)
            self.shift = shift if self._np else torch.from_numpy(shift).to(self.device)
        col = 0
        for p in parts:
            w = p.shape[1]
            if self._np:
                src = p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else p
                # convert and centre in one pass
                np.subtract(src, self.shift[col:col + w], out=buf[:, col:col + w], casting="unsafe")
            else:
                buf[:, col:col + w].copy_(to_tensor(p))
                buf[:, col:col + w] -= self.shift[col:col + w]
            col += w
        s = buf.sum(axis=0) if self._np else buf.sum(dim=0)
        if not finite(s).all():
            self._raise_nonfinite(parts, where)
        self._sum += s
        if self._np:
            # buf.T is a Fortran-ordered (k, rows) view: C += buf^T buf, upper triangle, no copy
            _blas.dsyrk(1.0, buf.T, beta=1.0, c=self._gram, trans=0, lower=0, overwrite_c=1)
        else:
            self._gram.addmm_(buf.T, buf)
        self.n += rows

    def _raise_nonfinite(self, parts: list, where: str) -> None:
        names = ["x", "y"]
        for i, p in enumerate(parts):
            r = first_nonfinite_row(p)
            if r >= 0:
                raise ValueError(f"{where}{names[i]} has NaN or Inf values (row {self.n + r} of the input)")
        raise ValueError(f"{where}values overflow float64 (row block starting at {self.n})")

    # ------------------------------------------------------------------------------------------
    def finish(self) -> Moments:
        """Means and ddof=1 covariances as float64 numpy arrays (the k x k algebra runs on CPU)."""
        if self.n < 2:
            raise ValueError(f"need at least 2 rows to estimate covariances, got {self.n}")
        if self._np:
            g = np.triu(self._gram) + np.triu(self._gram, 1).T
            ssum, shift = self._sum, self.shift
        else:
            g = self._gram.cpu().numpy()
            g = (g + g.T) / 2
            ssum, shift = self._sum.cpu().numpy(), self.shift.cpu().numpy()
        n = self.n
        m = ssum / n  # mean of the shifted rows
        cov = (g - n * np.outer(m, m)) / (n - 1)
        cov = (cov + cov.T) / 2
        mean = shift + m
        p = self.k_x
        return Moments(n=n, mean_x=mean[:p].copy(), mean_y=mean[p:].copy(), cov_xx=cov[:p, :p].copy(),
                       cov_xy=cov[:p, p:].copy(), cov_yy=cov[p:, p:].copy())
