"""Sparse autoencoder architectures: TopK (default), BatchTopK and ReLU with decoder-norm-weighted L1.

TopK (Gao et al. 2024):  z = TopK(ReLU(W_enc^T (x' - b_dec) + b_enc)),  x_hat' = W_dec^T z + b_dec,
where x' = (x - mean) * scale is the pre-processed input. The pre-processing (per-dimension mean and a
global scale giving E||x'||^2 = d) lives inside the module so callers always pass RAW embeddings: PLM
embeddings have a few dimensions with huge means that otherwise dominate the loss and kill latents.

Cost: on CPU the dense encoder matmul (and the top-k over its output) is the only unavoidable
O(B*d*n) term. Decoding uses `embedding_bag` over the k active latents (O(B*k*d)), the backward passes of
encoder and decoder weights are CSR products over one latent-sorted pattern of the step (`_GatherPre`,
`_DecoderGrad`), and AuxK ranks only the dead latents' columns, so a training step costs ~one dense matmul
instead of the ~five a dense implementation needs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from rd_interp.io.options import opt
from rd_interp.io.serialize import ConfigError
from rd_interp.sae.spmm import (
    dense_aux_products,
    latent_sorted_product,
    sampled_rows_dot,
    sort_by_latent,
    uses_row_kernels,
)
from rd_interp.sae.topk import topk_ascending

__all__ = ["ARCHITECTURES", "Provenance", "SAEConfig", "SparseAutoencoder"]

ARCHITECTURES = ("topk", "batchtopk", "relu")

# Norm of each encoder column at init (the decoder's rows are unit vectors). 1/sqrt(3) is the row norm
# of PyTorch's default nn.Linear init that sparsify starts from; with unit-norm encoder columns the same
# TopK recipe ends 0.045 FVU worse after 60 steps and 0.040 after 200 (4096 latents, k=32, 480 dims,
# analyses/sweep_sae_init.py): the scale sets how fast Adam's fixed-size steps turn the encoder.
ENCODER_INIT_NORM = 3 ** -0.5

# AuxK runs as dense products over the dead latents' columns while there are at most this many times
# k_aux of them (SparseAutoencoder._dense_aux_decode); beyond, on the sparse pattern of the k_aux selected.
_DENSE_AUX_RATIO = 2


@dataclass
class SAEConfig:
    """Architecture and size of a sparse autoencoder.

    Sizes may be given relative to the input width, resolved by ``resolve(d_in)`` once the data are known:
    ``n_latents = 0`` means ``expansion x d_in``, and ``k_ratio > 0`` means ``k = max(1, round(k_ratio x d_in))``
    (the same sparsity ratio in spaces of different width, for size-matched comparisons).
    """

    architecture: Literal["topk", "batchtopk", "relu"] = opt("topk", "topk | batchtopk | relu")
    d_in: int = opt(0, "input width (0: from the data)", cli=False)
    n_latents: int = opt(4096, "dictionary size, the same for every compared space (0: expansion x d_in)")
    k: int = opt(32, "active latents per vector (TopK/BatchTopK); replaced by k_ratio when that is > 0")
    # ReLU only: weight of sum_i z_i * ||W_dec[i]|| (the InterPLM / Anthropic April-2024 baseline).
    l1_coeff: float = opt(5.0, "ReLU only: weight of the decoder-norm-weighted L1 penalty")
    expansion: int = opt(8, "n_latents = expansion x d_in when n_latents is 0")
    k_ratio: float = opt(0.0, "> 0: k = max(1, round(k_ratio x d_in)) instead of k: the same sparsity ratio in "
                              "spaces of different width (a run's default 1/15 gives k = 32 at ESM-2 35M's 480 "
                              "dims); 0: use k")

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture: {self.architecture!r} is not one of {list(ARCHITECTURES)}")
        if self.d_in < 0:
            raise ConfigError(f"d_in: must be >= 1 (or 0 = from the data), got {self.d_in}")
        if self.n_latents < 0:
            raise ConfigError(f"n_latents: must be >= 1 (or 0 = expansion x d_in), got {self.n_latents}")
        if self.expansion < 1:
            raise ConfigError(f"expansion: must be >= 1, got {self.expansion}")
        if not (0 <= self.k_ratio <= 1 and math.isfinite(self.k_ratio)):
            raise ConfigError(f"k_ratio: must be in [0, 1], got {self.k_ratio}")
        if self.architecture != "relu":
            if self.k < 1:
                raise ConfigError(f"k: must be >= 1, got {self.k}")
            if 0 < self.n_latents < self.k and self.k_ratio == 0:
                raise ConfigError(f"k: {self.k} active latents requested but the SAE has only n_latents={self.n_latents}")
        if not (self.l1_coeff >= 0 and math.isfinite(self.l1_coeff)):
            raise ConfigError(f"l1_coeff: must be a finite number >= 0, got {self.l1_coeff}")

    def resolve(self, d_in: int) -> SAEConfig:
        """The concrete config for input width `d_in` (n_latents and k as numbers)."""
        if self.d_in not in (0, d_in):
            raise ConfigError(f"d_in: the config says {self.d_in} but the data have dimension {d_in}")
        n = self.n_latents or self.expansion * int(d_in)
        k = max(1, int(round(self.k_ratio * d_in))) if self.k_ratio > 0 else self.k
        out = dataclasses.replace(self, d_in=int(d_in), n_latents=int(n), k=int(k))
        if out.architecture != "relu" and out.k > out.n_latents:
            raise ConfigError(f"k: {out.k} active latents requested but the SAE has only n_latents={out.n_latents} "
                              f"(d_in={d_in})")
        out.validate()
        return out


@dataclass
class Provenance:
    """Where an SAE came from, declared (not attached): filled by training and by loading."""

    source: dict | None = None  # the training data: store/array name, columns, widths
    train: dict | None = None  # resolved training settings and final running statistics
    split: dict | None = None  # the held-out split (fraction, seed, method, digest of held-out ids)
    saved: dict | None = None  # the cfg.json it was loaded from


class _Pattern:
    """Sparsity pattern of a [B, m] latent index matrix, sorted by latent once per step.

    The encoder's weight gradient has the form S^T @ x with S [B, n_latents] holding B*m non-zeros; with
    the pattern sorted by latent this is one CSR x dense product (O(B*m*d)) instead of the dense
    [B, n] x [B, d] product autograd through top-k would do. The decoder's weight gradient is the same kind
    of product (S^T @ grad_x_hat) and reuses the pattern (_DecoderGrad).
    """

    def __init__(self, idx: torch.Tensor, n: int):
        self.crow, self.order, self.rows_sorted = sort_by_latent(idx, n)
        self.flat = idx.reshape(-1)
        self.shape = (n, idx.shape[0])

    def st_mm(self, values: torch.Tensor, Y: torch.Tensor, *, transposed: bool = False) -> torch.Tensor:
        """S^T @ Y where S[b, idx[b, j]] = values[b, j]; returns [n, d] ([d, n] when `transposed`)."""
        return latent_sorted_product(self.crow, self.rows_sorted, self.order, values, Y, self.shape,
                                     transposed=transposed)


class _GatherPre(torch.autograd.Function):
    """pre[b, idx[b, j]] where pre = xc @ W_enc + b_enc, xc = x' - b_dec, was computed densely WITHOUT autograd.

    Backward is sparse: grad_W_enc = (S^T xc)^T with S the [B, n] gradient pattern, instead of the
    dense xc^T @ grad_pre product (B*d*n) that autograd through topk would perform; b_dec's share is
    -W_enc @ (column sums of S), O(d*n), without ever forming the [B, d] gradient of xc.
    """

    @staticmethod
    def forward(ctx, pre, xc, W_enc, b_enc, b_dec, idx, pattern):
        ctx.save_for_backward(xc, W_enc)
        ctx.pattern = pattern
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, grad):
        xc, W_enc = ctx.saved_tensors
        pat: _Pattern = ctx.pattern
        grad = grad.contiguous()
        g_bias = torch.zeros(W_enc.shape[1], dtype=grad.dtype, device=grad.device).index_add_(
            0, pat.flat, grad.reshape(-1))
        g_W = pat.st_mm(grad, xc, transposed=True) if ctx.needs_input_grad[2] else None
        g_dec = -(W_enc @ g_bias) if ctx.needs_input_grad[4] else None
        return None, None, g_W, g_bias, g_dec, None, None


class _DecoderGrad(torch.autograd.Function):
    """Identity on the decoded batch x_hat = S @ W_dec (computed by embedding_bag from a DETACHED W_dec);
    routes W_dec's gradient S^T @ grad through the step's latent-sorted pattern (one CSR product).

    Why: embedding_bag's own weight backward sorts the B*k indices again on every step (sort + dense
    index_add, a fifth of a CPU step at 160 x 512), while the pattern is already sorted for the encoder's
    backward. The gradient of the active values still comes from embedding_bag (per_sample_weights).
    """

    @staticmethod
    def forward(ctx, x_hat, W_dec, vals, pattern):
        ctx.save_for_backward(vals)
        ctx.pattern = pattern
        return x_hat.view_as(x_hat)

    @staticmethod
    def backward(ctx, grad):
        (vals,) = ctx.saved_tensors
        g_W = ctx.pattern.st_mm(vals, grad.contiguous()) if ctx.needs_input_grad[1] else None
        return grad, g_W, None, None


class _Decode(torch.autograd.Function):
    """x_hat = S @ W_dec with S[b, idx[b, j]] = vals[b, j] (embedding_bag), with a CPU backward of our own.

    Backward: W_dec's gradient S^T @ grad over the step's latent-sorted pattern, the values' gradient the
    entries of grad @ W_dec^T at S's pattern (sae/spmm.py: embedding_bag's own per_sample_weights backward
    cost 2-3x that kernel, and its weight backward sorts the pattern again).
    """

    @staticmethod
    def forward(ctx, idx, vals, W_dec, pattern):
        ctx.save_for_backward(idx, vals, W_dec)
        ctx.pattern = pattern
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, grad):
        idx, vals, W_dec = ctx.saved_tensors
        grad = grad.contiguous()
        g_vals = sampled_rows_dot(idx, grad, W_dec) if ctx.needs_input_grad[1] else None
        g_W = ctx.pattern.st_mm(vals, grad) if ctx.needs_input_grad[2] else None
        return None, g_vals, g_W, None


class _DenseAux(torch.autograd.Function):
    """AuxK's reconstruction from the dead latents as dense products over their columns only:
    z = relu(xp @ W_e + b_enc[dead] - b_dec @ W_e) with W_e = W_enc[:, dead], the `drop` positions zeroed,
    and e_hat = z @ W_dec[dead].

    When the k_aux selected are most of the dead latents (always, once n_dead <= k_aux), the sparse pattern
    is nearly the dense [B, n_dead] block, and dense products beat building, sorting and walking a pattern
    of B * k_aux pairs (several times the main step's own). The backward's sums over the batch go through
    spmm.dense_aux_products (fixed order on the CPU: BLAS's split of such sums depends on the thread count);
    W_e's gradient is xp^T @ g minus b_dec's outer product with the column sums of g (the b_dec @ W_e term).
    `drop`: each row's positions among dead_idx that are not selected, or None.
    """

    @staticmethod
    def forward(ctx, xp, W_enc, b_enc, b_dec, W_dec, dead_idx, drop):
        W_e = W_enc.index_select(1, dead_idx)
        W_d = W_dec.index_select(0, dead_idx)
        z = F.relu(torch.addmm(b_enc.index_select(0, dead_idx) - b_dec @ W_e, xp, W_e))
        if drop is not None:
            z.scatter_(1, drop, 0.0)
        ctx.save_for_backward(xp, z, W_e, W_d, b_dec, dead_idx)
        ctx.shapes = (W_enc.shape, W_dec.shape)
        return z @ W_d

    @staticmethod
    def backward(ctx, grad):
        xp, z, W_e, W_d, b_dec, dead_idx = ctx.saved_tensors
        grad = grad.contiguous()
        g_z = (grad @ W_d.t()).mul_(z > 0)
        g_Wd, g_We, g_c = dense_aux_products(z, grad, g_z, xp)
        g_W_enc = grad.new_zeros(ctx.shapes[0]).index_copy_(1, dead_idx, g_We.t() - torch.outer(b_dec, g_c))
        g_W_dec = grad.new_zeros(ctx.shapes[1]).index_copy_(0, dead_idx, g_Wd)
        g_b_enc = grad.new_zeros(ctx.shapes[0][1]).index_copy_(0, dead_idx, g_c)
        return None, g_W_enc, g_b_enc, -(W_e @ g_c), g_W_dec, None, None


class _SquaredError(torch.autograd.Function):
    """(sum((a - b)^2), a - b), or with `add` (sum((a + b)^2), a + b); b: the batch, or AuxK's detached target.

    The difference is kept for the backward, which scales it in place into a's gradient: one pass and one
    [B, d] block each way. F.mse_loss(reduction="sum") writes the squares to a block of their own before summing
    them and forms the difference again in its backward: at 4,096 x 480 on 2 threads (torch profiler, 25
    training steps) 4.4 ms per step against 1.8 ms here. The sum is a float32 dot product: only the reported
    loss depends on it, not the gradient (which is 2 (a - b) g, as F.mse_loss's). The difference is returned
    too (not differentiable, and valid only until the backward): the main loss's x_hat - x is AuxK's residual
    with its sign flipped, and AuxK's target enters with `add`, saving a [B, d] pass (x - (-r) equals x + r bit
    for bit).
    """

    @staticmethod
    def forward(ctx, a, b, add=False):
        diff = a + b if add else a - b
        ctx.save_for_backward(diff)
        ctx.mark_non_differentiable(diff)
        ctx.add = add
        flat = diff.reshape(-1)
        return torch.dot(flat, flat), diff

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _):
        (diff,) = ctx.saved_tensors  # unpacked before the in-place scaling: a second backward raises
        g = diff.mul_(2 * grad)
        if not ctx.needs_input_grad[1]:
            return g, None, None
        return g, (g if ctx.add else -g), None


def _decode(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor, pattern: _Pattern) -> torch.Tensor:
    """sum_j vals[b, j] * W_dec[idx[b, j]] with autograd to vals and W_dec (_Decode on the CPU; elsewhere
    embedding_bag, with W_dec's gradient through _DecoderGrad)."""
    if uses_row_kernels(idx, vals, W_dec):
        return _Decode.apply(idx, vals, W_dec, pattern)
    x_hat = F.embedding_bag(idx, W_dec.detach(), per_sample_weights=vals, mode="sum")
    return _DecoderGrad.apply(x_hat, W_dec, vals.detach(), pattern)


@torch.no_grad()
def _dense_pre(xp: torch.Tensor, b_dec: torch.Tensor, W_enc: torch.Tensor, bias: torch.Tensor,
               out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(xc @ W_enc + bias, xc) with xc = xp - b_dec, the product as ONE matrix product written into `out` when
    it fits. Without autograd (its writes into views would refuse it): training's gradients go through
    _GatherPre's sparse backward, inference needs none.

    The bias rides along as an extra input column of ones: addmm would first broadcast it into the
    [B, n] output (a full extra pass over the largest array of the step), and a freshly allocated
    [B, n] block is page-faulted in again on every step; together ~25% of a CPU step at 480 x 4096.
    xc is written straight into the first d columns of that [B, d + 1] input (returned as a view of them),
    and when the bias is stored as the row right after W_enc (see `bias_row_block`) the [d + 1, n] weight is
    a view too: no copy of either operand per step.
    """
    B, d = xp.shape
    n = W_enc.shape[1]
    xa = xp.new_empty(B, d + 1)
    xc = torch.sub(xp, b_dec, out=xa[:, :d])
    xa[:, d] = 1.0
    Wa = _bias_row_view(W_enc, bias)
    if Wa is None:
        Wa = torch.cat([W_enc, bias.reshape(1, n)], dim=0)
    if out is not None and (out.shape != (B, n) or out.dtype != xa.dtype or out.device != xa.device):
        out = None
    return (torch.mm(xa, Wa, out=out) if out is not None else torch.mm(xa, Wa)), xc


def _bias_row_view(W: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
    """[W; bias] as a view when `bias` is stored right after the contiguous [d, n] W, else None."""
    d, n = W.shape
    if (W.is_contiguous() and bias.is_contiguous() and bias.dtype == W.dtype and bias.numel() == n
            and bias.device == W.device and bias.untyped_storage().data_ptr() == W.untyped_storage().data_ptr()
            and bias.data_ptr() == W.data_ptr() + d * n * W.element_size()):
        return W.detach().as_strided((d + 1, n), (n, 1))
    return None


@contextmanager
def bias_row_block(sae: SparseAutoencoder) -> Iterator[None]:
    """While inside, W_enc and b_enc are views of one [d + 1, n] block (b_enc its last row), so the training
    forward's product reads them in place (_dense_pre) instead of stacking a copy of 8 MB at 480 x 4,096 on
    every step. The Parameters stay the same objects (the optimiser's state still refers to them) and keep
    their values; on leaving, each gets storage of its own again (safetensors refuses shared storage)."""
    W, b = sae.W_enc, sae.b_enc
    with torch.no_grad():
        block = torch.cat([W.detach(), b.detach().reshape(1, -1)], dim=0)
        W.data, b.data = block[:-1], block[-1]
    try:
        yield
    finally:
        with torch.no_grad():
            W.data, b.data = W.data.clone(), b.data.clone()


def _pad_rows(flat_idx: torch.Tensor, B: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices into a [B, n] matrix -> ([B, m] latent indices, [B, m] validity), m = max per row."""
    flat_idx, _ = flat_idx.sort()
    rows, lat = torch.div(flat_idx, n, rounding_mode="floor"), flat_idx % n
    counts = torch.bincount(rows, minlength=B)
    m = max(int(counts.max()) if counts.numel() else 0, 1)
    pos = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    idx = torch.zeros(B, m, dtype=torch.long, device=rows.device)
    valid = torch.zeros(B, m, dtype=torch.bool, device=rows.device)
    idx[rows, pos] = lat
    valid[rows, pos] = True
    return idx, valid


class SparseAutoencoder(nn.Module):
    """A trained or trainable SAE. `encode`/`decode`/`forward` work on RAW embeddings.

    Parameters (SAELens naming): W_enc [d_in, n_latents], b_enc [n_latents], W_dec [n_latents, d_in],
    b_dec [d_in] (all in the pre-processed space). Buffers: `pre_mean` [d_in], `pre_dim_scale` [d_in] (per-block
    input scaling; ones unless trained with blocks), `pre_scale` [] and,
    for BatchTopK, `threshold` [] (the fixed inference threshold; NaN until training sets it).
    """

    def __init__(self, cfg: SAEConfig, *, seed: int | None = 0):
        super().__init__()
        cfg.validate()
        if cfg.d_in < 1 or cfg.n_latents < 1:
            raise ConfigError("d_in and n_latents must be set (>= 1) to build an SAE; use cfg.resolve(d_in)")
        self.cfg = cfg
        self.provenance = Provenance()
        d, n = cfg.d_in, cfg.n_latents
        gen = torch.Generator().manual_seed(int(seed or 0))
        # Decoder rows: random unit vectors; encoder = decoder^T (Gao et al.) at norm ENCODER_INIT_NORM, biases 0.
        W_dec = torch.randn(n, d, generator=gen, dtype=torch.float32)
        W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter((W_dec.t() * ENCODER_INIT_NORM).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("pre_mean", torch.zeros(d))
        self.register_buffer("pre_dim_scale", torch.ones(d))
        self.register_buffer("pre_scale", torch.ones(()))
        self.register_buffer("threshold", torch.full((), float("nan")))

    # -- pre-processing ------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def n_latents(self) -> int:
        return self.cfg.n_latents

    def check_input(self, x: torch.Tensor | np.ndarray, what: str = "input") -> torch.Tensor:
        """Raw input -> float32 tensor on the SAE's device, with clear errors for wrong shape / NaN / Inf."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{what}: expected a tensor or array, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"{what}: expected a 2-D [n_vectors, {self.d_in}] array, got shape {tuple(x.shape)}")
        if x.shape[1] != self.d_in:
            src = self.source_hint()
            raise ValueError(
                f"{what}: vectors have dimension {x.shape[1]} but this SAE expects d_in={self.d_in}{src}"
            )
        x = x.to(device=self.W_enc.device, dtype=torch.float32)
        # Screen by row sums (a NaN or Inf anywhere makes its row's sum non-finite): one reduction instead of an
        # elementwise pass and a boolean block, 20x cheaper; only a failing screen (or an overflowing sum) looks
        # element by element.
        if not bool(torch.isfinite(x.sum(dim=1)).all()):
            finite = torch.isfinite(x).all(dim=1)
            if not bool(finite.all()):
                bad = int(torch.nonzero(~finite)[0, 0])
                kind = "NaN" if bool(torch.isnan(x[bad]).any()) else "Inf"
                raise ValueError(f"{what}: row {bad} contains {kind} values")
        return x

    def source_hint(self) -> str:
        src = self.provenance.source or {}
        if not src:
            return ""
        cols = src.get("columns")
        return f" (trained on {src.get('store') or src.get('name')}, columns {cols if cols is not None else 'all'})"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        # Subtract first (PLM "massive" dimensions: large mean, small spread), then one in-place scale.
        return (x - self.pre_mean).mul_(self.pre_dim_scale * self.pre_scale)

    def postprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.pre_scale / self.pre_dim_scale + self.pre_mean

    # -- core (pre-processed space) ------------------------------------------------------------
    def _pre(self, xp: torch.Tensor) -> torch.Tensor:
        """Pre-activations, computed as in training (one product with the bias folded in, see _dense_pre)."""
        return _dense_pre(xp, self.b_dec, self.W_enc, self.b_enc, None)[0]

    def _activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Dense latents from pre-activations, inference form (BatchTopK uses the fixed threshold)."""
        arch = self.cfg.architecture
        if arch == "topk":
            vals, idx = topk_ascending(pre, self.cfg.k)
            return torch.zeros_like(pre).scatter_(1, idx, F.relu(vals))
        if arch == "batchtopk":
            thr = self.threshold
            if bool(torch.isnan(thr)):
                raise ValueError("this BatchTopK SAE has no inference threshold yet (train it first)")
            return pre * (pre > thr.clamp_min(0.0))
        return F.relu(pre)

    def encode_sparse(self, x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw input -> (row, latent, value) of the non-zero latents (flat tensors, row-major order).

        Never materialises more than one dense [B, n_latents] block for TopK; callers stream in chunks.
        """
        x = self.check_input(x)
        with torch.no_grad():
            pre = self._pre(self.preprocess(x))
            if self.cfg.architecture == "topk":
                k = self.cfg.k
                vals, idx = topk_ascending(pre, k)  # latents ascending within each row
                flat = vals.reshape(-1)
                # the positive entries (what ReLU keeps), in row-major order; one nonzero for three gathers
                pos = torch.nonzero(flat > 0).squeeze(1)
                return (torch.div(pos, k, rounding_mode="floor"), idx.reshape(-1).index_select(0, pos),
                        flat.index_select(0, pos))
            z = self._activate(pre)
            nz = torch.nonzero(z > 0, as_tuple=True)
            return nz[0], nz[1], z[nz]

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw embeddings [B, d_in] -> dense latents [B, n_latents]."""
        x = self.check_input(x)
        with torch.no_grad():
            return self._activate(self._pre(self.preprocess(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Dense latents [B, n_latents] -> reconstruction in RAW embedding space."""
        if z.ndim != 2 or z.shape[1] != self.n_latents:
            raise ValueError(f"latents must have shape [B, {self.n_latents}], got {tuple(z.shape)}")
        with torch.no_grad():
            return self.postprocess(z.to(self.W_dec.dtype) @ self.W_dec + self.b_dec)

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw embeddings -> raw reconstruction (inference form)."""
        x = self.check_input(x)
        with torch.no_grad():
            xp = self.preprocess(x)
            return self.postprocess(self._reconstruct_eval(xp))

    def _reconstruct_eval(self, xp: torch.Tensor) -> torch.Tensor:
        pre = self._pre(xp)
        if self.cfg.architecture == "topk":
            vals, idx = topk_ascending(pre, self.cfg.k)
            return F.embedding_bag(idx, self.W_dec, per_sample_weights=F.relu(vals), mode="sum") + self.b_dec
        return self._activate(pre) @ self.W_dec + self.b_dec

    # -- training forward (pre-processed space) --------------------------------------------------
    def train_forward(
        self,
        xp: torch.Tensor,
        *,
        dead_mask: torch.Tensor | None = None,
        k_aux: int = 0,
        autocast: bool = False,
        group_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        pre_out: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One training forward pass on pre-processed inputs; returns the loss terms and latents.

        `pre_out`: a [B, n_latents] float32 buffer the trainer reuses across steps for the dense
        pre-activations (TopK/BatchTopK, CPU); overwritten, and not referenced after the call returns.

        `group_sum`: when this batch is one rank's slice of a global batch, sums a tensor over the ranks;
        the AuxK normaliser (the residual's variance) is then that of the global batch.

        Returned keys: loss, mse (per-vector mean of squared error / d), aux (AuxK term or 0),
        l1 (ReLU only), x_hat, fired (bool [n] latents active in this batch), l0 (mean active).
        """
        arch = self.cfg.architecture
        d, n, k = self.d_in, self.n_latents, self.cfg.k
        B = xp.shape[0]
        if arch == "relu":
            pre = (xp - self.b_dec) @ self.W_enc + self.b_enc
            z = F.relu(pre)
            norms = self.W_dec.norm(dim=1)
            x_hat = z @ self.W_dec + self.b_dec
            sq = _SquaredError.apply(x_hat, xp)[0]
            mse = sq / (B * d)
            l1 = (z * norms).sum(1).mean() / d
            fired = (z > 0).any(0)
            return {"loss": mse + self.cfg.l1_coeff * l1, "mse": mse, "aux": mse.new_zeros(()), "l1": l1,
                    "x_hat": x_hat.detach(), "fired": fired, "l0": (z > 0).sum(1).float().mean()}
        with torch.no_grad():
            if autocast and xp.is_cuda:
                xc = xp - self.b_dec
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    pre_d = (xc @ self.W_enc).float() + self.b_enc
            else:
                pre_d, xc = _dense_pre(xp, self.b_dec, self.W_enc, self.b_enc, pre_out)
        out: dict[str, torch.Tensor] = {}
        if arch == "topk":
            _, idx = topk_ascending(pre_d, k)
            valid = None
        else:  # batchtopk: the B*k largest activations of the whole batch, padded to [B, m]
            flat = F.relu(pre_d).reshape(-1)
            kv, kidx = flat.topk(B * k, sorted=False)
            keep = kv > 0
            idx, valid = _pad_rows(kidx[keep], B, n)
        pat = _Pattern(idx, n)
        vals = F.relu(_GatherPre.apply(pre_d, xc, self.W_enc, self.b_enc, self.b_dec, idx, pat))
        if valid is not None:
            vals = vals * valid
        x_hat = _decode(idx, vals, self.W_dec, pat) + self.b_dec
        active = vals.detach() > 0
        # latents active in some row: inactive entries write to a spare slot n (no boolean-mask gather)
        fired = torch.zeros(n + 1, dtype=torch.bool, device=xp.device)
        fired[torch.where(active, idx, n)] = True
        fired = fired[:n]
        l0 = active.sum(1).float().mean()
        sq, neg_residual = _SquaredError.apply(x_hat, xp)  # neg_residual = x_hat - xp, until the backward
        mse = sq / (B * d)
        aux = mse.new_zeros(())
        if dead_mask is not None and k_aux > 0:
            n_dead = int(dead_mask.sum())
            if n_dead > 0:
                ka = min(k_aux, n_dead)
                # Top-ka among the dead latents only: a [B, n_dead] block instead of masking and
                # re-ranking all n latents (when every dead latent is selected, no ranking at all).
                dead_idx = torch.nonzero(dead_mask).squeeze(1)
                if n_dead <= _DENSE_AUX_RATIO * ka:
                    # the ka largest are kept by dropping the n_dead - ka smallest (a short ranking)
                    drop = topk_ascending(pre_d.index_select(1, dead_idx).neg_(), n_dead - ka)[1] if ka < n_dead else None
                    e_hat = _DenseAux.apply(xp, self.W_enc, self.b_enc, self.b_dec, self.W_dec, dead_idx, drop)
                else:
                    sidx = pre_d.index_select(1, dead_idx).topk(ka, dim=1, sorted=False)[1] if ka < n_dead else None
                    aidx = dead_idx[sidx] if sidx is not None else dead_idx.expand(B, n_dead).contiguous()
                    apat = _Pattern(aidx, n)
                    avals = F.relu(_GatherPre.apply(pre_d, xc, self.W_enc, self.b_enc, self.b_dec, aidx, apat))
                    e_hat = _decode(aidx, avals, self.W_dec, apat)
                # Normalised by the residual's variance so the term is scale-free (Gao et al. App. A.2); the
                # variance of neg_residual, the residual e = xp - x_hat negated, is e's bit for bit.
                r = neg_residual
                if group_sum is None:
                    denom = ((r - r.mean(0)).pow(2).sum() / B).clamp_min(1e-12)  # torch.var(dim=0) is slower
                else:  # the global batch's variance from summed moments (float64: no cancellation)
                    r64 = r.double()
                    mom = group_sum(torch.cat([r64.sum(0), r64.pow(2).sum().reshape(1),
                                               r64.new_tensor([float(B)])]))
                    n_all = mom[-1]
                    var = (mom[-2] - mom[:-2].pow(2).sum() / n_all) / n_all
                    denom = var.to(r.dtype).clamp_min(1e-12)
                # sum((e_hat - e)^2) as sum((e_hat + neg_residual)^2): the same sums, one [B, d] pass fewer
                aux = torch.nan_to_num(_SquaredError.apply(e_hat, r, True)[0] / B / denom, nan=0.0)
        out.update(loss=mse, mse=mse, aux=aux, x_hat=x_hat.detach(), fired=fired, l0=l0)
        return out

    # -- decoder norm constraint ------------------------------------------------------------------
    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each (unit) decoder row, so Adam moves rows on the sphere."""
        g = self.W_dec.grad
        if g is None:
            return
        W = self.W_dec
        g -= (g * W).sum(1, keepdim=True) * W

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"{c.architecture}, d_in={c.d_in}, n_latents={c.n_latents}, k={c.k}"

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)
