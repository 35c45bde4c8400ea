"""Reading binary artefacts without trusting them: one error naming the file and the fix, never a parser's.

Why here: a truncated or edited ``.npy``/``.npz``/``.safetensors``/``.pt`` file surfaces deep inside numpy,
zipfile, mmap or torch as ``BadZipFile``, "mmap length is greater than file size" or a weights-only
unpickling trace that names neither the file nor what to do. Every reader of a cached or user-given
binary file goes through `reading` (or the loaders below), which turns those low-level failures into one
`CorruptFileError` that says which file is damaged and how to get a good one back. Size checks come
first where the expected size is known (they are free and catch truncation before any mmap).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["CorruptFileError", "check_npy_size", "load_npy", "load_sparse_npz", "reading"]

# What parsers raise on truncated or garbled bytes (ValueError covers numpy's header and mmap errors,
# RuntimeError torch's zip reader, KeyError a zip archive missing a member).
_LOW_LEVEL = (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError, KeyError, RuntimeError)


class CorruptFileError(ValueError):
    """A file exists but cannot be read as what it should be (truncated, edited or of another kind)."""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str, fix: str,
            also: tuple[type[Exception], ...] = ()) -> Iterator[Path]:
    """Context for parsing `path` as `what`: low-level failures become one CorruptFileError.

    `fix` tells the user how to get a good file back (e.g. "rerun `rd-interp run`; the stage is recomputed");
    `also`: a parser's own error types (safetensors' SafetensorError). A missing file stays a
    FileNotFoundError naming it.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: {what} not found; {fix}")
    try:
        yield p
    except CorruptFileError:
        raise
    except FileNotFoundError:
        raise
    except (*_LOW_LEVEL, *also) as exc:
        raise CorruptFileError(f"{p}: cannot read this {what} (truncated or corrupt: {_short(exc)}); {fix}") from None


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of a .npy file from its header alone."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read(fh)
        return tuple(shape), np.dtype(dtype), fh.tell()


def check_npy_size(path: str | os.PathLike, what: str, fix: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file, after checking that the file holds all the bytes its header promises."""
    with reading(path, what, fix) as p:
        shape, dtype, header = _npy_header(p)
        want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        have = p.stat().st_size
        if have != want:
            raise CorruptFileError(f"{p}: {what} has {have} bytes, its header implies {want} "
                                   f"({'truncated' if have < want else 'trailing bytes'}); {fix}")
        return shape, dtype


def load_npy(path: str | os.PathLike, what: str, fix: str, *, mmap: bool = False) -> np.ndarray:
    """np.load of a .npy (never pickles), size-checked first so a short file is named, not mmap'ed."""
    check_npy_size(path, what, fix)
    with reading(path, what, fix) as p:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_sparse_npz(path: str | os.PathLike, what: str, fix: str) -> sp.csr_matrix:
    """scipy.sparse.load_npz as CSR (no pickles: load_npz reads with allow_pickle=False)."""
    with reading(path, what, fix) as p:
        return sp.load_npz(p).tocsr()
