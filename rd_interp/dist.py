"""The process group a command runs in: one process, or the ranks torchrun started (a leaf module: torch and numpy only).

Why PyTorch's own engine: `torchrun` already does rendezvous on one node or several, restarts, and the
gloo (CPU) and NCCL (GPU) backends; rd_interp only reads the environment torchrun sets (RANK, WORLD_SIZE,
LOCAL_RANK) and joins the group. Without those variables everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

#: How long a rank waits in a collective (e.g. for rank 0's next job while it runs a stage alone).
TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the group torchrun started (rank 0 of 1 when not started by torchrun)."""
    def env(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None

    size = env("WORLD_SIZE", 1)
    rank = env("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} / WORLD_SIZE={size} from the environment are inconsistent")
    return World(rank=rank, size=size, local_rank=env("LOCAL_RANK", rank))


def rank_device(device: torch.device) -> torch.device:
    """On CUDA each rank takes its own GPU (cuda:LOCAL_RANK) unless an index was given; CPU stays CPU."""
    w = world()
    if device.type == "cuda" and device.index is None and w.distributed:
        return torch.device("cuda", w.local_rank % max(torch.cuda.device_count(), 1))
    return device


def backend() -> str | None:
    """The initialised group's backend ('gloo', 'nccl'), None for one process."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def init(device: torch.device | str = "cpu") -> World:
    """Join torchrun's process group once (gloo on CPU, NCCL on CUDA); a single process joins nothing."""
    w = world()
    if w.distributed and not dist.is_initialized():
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(rank_device(dev))
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
    return w


def shutdown() -> None:
    """Leave the process group (every rank, at the end of its command). Left to interpreter teardown, the
    backend's own threads can still be running when their objects are destroyed, and the process aborts
    ('terminate called without an active exception') after its work is done."""
    global _grouped
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _grouped = True


def exit_if_grouped(code: int) -> None:
    """End a process that was a rank of a group now, with `code`, once its outputs are written and its
    streams flushed: skip the C++ static destructors. Even after shutdown(), a rank aborted at interpreter
    teardown in about 1 run of 4 on a 2-core machine ('terminate called without an active exception', no
    Python frame left; torch 2.14, gloo), and torchrun then reported a finished, correct run as failed.
    Nothing of ours runs at exit: every file is written (atomically) before the command returns."""
    if not _grouped:
        return
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(int(code))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a small picklable message between our own processes, never a file)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


#: Bytes per collective when an array is broadcast (bounds the transient copy, on the GPU under NCCL).
ARRAY_CHUNK_BYTES = 64 << 20


def broadcast_array(arr: np.ndarray | None, chunk_bytes: int = ARRAY_CHUNK_BYTES) -> np.ndarray:
    """Rank 0's numpy array on every rank (others pass None), sent as raw bytes in bounded chunks.

    Why not `broadcast`: a pickled object travels as one message and is held several times over on each
    rank while it is (un)pickled; a 50M-row training index list is 400 MB. Here each rank holds the array
    once plus one chunk. Under NCCL the chunks go through the rank's GPU, as NCCL requires.
    """
    if not (dist.is_available() and dist.is_initialized()):
        if arr is None:
            raise ValueError("broadcast_array: rank 0 must pass the array")
        return arr
    main = world().is_main
    if main:
        arr = np.ascontiguousarray(arr)
    dtype, shape = broadcast((arr.dtype.str, arr.shape) if main else None)
    out = arr if main else np.empty(shape, dtype=np.dtype(dtype))
    flat = out.reshape(-1).view(np.uint8)
    cuda = backend() == "nccl"
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else None
    step = max(1, int(chunk_bytes))
    for s in range(0, flat.size, step):
        part = torch.from_numpy(flat[s:s + step])  # a view: on gloo the receive writes into `out` directly
        if cuda:
            buf = part.to(dev) if main else torch.empty(part.numel(), dtype=torch.uint8, device=dev)
            dist.broadcast(buf, src=0)
            if not main:
                part.copy_(buf.cpu())
        else:
            dist.broadcast(part, src=0)
    return out


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity for one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# -- rank 0 leads, the other ranks follow -------------------------------------------------------------------
# Every rank runs the same command line; rank 0 executes it and, where a step is spread over the group
# (embedding a FASTA file, training an SAE), sends that step to the others as a job. Their whole command is
# serve(). A job kind is registered by the module that implements it (plm/sharded.py, sae/train.py).

_JOBS: dict[str, Callable[[dict[str, Any]], Any]] = {}
_released = False
_grouped = False  # this process was a rank of a group it has left (see exit_if_grouped)
_in_job = False  # rank 0 is inside a job (the other ranks are too, not waiting for a message)


class RankLost(ValueError):
    """A serving rank lost rank 0 (it failed or was stopped); rank 0's own error says why."""


def register(kind: str, run: Callable[[dict[str, Any]], Any]) -> None:
    """`run(payload)` is what every rank executes for a job of this kind (collectively)."""
    _JOBS[kind] = run


def leading() -> bool:
    """True on rank 0 of a group whose other ranks still serve jobs (a step may be spread over them)."""
    w = world()
    return w.distributed and w.is_main and not _released and dist.is_initialized()


def submit(kind: str, payload: dict[str, Any]) -> Any:
    """Rank 0: run a job on every rank (this one included); returns this rank's result.

    A job synchronises its ranks itself. A rank that fails leaves the command with its error, and torchrun
    then stops the others: a job never waits for a rank that is gone.
    """
    global _in_job
    if not leading():
        raise RuntimeError("submit() is for rank 0 of a torchrun group whose other ranks serve()")
    arrays = sorted(k for k, v in payload.items() if isinstance(v, np.ndarray))
    broadcast((kind, {k: v for k, v in payload.items() if k not in arrays}, arrays))
    for k in arrays:  # large index lists travel as raw bytes, not pickled (see broadcast_array)
        broadcast_array(payload[k])
    _in_job = True
    result = _JOBS[kind](payload)
    _in_job = False  # not on failure: the other ranks may still be inside the job (see release)
    return result


def serve() -> None:
    """The other ranks' whole command: run rank 0's jobs until it releases them."""
    while True:
        try:
            msg = broadcast(None)
        except RuntimeError as exc:  # the connection to rank 0 closed
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise RankLost(f"rank {world().rank}: lost rank 0 while waiting for its next step ({first}); "
                           "rank 0's error says why") from None
        if msg is None:
            return
        kind, payload, arrays = msg
        for k in arrays:
            payload[k] = broadcast_array(None)
        _JOBS[kind](payload)


def release() -> None:
    """Rank 0 at the end of its command: the other ranks' serve() returns (idempotent). Nothing is sent
    when a job failed half-way (the other ranks are not listening): rank 0 exits, torchrun stops the rest."""
    global _released
    if leading() and not _in_job:
        broadcast(None)
    _released = True
