"""The one protein-level split and seeded subset of the package.

Why one function: the pipeline, `rd-interp sae train` and `rd-interp sae eval` must agree on which proteins
are held out, or a "held-out" metric is computed on training proteins. The order is a pure function of
(seed, protein id): it does not depend on file order, store order or Python's hash seed, so the same ids
give the same split in every process, and the split can be recomputed from a store's ids alone.
Residues of one protein are strongly correlated, so splits are always by protein, never by residue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

SPLIT_METHOD = "sha256(seed:id) rank, first round(fraction * n) proteins held out"


def seeded_rank(ids: Sequence[str], seed: int) -> np.ndarray:
    """A deterministic pseudo-random order (indices into `ids`) keyed by (seed, id)."""
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8] for i in ids]
    return np.argsort(np.array([int.from_bytes(k, "big") for k in keys], dtype=np.uint64), kind="stable")


def seeded_subset(ids: Sequence[str], n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of n ids (all of them when n >= len(ids))."""
    return np.sort(seeded_rank(ids, seed)[: min(int(n), len(ids))])


def protein_split(ids: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) sorted protein indices; at least one protein on each side when there are two."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    n = len(ids)
    n_held = int(round(fraction * n)) if fraction > 0 else 0
    if fraction > 0 and n >= 2:
        n_held = min(max(n_held, 1), n - 1)
    order = seeded_rank(ids, seed)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def split_digest(ids: Sequence[str], held: np.ndarray) -> str:
    """sha256 of the held-out ids, recorded with an SAE so a re-derived split can be checked."""
    h = hashlib.sha256()
    for i in np.sort(np.asarray(held, dtype=np.int64)):
        h.update(ids[int(i)].encode() + b"\n")
    return h.hexdigest()


def row_budget(rows: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """At most `budget` of `rows`, drawn uniformly without replacement with `seed`, in ascending order.

    Why: training an SAE or fitting a distillation does not need every residue of a 40M-residue store;
    a uniform draw over residues keeps every protein's share proportional to its length, and sorted
    indices keep reads from a memory-mapped store sequential. budget <= 0 or >= len(rows): all rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if budget <= 0 or rows.size <= budget:
        return rows
    pick = np.random.default_rng([int(seed), 0x5EED]).choice(rows.size, size=int(budget), replace=False)
    return np.sort(rows[pick])
