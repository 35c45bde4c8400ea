"""Slices of one CPU kernel call on torch's thread budget (the top-k and sparse-product kernels).

Python threads rather than numba's parallel layer: no second OpenMP runtime in the process beside torch's
(numba's OpenMP pool links the system libgomp, not the copy torch ships), and one thread budget (torch's)
to set. The kernels release the GIL; each chunk is a fixed range of rows (or latents) computed by one thread
in a fixed order, so results do not depend on the thread count or on which thread took which chunk.

Why the calling thread works too, and chunks are pulled rather than dealt: these kernels mostly run right
after a torch operation, and torch's OpenMP workers (GNU libgomp) spin for milliseconds after each parallel
region before they sleep. A kernel thread that shares a core with a spinning worker runs at half speed for
that while, so with one fixed slice per thread the whole call waited for the slowed one: measured here
(AMD EPYC, 2 threads, B = 4,096), top-k of 4,096 latents took 20-22 ms right after the encoder's matmul
and 15 ms 10 ms later. The caller is the OpenMP master (never spinning); with small chunks pulled from a
shared counter the thread on the free core simply takes more of them (in a training step at 4,096 x 480 x
4,096: top-k 22 -> 18 ms, the backward's sparse products 36-46 -> 30-32 ms, one-off timing harness).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

_pool: tuple[int, ThreadPoolExecutor] | None = None  # (helper threads, pool), grown on demand
_CHUNKS_PER_THREAD = 8  # enough for the free thread to absorb a slowed one's share; each costs ~10 us of calls


def map_slices(fn: Callable[[int, int], T], n: int, min_per_thread: int, grain: int = 1) -> list[T]:
    """fn(a, b) over contiguous chunks [a, b) covering range(n), on as many threads as get >= min_per_thread
    items each (the caller's included); chunk bounds are multiples of `grain` (besides n). Results in chunk
    order."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), n // max(min_per_thread, 1)))
    if threads == 1:
        return [fn(0, n)]
    helpers = threads - 1
    if _pool is None or _pool[0] < helpers:
        _pool = (helpers, ThreadPoolExecutor(helpers, thread_name_prefix="rd_interp-kernel"))
    size = max(grain, -(-n // (threads * _CHUNKS_PER_THREAD)), min_per_thread // 4)
    size = -(-size // grain) * grain
    cuts = [*range(0, n, size), n]
    n_chunks = len(cuts) - 1
    results: list = [None] * n_chunks
    ticket = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        while (i := next(ticket)) < n_chunks:
            results[i] = fn(cuts[i], cuts[i + 1])

    jobs = [_pool[1].submit(work) for _ in range(helpers)]
    try:
        work()
    finally:
        for j in jobs:
            j.result()
    return results
