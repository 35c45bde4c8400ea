"""Shared helpers for the plm tests: tiny randomly initialised fair-esm ESM2 checkpoints."""

from __future__ import annotations

import contextlib

import torch

from rd_interp.plm.family import MemberSpec, alphabet, build_model, save_esm2_checkpoint


def tiny_model(layers=2, dim=16, heads=2, seed=0):
    model = build_model(MemberSpec("tiny", layers, dim, heads, 0), alphabet(), seed)
    # Larger random weights than the N(0, 0.02) init so the layers visibly transform the input.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel())) * 0.2)
    return model.eval()


def save_tiny(path, layers=2, dim=16, heads=2, seed=0, half=False):
    model = tiny_model(layers, dim, heads, seed)
    save_esm2_checkpoint(model, path, half=half)
    return model


@contextlib.contextmanager
def appends_die_after(n: int):
    """StoreWriter.append raises KeyboardInterrupt at its n-th call inside the block (an interrupted run),
    and is itself again afterwards."""
    from rd_interp.io.store import StoreWriter

    real, calls = StoreWriter.append, {"n": 0}

    def dying(self, pid, x):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, pid, x)

    StoreWriter.append = dying
    try:
        yield
    finally:
        StoreWriter.append = real
