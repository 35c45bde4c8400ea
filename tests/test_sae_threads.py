"""SAE training, encoding and metrics do not depend on the number of torch CPU threads.

A user re-running a job on a machine with another core count must get the same SAE: latent counts
exactly, floats to 1e-9 relative. The input is sized so that the matmuls, top-k and reductions take
torch's parallel paths (tensors well above its 32k-element grain size) and AuxK is active.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rd_interp.sae.metrics import evaluate
from rd_interp.sae.model import SAEConfig
from rd_interp.sae.train import TrainConfig, train_sae


def _data(n=6000, d=96, seed=3):
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((400, d))
    idx = rng.integers(0, 400, (n, 6))
    X = np.einsum("ns,nsd->nd", rng.exponential(1.0, (n, 6)), D[idx]) + rng.normal(0, 2.0, d)
    return X.astype(np.float32)


def _run(threads: int, X: np.ndarray, arch: str):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = TrainConfig(batch_size=1024, n_steps=25, dead_window=2048, lr=2e-3)
        sae = train_sae(X[:5000], SAEConfig(arch, n_latents=512, k=8), cfg, progress=False, seed=0)
        rows, lat, vals = sae.encode_sparse(X[5000:])
        metrics = evaluate(sae, X[5000:])
        return sae, (rows.numpy(), lat.numpy(), vals.numpy()), metrics
    finally:
        torch.set_num_threads(old)


def _close(a, b, path="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, (bool, int, np.integer, str)) or a is None:
        assert a == b, (path, a, b)
    elif isinstance(a, (float, np.floating)):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300), (path, a, b)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_one_and_two_threads_give_the_same_sae(arch):
    X = _data()
    s1, enc1, m1 = _run(1, X, arch)
    s2, enc2, m2 = _run(2, X, arch)
    for (name, a), b in zip(s1.state_dict().items(), s2.state_dict().values()):
        a64, b64 = a.double(), b.double()
        scale = a64.abs().max().clamp_min(1e-300)
        assert float((a64 - b64).abs().max() / scale) <= 1e-9 or bool(torch.equal(a.isnan(), b.isnan())
                                                                          and a.isnan().all()), name
    assert np.array_equal(enc1[0], enc2[0]) and np.array_equal(enc1[1], enc2[1])  # which latents fire: exact
    np.testing.assert_allclose(enc1[2], enc2[2], rtol=1e-9, atol=0)
    _close(m1, m2, "metrics")
    info1 = {k: v for k, v in s1.provenance.train.items() if not k.endswith("_this_call")}
    info2 = {k: v for k, v in s2.provenance.train.items() if not k.endswith("_this_call")}
    _close(info1, info2, "train_info")


def test_progress_bar_does_not_change_the_record():
    """The bar's running means see every step; the record (cfg.json's train section) must not depend on
    whether a bar was shown (worker processes train without one)."""
    X = _data(n=3000, d=32)
    info = []
    for progress in (True, False):
        cfg = TrainConfig(batch_size=256, n_steps=12, lr=2e-3)
        sae = train_sae(X, SAEConfig("topk", n_latents=64, k=4), cfg, progress=progress, seed=0)
        info.append({k: v for k, v in sae.provenance.train.items() if not k.endswith("_this_call")})
    assert info[0] == info[1] and info[0]["last_batch_fvu"] > 0
