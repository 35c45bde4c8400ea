"""On-disk, memory-mapped store of per-residue embeddings.

Why a store: embeddings of a few hundred thousand residues from several models do not fit in RAM
comfortably, and every later stage (distillation statistics, SAE training, encoding) only needs to
stream them. Layout of a store directory::

    manifest.json          what produced it (model, layer, dtype, dim, sequence checksum, versions) and
                           whether it is complete
    shards/shard-00000.npy float16/float32 [rows, dim], plain .npy (np.load(mmap_mode="r"), no pickle)
    shards/shard-00000.json ids and lengths of the proteins in that shard + the shard's sha256; written
                           after the .npy, so it is the commit record of the shard
    ids.txt, offsets.npy, lengths.npy   the global index (written by StoreWriter.close)

Proteins are never split across shards and rows are stored in append order, so a resumed run that
appends the remaining proteins in the same order produces byte-identical shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rd_interp.io.atomic import FILE_MODE, name_write_error, read_json, write_json, write_npy, write_text
from rd_interp.io.integrity import CorruptFileError, load_npy
from rd_interp.io.provenance import versions

log = logging.getLogger(__name__)

FORMAT = "rd_interp.embedding_store/1"
_DTYPES = ("float16", "float32")
_SHARD_RE = re.compile(r"^shard-(\d{5})\.json$")
# Keys the writer adds itself; a caller's manifest is compared on everything else.
_OWN_KEYS = ("format", "dim", "dtype", "shard_rows", "created_by", "complete", "n_proteins", "n_rows", "shards")
#: How to get a damaged store back (said in every integrity error).
FIX = ("recompute it: `rd-interp run` recomputes a damaged stage (`rd-interp verify OUT` lists them); "
       "a store of `rd-interp embed`: delete its folder and rerun the command")


class StoreError(ValueError):
    """A store is missing, incomplete, corrupt, or does not match what the caller asked for."""


def as_float32(a: np.ndarray) -> np.ndarray:
    """`a` as float32 (a copy unless it already is float32). float16 goes through torch's vectorised cast:
    numpy's cast of a [32,768 x 160] block took 14.5 ms here, torch's 1.0 ms, and every store read (SAE
    batches, encoding, distillation) converts. float16 -> float32 is exact, so the values are numpy's."""
    if a.dtype == np.float32:
        return np.asarray(a)
    if a.dtype != np.float16 or a.ndim == 0 or any(st < 0 for st in a.strides):
        return np.asarray(a, dtype=np.float32)
    with warnings.catch_warnings():  # a read-only mapped block: only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a).to(torch.float32).numpy()


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _check_columns(columns: Any, dim: int) -> slice | np.ndarray | None:
    if columns is None or isinstance(columns, slice):
        return columns
    cols = np.asarray(columns)
    if cols.dtype == bool:
        if cols.shape != (dim,):
            raise StoreError(f"boolean column mask has shape {cols.shape}, store dim is {dim}")
        return np.flatnonzero(cols)
    if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer):
        raise StoreError("columns must be a slice, a 1-D integer array or a boolean mask")
    if cols.size and (cols.min() < -dim or cols.max() >= dim):
        raise StoreError(f"column index out of range for store dim {dim}")
    return cols.astype(np.int64)


class EmbeddingStore:
    """Read-only view of a complete store; shards are memory-mapped, every read returns float32."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.is_file():
            raise StoreError(f"{self.path}: not an embedding store (no manifest.json)")
        self.manifest: dict[str, Any] = read_json(mpath)
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{mpath}: unknown store format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        if not self.manifest.get("complete"):
            raise StoreError(
                f"{self.path}: store is incomplete (an interrupted run); rerun the same command to resume it"
            )
        try:
            self.dim = int(self.manifest["dim"])
            self.dtype = np.dtype(self.manifest["dtype"])
            shards = [(str(e["name"]), int(e["rows"])) for e in self.manifest["shards"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{mpath}: malformed store manifest ({exc}); {FIX}") from None
        ids_path = self.path / "ids.txt"
        if not ids_path.is_file():
            raise StoreError(f"{ids_path}: missing; {FIX}")
        try:
            ids_text = ids_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise StoreError(f"{ids_path}: not UTF-8 text (byte {exc.start}); {FIX}") from None
        self.ids: list[str] = ids_text.split("\n")[:-1] if ids_text else []
        try:
            self.offsets = load_npy(self.path / "offsets.npy", "store index", FIX).astype(np.int64)
            self.lengths = load_npy(self.path / "lengths.npy", "store index", FIX).astype(np.int64)
        except (CorruptFileError, FileNotFoundError) as exc:
            raise StoreError(str(exc)) from None
        if not (len(self.ids) == len(self.offsets) == len(self.lengths)):
            raise StoreError(f"{self.path}: index files disagree on the number of proteins; {FIX}")
        self._shards: list[np.ndarray] = []
        starts = [0]
        for name, rows in shards:
            npy = self.path / "shards" / f"{name}.npy"
            try:  # size-checked before the mmap: a short shard is named, not "mmap length is greater ..."
                arr = load_npy(npy, "embedding shard", FIX, mmap=True)
            except (CorruptFileError, FileNotFoundError) as exc:
                raise StoreError(str(exc)) from None
            if arr.shape != (rows, self.dim) or arr.dtype != self.dtype:
                raise StoreError(f"{npy}: shape {arr.shape} {arr.dtype}, manifest says ({rows}, {self.dim}) "
                                 f"{self.dtype}; {FIX}")
            self._shards.append(arr)
            starts.append(starts[-1] + arr.shape[0])
        self._starts = np.asarray(starts, dtype=np.int64)
        self.n_rows = int(self._starts[-1])
        self.n_proteins = len(self.ids)
        if self.n_proteins and int(self.offsets[-1] + self.lengths[-1]) != self.n_rows:
            raise StoreError(f"{self.path}: index covers {self.offsets[-1] + self.lengths[-1]} rows, shards hold "
                             f"{self.n_rows}; {FIX}")
        self._pos: dict[str, int] | None = None

    # -- by protein -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_proteins

    def __contains__(self, protein_id: str) -> bool:
        return protein_id in self._positions()

    def __repr__(self) -> str:
        return (f"EmbeddingStore({str(self.path)!r}, n_proteins={self.n_proteins}, n_rows={self.n_rows}, "
                f"dim={self.dim}, dtype={self.dtype}, model={self.manifest.get('model')!r})")

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {pid: i for i, pid in enumerate(self.ids)}
        return self._pos

    def index_of(self, protein_id: str) -> int:
        try:
            return self._positions()[protein_id]
        except KeyError:
            raise KeyError(f"{self.path}: no protein {protein_id!r} in the store") from None

    def rows(self, start: int, stop: int, columns: Any = None) -> np.ndarray:
        """Global rows [start, stop) as float32 (may span shards)."""
        cols = _check_columns(columns, self.dim)
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) outside the store's {self.n_rows} rows")
        parts = []
        s = int(np.searchsorted(self._starts, start, side="right") - 1)
        pos = start
        while pos < stop:
            lo = pos - self._starts[s]
            hi = min(stop, self._starts[s + 1]) - self._starts[s]
            block = self._shards[s][lo:hi]
            parts.append(block if cols is None else block[:, cols])
            pos = int(self._starts[s] + hi)
            s += 1
        if not parts:
            width = self.dim if cols is None else len(range(self.dim)[cols]) if isinstance(cols, slice) else len(cols)
            return np.empty((0, width), dtype=np.float32)
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return as_float32(out)

    def protein(self, i: int, columns: Any = None) -> np.ndarray:
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return self.rows(o, o + n, columns)

    def get(self, protein_id: str, columns: Any = None) -> np.ndarray:
        return self.protein(self.index_of(protein_id), columns)

    def iter_proteins(self, columns: Any = None) -> Iterator[tuple[str, np.ndarray]]:
        for i, pid in enumerate(self.ids):
            yield pid, self.protein(i, columns)

    # -- sequential and random residue access ---------------------------------------------------
    def iter_chunks(self, chunk_rows: int = 65536, columns: Any = None) -> Iterator[np.ndarray]:
        """Consecutive float32 blocks of `chunk_rows` rows (last one shorter), in index order."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        for start in range(0, self.n_rows, chunk_rows):
            yield self.rows(start, min(start + chunk_rows, self.n_rows), columns)

    def take(self, rows: np.ndarray, columns: Any = None) -> np.ndarray:
        """Rows by global index, in the order given (reads each shard once, in sorted order)."""
        cols = _check_columns(columns, self.dim)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"row index out of range for a store of {self.n_rows} rows")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        shard_of = np.searchsorted(self._starts, srt, side="right") - 1
        width = self.dim if cols is None else (len(range(self.dim)[cols]) if isinstance(cols, slice) else len(cols))
        out = np.empty((rows.size, width), dtype=np.float32)
        bounds = np.searchsorted(shard_of, np.arange(len(self._shards) + 1), side="left")
        for s in range(len(self._shards)):
            a, b = bounds[s], bounds[s + 1]
            if a == b:
                continue
            block = self._shards[s][srt[a:b] - self._starts[s]]
            out[order[a:b]] = as_float32(block if cols is None else block[:, cols])
        return out

    def random_batches(
        self,
        batch_size: int,
        *,
        seed: int,
        rows: np.ndarray | None = None,
        columns: Any = None,
        epochs: int = 1,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray]:
        """Shuffled residue batches drawn across the WHOLE store (one permutation per epoch).

        `rows` restricts sampling to those global row indices (e.g. a training split);
        `columns` selects embedding dimensions without copying the store.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        pool = np.arange(self.n_rows, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if pool.ndim != 1:
            raise ValueError("rows must be a 1-D array of global row indices")
        if pool.size and (pool.min() < 0 or pool.max() >= self.n_rows):
            raise IndexError(f"rows contain indices outside the store's {self.n_rows} rows")
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            perm = pool[rng.permutation(pool.size)]
            stop = pool.size - (pool.size % batch_size if drop_last else 0)
            for start in range(0, stop, batch_size):
                yield self.take(perm[start:start + batch_size], columns)

    def protein_blocks(self, max_rows: int, *, start: int = 0, max_proteins: int | None = None,
                       ) -> Iterator[tuple[int, int, int, int]]:
        """Consecutive blocks of WHOLE proteins: (first protein i, end protein j, first row, end row).

        A block holds proteins i..j-1 and at most `max_rows` rows (a longer protein gets a block of its
        own) and at most `max_proteins` proteins. The one way every streamed stage (pooling, encoding,
        distillation transforms) walks a store, so per-protein reductions never straddle a block.
        """
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        ends = self.offsets + self.lengths
        n = self.n_proteins
        i = int(start)
        while i < n:
            # largest j with ends[j-1] - offsets[i] <= max_rows (at least one protein)
            j = int(np.searchsorted(ends, self.offsets[i] + max_rows, side="right"))
            j = max(j, i + 1)
            if max_proteins is not None:
                j = min(j, i + int(max_proteins))
            yield i, j, int(self.offsets[i]), int(ends[j - 1])
            i = j

    def protein_rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Global row indices of the given proteins (for held-out splits by protein)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.empty(0, dtype=np.int64)
        lens = self.lengths[idx]
        starts = np.repeat(self.offsets[idx] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return starts + np.arange(int(lens.sum()), dtype=np.int64)

    def pooled(self, how: str = "mean", columns: Any = None, chunk_rows: int | None = None) -> np.ndarray:
        """Per-protein pooled vectors [n_proteins, dim] float32 (mean accumulated in float64, or max; NaN for a
        protein without residues). Segment reductions in torch, each protein summed in row order by one thread:
        6x numpy's reduceat with its float16 -> float64 conversion, with the same sums. Blocks of whole proteins
        of about `chunk_rows` rows (default: a 16 MiB float64 block, which malloc reuses from block to block;
        a larger one is mapped and page-faulted in afresh each time, 2x the whole pass at mini-L)."""
        if how not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {how!r}")
        cols = _check_columns(columns, self.dim)
        width = self.dim if cols is None else (len(range(self.dim)[cols]) if isinstance(cols, slice) else len(cols))
        chunk_rows = chunk_rows or max(1, (16 << 20) // (8 * max(width, 1)))
        out = np.empty((self.n_proteins, width), dtype=np.float32)
        for i, j, lo, hi in self.protein_blocks(chunk_rows):
            lengths = torch.from_numpy(np.asarray(self.lengths[i:j], dtype=np.int64))
            with warnings.catch_warnings():  # a read-only mapped block: only read here (converted or reduced)
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                block = torch.from_numpy(np.ascontiguousarray(self.rows(lo, hi, cols)))
            if how == "mean":
                sums = torch.segment_reduce(block.double(), "sum", lengths=lengths, axis=0)
                res = sums / lengths.clamp_min(1).double()[:, None]
            else:
                res = torch.segment_reduce(block.float(), "max", lengths=lengths, axis=0)
            res[lengths == 0] = float("nan")
            out[i:j] = res.numpy()
        return out

    @property
    def settings(self) -> dict[str, Any]:
        """The manifest its writer was given (what produced the rows), without the store's own bookkeeping."""
        return {k: v for k, v in self.manifest.items() if k not in _OWN_KEYS}

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._shards))


def _npy_header(rows: int, dim: int, dtype: np.dtype) -> bytes:
    """The .npy (version 1.0) header of a C-order [rows, dim] array: what np.save writes before the data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (int(rows), int(dim))})
    return buf.getvalue()


class _OpenShard:
    """The shard being written, streamed to a temporary .npy next to its final name.

    Why: buffering a whole shard (up to shard_rows x dim) in memory made a writer's memory grow with the
    shard; here each protein's rows go to disk as they come, with the sha256 updated on the way, and the
    header (whose shape is known only at the end) is written at commit, then the file is renamed into
    place. Same bytes as np.save of the whole shard.
    """

    def __init__(self, path: Path, dim: int, dtype: np.dtype, expect_rows: int):
        self.path, self.dim, self.dtype = path, dim, dtype
        self.header_len = len(_npy_header(expect_rows, dim, dtype))  # room reserved for the final header
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.tmp = Path(tmp)
        self.fh = os.fdopen(fd, "wb")
        self.fh.write(b"\0" * self.header_len)
        self.sha = hashlib.sha256()
        self.rows = 0

    def write(self, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        try:
            self.fh.write(data)
        except OSError as exc:  # a full disk names the shard, not the temporary file
            raise (name_write_error(exc, self.path, self.tmp) or exc) from exc
        self.sha.update(data)
        self.rows += rows.shape[0]

    def commit(self) -> str:
        """Header in, fsync, rename onto the final name; returns the sha256 of the rows."""
        try:
            return self._commit()
        except OSError as exc:
            raise (name_write_error(exc, self.path, self.tmp) or exc) from exc

    def _commit(self) -> str:
        header = _npy_header(self.rows, self.dim, self.dtype)
        if len(header) != self.header_len:  # (a shape with more digits than reserved) rewrite with its header
            self.fh.close()
            with open(self.tmp, "rb") as src, open(self.tmp.with_suffix(".tmp2"), "wb") as dst:
                src.seek(self.header_len)
                dst.write(header)
                shutil.copyfileobj(src, dst, 16 << 20)
            os.replace(self.tmp.with_suffix(".tmp2"), self.tmp)
            self.fh = open(self.tmp, "rb+")
        self.fh.seek(0)
        self.fh.write(header)
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.chmod(self.tmp, FILE_MODE)
        os.replace(self.tmp, self.path)
        return self.sha.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


class StoreWriter:
    """Creates or resumes a store. Each shard is committed atomically; `close()` writes the index.

    Resuming: proteins in already committed shards are in `.done`; the caller appends the remaining
    proteins in the same order as an uninterrupted run would, which gives an identical store.
    A store whose manifest (model, layer, sequence checksum, dim, dtype, ...) differs is refused.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dim: int,
        manifest: dict[str, Any],
        dtype: str = "float16",
        shard_rows: int = 1 << 20,
    ):
        if dtype not in _DTYPES:
            raise StoreError(f"store dtype must be one of {_DTYPES}, got {dtype!r}")
        if int(dim) < 1 or int(shard_rows) < 1:
            raise StoreError("dim and shard_rows must be >= 1")
        clash = sorted(set(manifest) & set(_OWN_KEYS))
        if clash:
            raise StoreError(f"manifest keys {clash} are reserved for the store itself")
        self.path = Path(path)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self.shard_rows = int(shard_rows)
        self._user = dict(manifest)
        self._identity = {**self._user, "format": FORMAT, "dim": self.dim, "dtype": dtype,
                          "shard_rows": self.shard_rows}
        self._open: _OpenShard | None = None  # the shard being written (streamed to disk)
        self._buf_ids: list[str] = []
        self._buf_lengths: list[int] = []
        self._buf_set: set[str] = set()  # the open shard's ids, kept incrementally: appends stay O(1)
        self._buf_rows = 0
        self._shards: list[dict[str, Any]] = []
        self._ids: list[str] = []
        self._lengths: list[int] = []
        self.done: set[str] = set()
        self._closed = False
        self._complete = False
        mpath = self.path / "manifest.json"
        if mpath.exists():
            self._resume(read_json(mpath))
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path}: exists, is not empty and is not an embedding store; refusing to write into it")
            (self.path / "shards").mkdir(parents=True, exist_ok=True)
            self._write_manifest(complete=False)

    # -- resume ---------------------------------------------------------------------------------
    def _resume(self, old: dict[str, Any]) -> None:
        old_identity = {k: v for k, v in old.items() if k not in ("created_by", "complete", "n_proteins", "n_rows", "shards")}
        if old_identity != _jsonable(self._identity):
            keys = sorted(k for k in set(old_identity) | set(self._identity)
                          if old_identity.get(k) != _jsonable(self._identity).get(k))
            diffs = "; ".join(f"{k}: store has {old_identity.get(k)!r}, requested {_jsonable(self._identity).get(k)!r}"
                              for k in keys)
            raise StoreError(
                f"{self.path}: existing store was built with different settings ({diffs}). "
                "Use another output directory or delete this one; stores are never mixed."
            )
        sdir = self.path / "shards"
        sdir.mkdir(exist_ok=True)
        committed = sorted(int(m.group(1)) for f in sdir.iterdir() if (m := _SHARD_RE.match(f.name)))
        for expect, i in enumerate(committed):
            problem = (f"{sdir / _shard_name(expect)}.json: missing although later shards exist" if i != expect
                       else self._check_committed(sdir, _shard_name(i)))
            if problem:
                # Shards are appended in order: drop this one and every later one, and embed them again.
                log.warning("%s; discarding it and %d later shard(s), their proteins are embedded again",
                            problem, len(committed) - expect - 1)
                for j in committed[expect:]:
                    (sdir / f"{_shard_name(j)}.json").unlink(missing_ok=True)  # the record first: the commit point
                    (sdir / f"{_shard_name(j)}.npy").unlink(missing_ok=True)
                old["complete"] = False
                self._write_manifest(complete=False)
                break
        # Leftovers of an interrupted shard write: an .npy without its record, temp files.
        for f in sdir.iterdir():
            m = re.match(r"^(shard-\d{5})\.npy$", f.name)
            if (m and m.group(1) not in {s["name"] for s in self._shards}) or f.name.startswith("."):
                f.unlink()
        self.done = set(self._ids)
        self._complete = bool(old.get("complete"))
        if self._ids:
            log.info("%s: resuming, %d proteins (%d rows) already stored", self.path, len(self._ids), sum(self._lengths))

    def _check_committed(self, sdir: Path, name: str) -> str | None:
        """Load one committed shard for a resume, checking it against its record; a problem, or None."""
        try:
            rec = read_json(sdir / f"{name}.json")
            rows, lengths, sha = int(rec["rows"]), [int(n) for n in rec["lengths"]], str(rec["sha256"])
            ids = [str(i) for i in rec["ids"]]
        except (ValueError, KeyError, TypeError) as exc:
            return f"{sdir / (name + '.json')}: unreadable shard record ({exc})"
        npy = sdir / f"{name}.npy"
        try:
            arr = load_npy(npy, "committed shard", FIX, mmap=True)
        except (CorruptFileError, FileNotFoundError) as exc:
            return str(exc).split("; ")[0]
        if arr.shape != (rows, self.dim) or arr.dtype != self.dtype or sum(lengths) != rows or len(ids) != len(lengths):
            return f"{npy}: shape {arr.shape} {arr.dtype} does not match its record"
        h = hashlib.sha256()
        step = max(1, (64 << 20) // max(1, arr.itemsize * self.dim))
        for a in range(0, rows, step):  # in blocks: a shard can be larger than RAM
            h.update(np.ascontiguousarray(arr[a:a + step]).tobytes())
        if h.hexdigest() != sha:
            return f"{npy}: sha256 differs from its record (edited or corrupt)"
        self._shards.append({"name": name, "rows": rows, "sha256": sha})
        self._ids.extend(ids)
        self._lengths.extend(lengths)
        return None

    # -- writing --------------------------------------------------------------------------------
    def append(self, protein_id: str, array: np.ndarray) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: writer is closed")
        if protein_id in self.done or protein_id in self._buf_set:
            raise StoreError(f"{self.path}: protein {protein_id!r} is already in the store (duplicate id?)")
        if self._complete:
            raise StoreError(f"{self.path}: store is complete; cannot add {protein_id!r}")
        if not protein_id or any(c.isspace() for c in protein_id):
            raise StoreError(f"protein id {protein_id!r} is empty or contains whitespace")
        arr = np.asarray(array)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise StoreError(f"{protein_id}: embedding has shape {arr.shape}, expected (L, {self.dim})")
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(self.dtype, copy=False)
        if not np.isfinite(out).all():
            hint = " (values overflow float16; use dtype='float32')" if np.isfinite(arr).all() else ""
            raise StoreError(f"{protein_id}: embedding has non-finite values{hint}")
        if self._open is not None and self._buf_rows + out.shape[0] > self.shard_rows:
            self._flush()
        if self._open is None:
            self._open = _OpenShard(self.path / "shards" / f"{_shard_name(len(self._shards))}.npy", self.dim,
                                    self.dtype, self.shard_rows)
        self._open.write(out)
        self._buf_lengths.append(int(out.shape[0]))
        self._buf_ids.append(protein_id)
        self._buf_set.add(protein_id)
        self._buf_rows += out.shape[0]
        if self._buf_rows >= self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        if self._open is None:
            return
        name = _shard_name(len(self._shards))
        rows = self._open.rows
        try:
            sha = self._open.commit()
        except BaseException:
            self._open.abort()
            self._open = None
            raise
        self._open = None
        # The record is the commit point: a shard without it is discarded on resume.
        write_json(self.path / "shards" / f"{name}.json", {"ids": self._buf_ids, "lengths": self._buf_lengths,
                                                          "rows": int(rows), "sha256": sha})
        self._shards.append({"name": name, "rows": int(rows), "sha256": sha})
        self._ids.extend(self._buf_ids)
        self._lengths.extend(self._buf_lengths)
        self.done.update(self._buf_ids)
        self._buf_ids, self._buf_lengths, self._buf_set, self._buf_rows = [], [], set(), 0

    def adopt(self, part: EmbeddingStore) -> None:
        """Append every protein of another complete store with this store's settings, shard by shard.

        Why: the ranks of a distributed run each write a store of their share; the merged store takes
        their shard files by hard link (a copy only across file systems), so merging costs no rewrite of
        the rows. Shards whose proteins are already here (a resumed merge) are skipped.
        """
        if self._closed or self._complete:
            raise StoreError(f"{self.path}: writer is closed or the store is complete; cannot adopt {part.path}")
        if (part.dim, part.dtype) != (self.dim, self.dtype):
            raise StoreError(f"{part.path}: dim {part.dim} {part.dtype}, this store is {self.dim} {self.dtype}")
        self._flush()
        sdir = self.path / "shards"
        for entry in part.manifest["shards"]:
            rec = read_json(part.path / "shards" / f"{entry['name']}.json")
            ids = [str(i) for i in rec["ids"]]
            if self.done.issuperset(ids):
                continue
            if self.done.intersection(ids):
                raise StoreError(f"{part.path}: shard {entry['name']} overlaps proteins already in {self.path}")
            name = _shard_name(len(self._shards))
            dest = sdir / f"{name}.npy"
            dest.unlink(missing_ok=True)
            try:
                os.link(part.path / "shards" / f"{entry['name']}.npy", dest)
            except OSError:  # another file system, or no hard links: copy
                write_npy(dest, np.load(part.path / "shards" / f"{entry['name']}.npy", mmap_mode="r",
                                        allow_pickle=False))
            write_json(sdir / f"{name}.json", rec)  # the commit point, as in _flush
            self._shards.append({"name": name, "rows": int(rec["rows"]), "sha256": str(rec["sha256"])})
            self._ids.extend(ids)
            self._lengths.extend(int(n) for n in rec["lengths"])
            self.done.update(ids)

    def _write_manifest(self, complete: bool) -> None:
        m = {**self._identity, "created_by": versions(), "complete": complete}
        if complete:
            m.update(n_proteins=len(self._ids), n_rows=int(sum(self._lengths)), shards=self._shards)
        write_json(self.path / "manifest.json", m)

    def close(self) -> EmbeddingStore:
        """Flush, write the index and mark the store complete; returns the reader."""
        if not self._closed:
            self._flush()
            lengths = np.asarray(self._lengths, dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths.size else lengths
            write_text(self.path / "ids.txt", "".join(f"{i}\n" for i in self._ids))
            write_npy(self.path / "offsets.npy", offsets)
            write_npy(self.path / "lengths.npy", lengths)
            self._write_manifest(complete=True)
            self._closed = True
        return EmbeddingStore(self.path)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On error keep what was committed (resumable) and drop the unflushed buffer.
        if exc_type is None:
            self.close()
        else:
            if self._open is not None:
                self._open.abort()
                self._open = None
            self._buf_ids, self._buf_lengths, self._buf_set, self._buf_rows = [], [], set(), 0
            self._closed = True


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """What a dict looks like after a JSON round trip (tuples -> lists etc.), for comparisons."""
    import json

    from rd_interp.io.atomic import _json_default

    return json.loads(json.dumps(d, default=_json_default))


def open_store(path: str | os.PathLike, *, expect: dict[str, Any] | None = None) -> EmbeddingStore:
    """Open a complete store and check that its manifest has the `expect`ed values."""
    store = EmbeddingStore(path)
    if expect:
        bad = {k: (store.manifest.get(k), v) for k, v in _jsonable(expect).items() if store.manifest.get(k) != v}
        if bad:
            raise StoreError(f"{path}: store does not match: " + "; ".join(
                f"{k} is {a!r}, expected {b!r}" for k, (a, b) in bad.items()))
    return store
