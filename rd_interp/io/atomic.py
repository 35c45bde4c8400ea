"""Atomic file output and checksums.

Every artefact is written to a temporary file in the destination directory and renamed into place,
so an interrupted job never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
#: the mode every output file gets (what open() would make under this process's umask)
FILE_MODE = 0o666 & ~_UMASK
_FULL_BYTES = 1 << 20  # free space below which a failed write is reported as a full disk


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, on error delete it.

    `suffix` lets writers that insist on an extension (np.save adds ``.npy``) get one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600, and so do writers that replace the file themselves (safetensors): results are
        # set to what open() would make, after the writer is done, so every output has the same permissions.
        os.chmod(tmp_path, FILE_MODE)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        named = name_write_error(exc, path, tmp_path)
        if named is not None:
            raise named from exc
        raise


def name_write_error(exc: BaseException, path: Path, tmp: Path) -> OSError | None:
    """A write failure as an OSError naming `path` (a bare "No space left on device" names nothing, and the
    temporary file's name means nothing to a user).

    Writers that are not plain file objects (torch.save, safetensors) report a full disk as their own
    RuntimeError; it is recognised by the disk actually being (nearly) full."""
    if not isinstance(exc, Exception):
        return None
    if isinstance(exc, OSError) and exc.filename is not None and str(tmp) not in (str(exc.filename),
                                                                                  str(exc.filename2)):
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, exc.strerror or str(exc), str(path))
    # No errno: numpy's "N requested and M written", torch's and safetensors' own write errors.
    try:
        full = shutil.disk_usage(path.parent).free < _FULL_BYTES
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"write failed ({exc})", str(path)) if isinstance(exc, OSError) else None


def ensure_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `path` if needed and prove it is writable, before any work: errors name the folder."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"the {what} exists and is not a folder", str(p))
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rd_interp-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write in the {what} ({exc.strerror})", str(p)) from None
    return p


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed float repr) so identical results give identical files."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Checksum of a JSON-able object in canonical form; used as a cache key for configs."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()
