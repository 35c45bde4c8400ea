"""Aligned row blocks over arrays and embedding stores, and writing a transform of stores to a new store.

Why a module of its own: the single-step distiller (reverse.py) and the chain (chain.py) both stream over
aligned stores and both write rd stores; the shared pieces live here, below both, so neither imports the
other to reach them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rd_interp.io.atomic import sha256_json
from rd_interp.io.store import StoreWriter

log = logging.getLogger(__name__)


def is_store(obj: Any) -> bool:
    return hasattr(obj, "iter_chunks") and hasattr(obj, "n_rows") and hasattr(obj, "ids")


def _n_rows(obj: Any) -> int:
    return int(obj.n_rows) if is_store(obj) else int(obj.shape[0])


def _name(obj: Any, i: int, names: Sequence[str] | None = None) -> str:
    if is_store(obj):
        return str(obj.path)
    return names[i] if names is not None else f"input {i}"


def check_aligned(sources: Sequence[Any], names: Sequence[str] | None = None) -> int:
    """All sources must hold the same residues in the same order; returns N.

    For stores the protein ids and lengths must agree; for arrays the row counts.
    """
    n = _n_rows(sources[0])
    stores = [s for s in sources if is_store(s)]
    for i, s in enumerate(sources[1:], start=1):
        if _n_rows(s) != n:
            raise ValueError(
                f"{_name(s, i, names)} has {_n_rows(s)} rows but {_name(sources[0], 0, names)} has {n}; reverse distillation "
                "needs embeddings of the same residues in the same order"
            )
    for s in stores[1:]:
        a = stores[0]
        if s.ids != a.ids:
            j = next((k for k, (x, y) in enumerate(zip(a.ids, s.ids)) if x != y), min(len(a.ids), len(s.ids)))
            raise ValueError(
                f"{s.path}: protein ids differ from {a.path} (first difference at position {j}: "
                f"{s.ids[j] if j < len(s.ids) else '<end>'!r} vs {a.ids[j] if j < len(a.ids) else '<end>'!r})"
            )
        if not np.array_equal(np.asarray(s.lengths), np.asarray(a.lengths)):
            j = int(np.flatnonzero(np.asarray(s.lengths) != np.asarray(a.lengths))[0])
            raise ValueError(
                f"{s.path}: protein {s.ids[j]!r} has {s.lengths[j]} residues but {a.lengths[j]} in {a.path} "
                "(different truncation settings?)"
            )
    return n


def aligned_chunks(sources: Sequence[Any], chunk_rows: int = 65536) -> Iterator[list]:
    """Yield lists of row blocks [src0[a:b], src1[a:b], ...] over arrays and/or stores."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    n = check_aligned(sources)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        yield [s.rows(start, stop) if is_store(s) else s[start:stop] for s in sources]


def paired_chunks(store_small: Any, store_large: Any, chunk_rows: int = 65536) -> Iterator[tuple]:
    """(H_small_chunk, H_large_chunk) float32 blocks of two aligned stores (ids and lengths checked)."""
    for a, b in aligned_chunks([store_small, store_large], chunk_rows):
        yield a, b


def _store_identity(store: Any) -> dict:
    """What identifies an input store in a derived store's manifest (for resume refusal)."""
    m = store.manifest
    return {"model": m.get("model"), "dim": int(store.dim), "n_rows": int(store.n_rows),
            "shards_sha256": sha256_json(m.get("shards", []))}


def transform_stores(fn: Callable[[list], Any], stores: Sequence[Any], out_path: str | os.PathLike, *, dim: int,
                     model: str, fingerprint: str, dtype: str | None = None, chunk_rows: int = 65536,
                     progress: bool = False, shard_rows: int = 1 << 20, blocks: dict | None = None,
                     kind: str = "reverse_distillation") -> Any:
    """Write fn(blocks) for aligned protein-complete blocks of `stores` into a new store.

    `kind` is recorded in the store's manifest (reverse_distillation, or a control space's name).

    Resumable: proteins already committed to `out_path` are skipped; a store made by a different model
    or from different inputs is refused (StoreWriter compares manifests).
    """
    check_aligned(stores)
    ref = stores[-1]
    dtype = dtype or str(ref.dtype)
    manifest = {
        "model": model,
        "kind": kind,
        "distiller_fingerprint": fingerprint,
        "inputs": [_store_identity(s) for s in stores],
    }
    if blocks is not None:  # column layout of an rd store: {"base": [0, k_small], "residual": [k_small, dim]}
        manifest["blocks"] = blocks
    for k in ("layer", "sequence_file", "sequence_sha256"):  # the keys plm.embed writes
        if k in ref.manifest:
            manifest[k] = ref.manifest[k]
    writer = StoreWriter(out_path, dim=dim, manifest=manifest, dtype=dtype, shard_rows=shard_rows)
    ids = ref.ids
    first, n_prot = 0, len(ids)
    while first < n_prot and ids[first] in writer.done:
        first += 1
    if first:
        log.info("%s: %d/%d proteins already written, resuming", out_path, first, n_prot)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_prot, initial=first, unit="protein", desc=f"rd -> {Path(out_path).name}")
    try:
        for i, j, a, b in ref.protein_blocks(chunk_rows, start=first):
            out = fn([s.rows(a, b) for s in stores])
            out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
            pos = 0
            for k in range(i, j):
                L = int(ref.lengths[k])
                if ids[k] not in writer.done:
                    writer.append(ids[k], out[pos:pos + L])
                pos += L
            if bar is not None:
                bar.update(j - i)
        return writer.close()
    finally:
        if bar is not None:
            bar.close()
