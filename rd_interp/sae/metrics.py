"""Held-out quality of an SAE: FVU, MSE, cosine, L0, dead / dense fractions, activation frequencies.

FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the evaluation set, numerator and denominator
each accumulated separately in float64 (a mean of per-batch ratios would be biased), the denominator
centred on the evaluation set's own mean so that predicting that mean gives exactly FVU = 1.
All quantities are in the RAW embedding space (FVU is invariant to the SAE's pre-processing anyway).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rd_interp.sae.data import as_source
from rd_interp.sae.model import SparseAutoencoder
from rd_interp.sae.topk import topk_ascending

__all__ = ["FREQ_BINS", "evaluate", "fvu"]

# log10(activation frequency) bin edges for the histogram; dead latents are counted separately.
FREQ_BINS = [-8.0, -7.0, -6.0, -5.0, -4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0]


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Fraction of variance unexplained of one in-memory set (float64 sums)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    num = float(((x - x_hat) ** 2).sum())
    den = float(((x - x.mean(0)) ** 2).sum())
    if den <= 0:
        raise ValueError("FVU undefined: the evaluation vectors have zero variance")
    return num / den


def evaluate(
    sae: SparseAutoencoder,
    data: Any,
    *,
    columns: Any = None,
    rows: np.ndarray | None = None,
    batch_rows: int = 8192,
    dense_threshold: float = 0.1,
) -> dict[str, Any]:
    """Metrics of `sae` on `data` (array or EmbeddingStore), restricted to `columns` / `rows` (held-out)."""
    source = as_source(data, columns)
    rows = source.check_rows(rows)
    if source.dim != sae.d_in:
        raise ValueError(f"{source.name}: selected columns have dimension {source.dim}, the SAE expects {sae.d_in}")
    n_lat = sae.n_latents
    d = sae.d_in
    shift = sae.pre_mean.detach().cpu().double().numpy()  # centres sums near 0: no cancellation in float64
    sse = 0.0
    s1 = np.zeros(d, dtype=np.float64)
    s2 = 0.0
    cos_sum = 0.0
    l0_sum = 0
    counts = torch.zeros(n_lat, dtype=torch.float64)
    n = 0
    was_training = sae.training
    sae.eval()
    try:
        with torch.no_grad():
            for idx, block in source.iter_rows(rows, chunk_rows=batch_rows):
                x = sae.check_input(block, what=f"{source.name} rows {int(idx[0])}..{int(idx[-1])}")
                xp = sae.preprocess(x)
                pre = sae._pre(xp)
                if sae.cfg.architecture == "topk":
                    vals, li = topk_ascending(pre, sae.cfg.k)
                    vals = torch.relu(vals)
                    xh_p = torch.nn.functional.embedding_bag(li, sae.W_dec, per_sample_weights=vals,
                                                             mode="sum") + sae.b_dec
                    on = vals > 0
                    l0_sum += int(on.sum())
                    counts += torch.bincount(li[on], minlength=n_lat).double().cpu()
                else:
                    z = sae._activate(pre)
                    xh_p = z @ sae.W_dec + sae.b_dec
                    act = z > 0
                    l0_sum += int(act.sum())
                    counts += act.sum(0).double().cpu()
                x_hat = sae.postprocess(xh_p)
                diff = (x - x_hat).double()
                sse += float(diff.pow(2).sum())
                xc = x.double().cpu().numpy() - shift
                s1 += xc.sum(0)
                s2 += float((xc**2).sum())
                # cosine in the pre-processed (centred) space: the raw one is inflated by large mean dimensions
                cos = torch.nn.functional.cosine_similarity(xh_p, xp, dim=1, eps=1e-12)
                cos_sum += float(cos.double().sum())
                n += x.shape[0]
    finally:
        sae.train(was_training)
    if n == 0:
        raise ValueError(f"{source.name}: no evaluation vectors")
    sst = s2 - float((s1**2).sum()) / n
    if sst <= 0:
        raise ValueError(f"{source.name}: evaluation vectors have zero variance; FVU undefined")
    freq = (counts / n).numpy()
    alive = freq > 0
    hist_counts, _ = np.histogram(np.log10(freq[alive]), bins=FREQ_BINS) if alive.any() else (
        np.zeros(len(FREQ_BINS) - 1, dtype=np.int64), None)
    return {
        "n_vectors": int(n),
        "fvu": sse / sst,
        "mse": sse / (n * d),
        "cosine": cos_sum / n,
        "l0": l0_sum / n,
        "dead_fraction": float((~alive).mean()),
        "dense_fraction": float((freq > dense_threshold).mean()),
        "freq_hist": {"log10_edges": FREQ_BINS, "counts": [int(c) for c in hist_counts], "dead": int((~alive).sum())},
        "freq_quantiles": {q: float(np.quantile(freq, float(q))) for q in ("0.1", "0.5", "0.9", "0.99")},
    }
