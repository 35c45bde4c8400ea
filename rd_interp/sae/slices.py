"""Slices of one CPU kernel call on torch's thread budget (the top-k and sparse-product kernels).

Python threads rather than numba's parallel layer: no second OpenMP runtime in the process beside torch's,
and one thread budget (torch's) to set. The kernels release the GIL; each slice is a fixed range of rows
(or latents) computed by one thread in a fixed order, so results do not depend on the thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_pool: tuple[int, ThreadPoolExecutor] | None = None  # (threads, pool), grown on demand


def map_slices(fn: Callable[[int, int], T], n: int, min_per_thread: int) -> list[T]:
    """fn(a, b) over contiguous slices [a, b) of range(n), one per thread that gets >= min_per_thread items."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), n // max(min_per_thread, 1)))
    if threads == 1:
        return [fn(0, n)]
    if _pool is None or _pool[0] < threads:
        _pool = (threads, ThreadPoolExecutor(threads, thread_name_prefix="rd_interp-kernel"))
    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    jobs = [_pool[1].submit(fn, int(a), int(b)) for a, b in pairwise(cuts)]
    return [j.result() for j in jobs]
