"""Latent activations for downstream analysis (GO enrichment, per-sequence inspection).

Per-protein pooling is streamed: residues are encoded a block of whole proteins at a time, reduced to
one row per protein with a scatter (max or mean), and kept as a sparse matrix. Nothing of size
residues x latents is ever held densely (a 5M-residue store x 4096 latents would be 80 GB).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from rd_interp.sae.data import parse_columns
from rd_interp.sae.model import SparseAutoencoder

__all__ = ["TopStrips", "decoder_share", "encode_proteins", "encode_sequence_activations"]


def _sparse_rows(sae: SparseAutoencoder, X: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rs, ls, vs = [], [], []
    for s in range(0, X.shape[0], chunk):
        r, li, v = sae.encode_sparse(X[s:s + chunk])
        rs.append(r.cpu().numpy() + s)
        ls.append(li.cpu().numpy())
        vs.append(v.float().cpu().numpy())
    if not rs:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(rs), np.concatenate(ls), np.concatenate(vs)


def encode_sequence_activations(sae: SparseAutoencoder, X: Any, *, chunk_rows: int = 4096) -> sp.csr_matrix:
    """Per-residue activations of one protein: X [L, d_in] raw embeddings -> csr_matrix [L, n_latents]."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D [L, {sae.d_in}] array of residue embeddings, got shape {X.shape}")
    rows, lat, val = _sparse_rows(sae, X, chunk_rows)
    return sp.csr_matrix((val, (rows, lat)), shape=(X.shape[0], sae.n_latents), dtype=np.float32)


_POOL_CELLS = 1 << 24  # proteins x latents pooled densely per batch (64 MB of float32 at most)


def _pool(prot: np.ndarray, lat: np.ndarray, val: np.ndarray, lengths: np.ndarray, n_lat: int,
          pooling: str) -> np.ndarray:
    """Scatter (protein, latent, value) triples into a dense float32 [P, n_lat] block by max or mean.

    A scatter is O(nnz); sorting the triples (the obvious alternative) was half of the encoding time."""
    n_p = len(lengths)
    key = torch.from_numpy(prot.astype(np.int64) * n_lat + lat.astype(np.int64))
    if pooling == "max":  # activations are > 0, so a zero start is the identity for max
        dense = torch.zeros(n_p * n_lat, dtype=torch.float32)
        dense.scatter_reduce_(0, key, torch.from_numpy(val.astype(np.float32)), reduce="amax")
        dense = dense.numpy().reshape(n_p, n_lat)
    else:  # sums in float64, divided by the protein's residue count
        dense = torch.zeros(n_p * n_lat, dtype=torch.float64)
        dense.index_add_(0, key, torch.from_numpy(val.astype(np.float64)))
        dense = dense.numpy().reshape(n_p, n_lat) / np.maximum(lengths, 1)[:, None]
    return dense.astype(np.float32, copy=False)


class TopStrips:
    """Each latent's `k` top proteins by pooled score, with the latent's activation on every residue of them,
    gathered while encode_proteins streams the store.

    Why: the atlas draws these per-residue strips; gathering them here, from the pass that computes the
    pooled scores, spares it encoding most of the proteins again (a few top proteins per latent cover most
    of a small set). Ranking is the atlas's: pooled score descending, then protein row ascending; a
    protein whose pooled score is 0 is never a top protein. Memory stays bounded: the triples of proteins
    that have left a top list are dropped whenever the kept ones reach PRUNE_TRIPLES or twice what the last
    pruning left.
    """

    PRUNE_TRIPLES = 1 << 22  # 64 MB of (key, position, value)

    def __init__(self, k: int, n_latents: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.n_latents = int(k), int(n_latents)
        self.rows = np.full((self.k, self.n_latents), -1, dtype=np.int64)  # protein row, best first
        self.scores = np.zeros((self.k, self.n_latents), dtype=np.float32)
        self._latent = np.broadcast_to(np.arange(self.n_latents, dtype=np.int64), self.rows.shape)  # of each cell
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row * n_lat + latent, position, value)
        self._kept = 0
        self._limit = self.PRUNE_TRIPLES

    def update(self, first_row: int, pooled: np.ndarray, prot: np.ndarray, pos: np.ndarray, lat: np.ndarray,
               val: np.ndarray) -> None:
        """One block: pooled [P, n_lat] scores of proteins first_row.., and its residue triples (local protein,
        position in the protein, latent, value)."""
        n_p = pooled.shape[0]
        block_rows = np.broadcast_to(first_row + np.arange(n_p, dtype=np.int64)[:, None], pooled.shape)
        cand_s = np.concatenate([self.scores, pooled])
        cand_r = np.concatenate([self.rows, block_rows])
        # stable: equal scores keep the kept rows (all lower) first, then the block's rows in ascending order
        order = np.argsort(-cand_s, axis=0, kind="stable")[:self.k]
        self.scores = np.take_along_axis(cand_s, order, axis=0)
        self.rows = np.where(self.scores > 0, np.take_along_axis(cand_r, order, axis=0), -1)
        entering = self.rows >= first_row
        if not entering.any():
            return
        want = np.unique((self.rows[entering] - first_row) * self.n_latents + self._latent[entering])
        key = prot.astype(np.int64) * self.n_latents + lat.astype(np.int64)
        hit = np.isin(key, want)
        self._parts.append((key[hit] + first_row * self.n_latents, pos[hit].astype(np.int32),
                            val[hit].astype(np.float32)))
        self._kept += int(hit.sum())
        if self._kept >= self._limit:
            self._prune()

    def _prune(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._parts:
            empty = np.empty(0, np.int64)
            return empty, empty.astype(np.int32), empty.astype(np.float32)
        key, pos, val = (np.concatenate(a) for a in zip(*self._parts))
        valid = self.rows >= 0
        keep = np.isin(key, self.rows[valid] * self.n_latents + self._latent[valid])
        key, pos, val = key[keep], pos[keep], val[keep]
        order = np.lexsort((pos, key))
        key, pos, val = key[order], pos[order], val[order]
        self._parts, self._kept = [(key, pos, val)], int(key.size)
        self._limit = max(self.PRUNE_TRIPLES, 2 * self._kept)
        return key, pos, val

    def arrays(self) -> dict[str, np.ndarray]:
        """What the encode stage saves (strips.npz) and the atlas reads: the top lists and the triples of their (protein, latent) pairs, sorted by
        pair key (row * n_latents + latent), then residue position."""
        key, pos, val = self._prune()
        return {"k": np.asarray(self.k), "rows": self.rows, "scores": self.scores, "key": key, "pos": pos,
                "value": val}


def encode_proteins(
    sae: SparseAutoencoder,
    store: Any,
    *,
    columns: Any = None,
    pooling: Literal["max", "mean"] = "max",
    batch_rows: int = 32768,
    chunk_rows: int = 4096,
    progress: bool = False,
    strips: TopStrips | None = None,
) -> sp.csr_matrix:
    """Pooled latent activations per protein -> csr_matrix float32 [store.n_proteins, n_latents], rows in
    `store.ids` order. `columns` defaults to the columns the SAE was trained on (from its cfg). `strips`, if
    given, collects each latent's top proteins with their per-residue activations in the same pass."""
    if pooling not in ("max", "mean"):
        raise ValueError(f"pooling must be 'max' or 'mean', got {pooling!r}")
    if columns is None:
        columns = (sae.provenance.source or {}).get("columns")
    cols = parse_columns(columns)
    n_lat = sae.n_latents
    offsets = np.asarray(store.offsets, dtype=np.int64)
    lengths = np.asarray(store.lengths, dtype=np.int64)
    n_p = int(store.n_proteins)
    parts: list[sp.csr_matrix] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_p, unit="protein", desc="encode")
    max_proteins = -(-_POOL_CELLS // n_lat)  # dense pooling block stays within _POOL_CELLS cells
    for i, j, lo, hi in store.protein_blocks(batch_rows, max_proteins=max_proteins):
        X = store.rows(lo, hi, cols)
        if X.shape[1] != sae.d_in:
            raise ValueError(f"{getattr(store, 'path', 'store')}: selected columns have dimension {X.shape[1]}, "
                             f"the SAE expects d_in={sae.d_in}")
        rows, lat, val = _sparse_rows(sae, X, chunk_rows)
        starts = offsets[i:j] - lo
        prot = np.searchsorted(starts, rows, side="right") - 1  # residue -> protein (local)
        # a zero-length protein never owns a residue: searchsorted gives the last protein starting there
        pooled = _pool(prot, lat, val, lengths[i:j], n_lat, pooling)
        parts.append(sp.csr_matrix(pooled))
        if strips is not None:
            strips.update(i, pooled, prot, rows - starts[prot], lat, val)
        if bar is not None:
            bar.update(j - i)
    if bar is not None:
        bar.close()
    if not parts:
        return sp.csr_matrix((0, n_lat), dtype=np.float32)
    out = sp.vstack(parts, format="csr").astype(np.float32)
    out.sort_indices()
    return out


def decoder_share(sae: SparseAutoencoder, columns_a: Any) -> np.ndarray:
    """Share of each decoder row's squared norm lying on `columns_a` (indices into the SAE's input).

    For an SAE on an rd space [base | residual], decoder_share(sae, slice(0, k_base)) tells how much
    of each latent writes to the base block vs. the residual block. The pre-processing scale is one
    global scalar, so shares are the same in raw and pre-processed units.
    """
    cols = parse_columns(columns_a)
    W = sae.W_dec.detach().cpu().double()
    total = W.pow(2).sum(1)
    if isinstance(cols, np.ndarray):
        cols = torch.from_numpy(cols)
    part = W[:, cols].pow(2).sum(1) if cols is not None else total
    share = torch.where(total > 0, part / total.clamp_min(1e-300), torch.zeros_like(total))
    return share.numpy()
