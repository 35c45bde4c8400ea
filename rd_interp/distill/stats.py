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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

try:  # scipy ships OpenBLAS with a symmetric rank-k update; torch exposes none.
    from scipy.linalg import blas as _blas
except ImportError:  # pragma: no cover - scipy is a dependency
    _blas = None

# Rows per internal block: bounds the float64 scratch buffer to ~64 MiB whatever the chunk size.
_BLOCK_ELEMS = 1 << 23


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


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


def first_nonfinite_row(a: np.ndarray | torch.Tensor) -> int:
    """Index of the first row holding NaN/Inf (for error messages), -1 if none."""
    if isinstance(a, torch.Tensor):
        bad = (~torch.isfinite(a)).any(dim=1).nonzero()
        return int(bad[0, 0]) if bad.numel() else -1
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    return int(bad[0]) if bad.size else -1


@dataclass
class Moments:
    """Finished statistics (float64 torch tensors, ddof=1 covariances)."""

    n: int
    mean_x: torch.Tensor
    mean_y: torch.Tensor
    cov_xx: torch.Tensor
    cov_xy: torch.Tensor
    cov_yy: torch.Tensor

    @property
    def cov(self) -> torch.Tensor:
        """Covariance of the concatenation [x | y]."""
        top = torch.cat([self.cov_xx, self.cov_xy], dim=1)
        bottom = torch.cat([self.cov_xy.T, self.cov_yy], dim=1)
        return torch.cat([top, bottom], dim=0)


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
        self.shift: torch.Tensor | None = None
        self._sum = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        if use_blas is None:
            use_blas = self.device.type == "cpu" and _blas is not None
        if use_blas:
            if self.device.type != "cpu" or _blas is None:
                raise ValueError("use_blas=True needs the CPU device and scipy")
            # Fortran order so dsyrk accumulates in place (upper triangle only).
            self._gram_np = np.zeros((self.k, self.k), dtype=np.float64, order="F")
            self._gram = None
        else:
            self._gram_np = None
            self._gram = torch.zeros((self.k, self.k), dtype=torch.float64, device=self.device)
        self._buf: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------
    def _scratch(self, rows: int) -> torch.Tensor:
        """A reusable float64 block buffer laid out (k, rows) so its numpy view is Fortran (rows, k)."""
        if self._buf is None or self._buf.shape[1] < rows:
            self._buf = torch.empty((self.k, rows), dtype=torch.float64, device=self.device)
        return self._buf[:, :rows]

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
            self._update_block([b[start:stop] for b in xs], where, start)
        self.n_chunks += 1

    def _update_block(self, parts: list, where: str, row0: int) -> None:
        rows = parts[0].shape[0]
        buf_t = self._scratch(rows)  # (k, rows): row j of buf_t is column j of the block
        col = 0
        for p in parts:
            src = p if isinstance(p, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(p))
            buf_t[col:col + p.shape[1]].copy_(src.T)
            col += p.shape[1]
        if self.shift is None:
            self.shift = buf_t.mean(dim=1)
            if not bool(torch.isfinite(self.shift).all()):
                self._raise_nonfinite(parts, where, row0)
        buf_t -= self.shift[:, None]
        s = buf_t.sum(dim=1)
        if not bool(torch.isfinite(s).all()):
            self._raise_nonfinite(parts, where, row0)
        self._sum += s
        if self._gram_np is not None:
            a = buf_t.numpy().T  # Fortran-ordered (rows, k) view, no copy
            _blas.dsyrk(1.0, a, beta=1.0, c=self._gram_np, trans=1, lower=0, overwrite_c=1)
        else:
            self._gram.addmm_(buf_t, buf_t.T)
        self.n += rows

    def _raise_nonfinite(self, parts: list, where: str, row0: int) -> None:
        names = ["x", "y"]
        for i, p in enumerate(parts):
            r = first_nonfinite_row(p)
            if r >= 0:
                raise ValueError(f"{where}{names[i]} has NaN or Inf values (row {self.n + r} of the input)")
        raise ValueError(f"{where}values overflow float64 (row block starting at {self.n})")

    # ------------------------------------------------------------------------------------------
    def finish(self) -> Moments:
        if self.n < 2:
            raise ValueError(f"need at least 2 rows to estimate covariances, got {self.n}")
        if self._gram_np is not None:
            g = torch.from_numpy(np.triu(self._gram_np) + np.triu(self._gram_np, 1).T)
        else:
            g = self._gram
            g = (g + g.T) / 2
        n = self.n
        m = self._sum / n  # mean of the shifted rows
        cov = (g - n * torch.outer(m, m)) / (n - 1)
        cov = (cov + cov.T) / 2
        mean = self.shift + m
        p = self.k_x
        return Moments(
            n=n,
            mean_x=mean[:p].clone(),
            mean_y=mean[p:].clone(),
            cov_xx=cov[:p, :p].clone(),
            cov_xy=cov[:p, p:].clone(),
            cov_yy=cov[p:, p:].clone(),
        )
