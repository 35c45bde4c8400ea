"""Where SAE training vectors come from: an in-memory/memory-mapped array or an EmbeddingStore.

Why a small adapter instead of iterating `store.random_batches`: a resumable run must be able to
jump straight to batch `t` without reading batches 0..t-1. The batch at step `t` is a pure function
of (seed, t): positions t*B..(t+1)*B of the concatenation of per-epoch permutations of the training
rows (shuffled across the WHOLE store, not within a shard). Column subsets are applied on read, so
training on the base prefix or the residual block of an rd space never copies the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from rd_interp.io.store import as_float32

__all__ = ["DataSource", "as_source", "columns_to_json", "parse_columns"]


def parse_columns(spec: Any) -> slice | np.ndarray | None:
    """`None`, a slice, an index array, or a CLI string ``"a:b"`` / ``"3,5,7"`` -> slice | int64 array | None."""
    if spec is None or isinstance(spec, slice):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return None
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 2:
                raise ValueError(f"column range {spec!r} must look like 'a:b'")
            try:
                a = int(parts[0]) if parts[0] else None
                b = int(parts[1]) if parts[1] else None
            except ValueError:
                raise ValueError(f"column range {spec!r} must look like 'a:b' with integers") from None
            return slice(a, b)
        try:
            return np.asarray([int(v) for v in text.split(",")], dtype=np.int64)
        except ValueError:
            raise ValueError(f"columns {spec!r} must be 'a:b' or a comma-separated list of integers") from None
    if isinstance(spec, dict) and "start" in spec:
        return slice(spec["start"], spec["stop"])
    arr = np.asarray(spec)
    if arr.dtype == bool:
        return np.flatnonzero(arr).astype(np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError("columns must be a slice, 'a:b', or a 1-D integer array")
    return arr.astype(np.int64)


def columns_to_json(columns: slice | np.ndarray | None, dim: int) -> Any:
    """JSON form recorded in cfg.json: null, {"start", "stop"} (normalised to `dim`), or a list."""
    if columns is None:
        return None
    if isinstance(columns, slice):
        start, stop, step = columns.indices(dim)
        if step != 1:
            return list(range(start, stop, step))
        return {"start": start, "stop": stop}
    return [int(c) for c in columns]


def _width(columns: slice | np.ndarray | None, dim: int) -> int:
    if columns is None:
        return dim
    if isinstance(columns, slice):
        return len(range(dim)[columns])
    if columns.size and (columns.min() < -dim or columns.max() >= dim):
        raise ValueError(f"column index out of range for data of dim {dim}")
    return int(columns.size)


class DataSource:
    """Row-addressable float32 view of the training data (array or store) with a column subset."""

    def __init__(self, data: Any, columns: Any = None, name: str | None = None):
        self.columns = parse_columns(columns)
        if isinstance(data, np.ndarray):
            if data.ndim != 2:
                raise ValueError(f"training data must be a 2-D array [rows, dim], got shape {data.shape}")
            if not np.issubdtype(data.dtype, np.floating):
                raise ValueError(f"training data must be floating point, got dtype {data.dtype}")
            self._array = data
            self._store = None
            self.full_dim = int(data.shape[1])
            self.n_rows = int(data.shape[0])
            self.name = name or "array"
        elif hasattr(data, "take") and hasattr(data, "n_rows") and hasattr(data, "dim"):
            self._array = None
            self._store = data
            self.full_dim = int(data.dim)
            self.n_rows = int(data.n_rows)
            self.name = name or str(getattr(data, "path", "store"))
        else:
            raise ValueError(f"training data must be a numpy array or an EmbeddingStore, got {type(data).__name__}")
        self.dim = _width(self.columns, self.full_dim)
        if self.dim < 1:
            raise ValueError(f"column selection {self.columns!r} selects no columns of {self.full_dim}")

    @property
    def store(self):
        return self._store

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), dim] in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._store is not None:
            return self._store.take(rows, self.columns)
        order = np.argsort(rows, kind="stable")  # sorted reads are much faster on memory maps
        block = self._array[rows[order]]
        if self.columns is not None:
            block = block[:, self.columns]
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        out[order] = as_float32(block)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Consecutive rows [start, stop) as float32."""
        if self._store is not None:
            return self._store.rows(start, stop, self.columns)
        block = self._array[start:stop]
        if self.columns is not None:
            block = block[:, self.columns]
        return as_float32(block)

    def iter_rows(self, rows: np.ndarray | None, chunk_rows: int = 16384) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices, float32 block) in chunks; `rows=None` streams everything in order."""
        if rows is None:
            for start in range(0, self.n_rows, chunk_rows):
                stop = min(start + chunk_rows, self.n_rows)
                yield np.arange(start, stop, dtype=np.int64), self.read(start, stop)
            return
        rows = np.asarray(rows, dtype=np.int64)
        for start in range(0, rows.size, chunk_rows):
            idx = rows[start:start + chunk_rows]
            yield idx, self.take(idx)

    def check_rows(self, rows: np.ndarray | None) -> np.ndarray | None:
        if rows is None:
            return None
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError("rows must be a 1-D integer array of row indices")
        rows = rows.astype(np.int64)
        if rows.size == 0:
            raise ValueError("rows is empty: no training vectors")
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise ValueError(f"rows contain indices outside the data's {self.n_rows} rows")
        return rows


def as_source(data: Any, columns: Any = None) -> DataSource:
    return data if isinstance(data, DataSource) else DataSource(data, columns)


class BatchOrder:
    """Deterministic shuffled order: the batch at step t depends only on (seed, t)."""

    def __init__(self, rows: np.ndarray | None, n_rows: int, batch_size: int, seed: int):
        self.pool = np.arange(n_rows, dtype=np.int64) if rows is None else rows
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._epoch = -1
        self._perm: np.ndarray | None = None

    def _perm_of(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, 0x5AE, epoch])
            self._perm = self.pool[rng.permutation(self.pool.size)]
            self._epoch = epoch
        return self._perm  # type: ignore[return-value]

    def rows_at(self, step: int) -> np.ndarray:
        n = self.pool.size
        start = step * self.batch_size
        out = []
        need = self.batch_size
        while need:
            epoch, off = divmod(start, n)
            take = min(need, n - off)
            out.append(self._perm_of(epoch)[off:off + take])
            start += take
            need -= take
        return out[0] if len(out) == 1 else np.concatenate(out)
