"""Probe inputs that do not come from a model: labels from annotations, and the composition baseline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"
_AA_INDEX = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(STANDARD_AA):
    _AA_INDEX[ord(_c)] = _i


def composition_features(seqs: Sequence[str]) -> np.ndarray:
    """[n, 21] float64: fraction of each standard amino acid (of all residues) and log(length).

    The baseline an embedding must beat: what a probe can read from residue counts alone.
    Non-standard letters (X, B, Z, U, O) count towards the length only.
    """
    out = np.zeros((len(seqs), len(STANDARD_AA) + 1), dtype=np.float64)
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"sequence {i} is empty")
        idx = _AA_INDEX[np.frombuffer(s.upper().encode("ascii"), dtype=np.uint8)]
        out[i, :-1] = np.bincount(idx[idx >= 0], minlength=len(STANDARD_AA)) / len(s)
        out[i, -1] = np.log(len(s))
    return out


def top_terms(protein_ids: Sequence[str], annotations: Mapping[str, Iterable[str]], k: int) -> list[str]:
    """The k terms annotated to most of `protein_ids` (ties: smaller id first)."""
    counts = Counter(t for p in protein_ids for t in set(annotations.get(p, ())))
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def label_matrix(protein_ids: Sequence[str], annotations: Mapping[str, Iterable[str]],
                 terms: Sequence[str]) -> np.ndarray:
    """[n_proteins, n_terms] bool: protein annotated with term (as given: no propagation here)."""
    col = {t: j for j, t in enumerate(terms)}
    if len(col) != len(terms):
        raise ValueError("terms contain duplicates")
    Y = np.zeros((len(protein_ids), len(terms)), dtype=bool)
    for i, p in enumerate(protein_ids):
        for t in annotations.get(p, ()):
            j = col.get(t)
            if j is not None:
                Y[i, j] = True
    return Y
