"""Independent jobs of a run in worker processes, each with its share of the CPU threads.

Why processes: a run's SAE units (train -> encode -> enrich per space and seed) share nothing but their
inputs, and their work is small GEMMs, top-k over a few hundred latents, scipy sparse products and numpy
sorts, which one process spreads poorly over a second thread (scipy's sparse products and most numpy work
use one). On this project's 2-core machine, two processes of one thread each ran the demo's probe and 21
units in 137 s where one process of two threads took 173 s (consecutive runs, README).

Why spawn: a forked child inherits the parent's OpenMP and BLAS thread pools in an undefined state. Each
worker starts fresh with its thread budget in the environment (THREAD_VARS), so that every OpenMP and BLAS
runtime it loads later (scikit-learn's and scipy's bundle their own) keeps to it: a runtime that takes all
cores beside another busy worker spins for its share and ran the demo's probe 2.7x slower. Workers send
their log records to the parent through a queue, so they reach the terminal through the parent's
(escaping) handlers, in one stream.

Results do not depend on the worker count: every stage is a pure function of its inputs and seed, and its
floats agree across thread counts to 1e-9 relative with exact latent and GO counts
(tests/test_sae_threads.py, tests/test_pipeline_workers.py).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

import torch

from rd_interp import dist
from rd_interp.io.serialize import ConfigError

log = logging.getLogger(__name__)

__all__ = ["MAX_AUTO_WORKERS", "THREAD_VARS", "WorkerPool", "resolve_workers", "run_jobs"]

#: Environment variables that size the OpenMP and BLAS thread pools of a process when they start.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: Upper bound of the automatic worker count: each worker holds its own SAE, batch buffers, pooled scores and
#: GO term matrices (a few hundred MB at ESM-2 35M scale); beyond a few workers, threads serve as well.
MAX_AUTO_WORKERS = 4


def resolve_workers(requested: int, device: str, n_jobs: int, threads: int | None = None) -> int:
    """How many worker processes to use for `n_jobs` independent jobs.

    `requested` 0 means automatic: one per CPU thread torch would use, at most MAX_AUTO_WORKERS and n_jobs;
    1 (in-process) on a GPU or under torchrun, where the accelerator or the process group is the parallelism."""
    if requested < 0:
        raise ConfigError(f"workers: must be >= 0 (0: automatic), got {requested}")
    if n_jobs <= 1 or dist.world().distributed:
        return 1
    if requested:
        return min(requested, n_jobs)
    if not str(device).startswith("cpu"):
        return 1
    threads = threads or torch.get_num_threads()
    return max(1, min(n_jobs, threads, os.cpu_count() or 1, MAX_AUTO_WORKERS))


def _init_worker(threads: int, level: int, queue: Any) -> None:
    """Runs first in every worker: torch's thread budget (the others come from THREAD_VARS), and logging
    that goes to the parent's queue."""
    torch.set_num_threads(threads)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)


class WorkerPool:
    """`workers` spawned processes kept for a whole run: the stage chains and then the report's atlas entries
    go to the same processes, so each worker starts, imports and reads the ontology once.

    `warm`: a module-level function each worker runs at once (its module is imported to find it), so that the
    workers start and import while the parent still runs its own stages instead of when the first chain comes."""

    def __init__(self, workers: int, threads: int | None = None, *, warm: Callable[[], Any] | None = None):
        self.workers = int(workers)
        self.threads = threads or max(1, torch.get_num_threads() // max(self.workers, 1))
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        root = logging.getLogger()
        self._listener = logging.handlers.QueueListener(self._queue, *root.handlers, respect_handler_level=True)
        self._listener.start()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self.threads, root.getEffectiveLevel(), self._queue))
        if warm is not None:
            self._submit_all(warm, [()] * self.workers)

    def _submit_all(self, fn: Callable[..., Any], jobs: list[tuple]) -> list:
        """Submit while the thread budget is in the environment: a process the executor spawns for a
        submission inherits it (THREAD_VARS)."""
        saved = {v: os.environ.get(v) for v in THREAD_VARS}
        os.environ.update({v: str(self.threads) for v in THREAD_VARS})
        try:
            return [self._pool.submit(fn, *job) for job in jobs]
        finally:
            for v, old in saved.items():
                if old is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = old

    def map(self, fn: Callable[..., Any], jobs: Iterable[tuple]) -> list[Any]:
        """fn(*job) for every job, in the workers; the results in job order.

        `fn` must be a module-level function (it is sent by name). The first failure cancels the jobs not yet
        started and is raised here with its own type and message (a ValueError naming the bad file stays one);
        the pool is then closed."""
        jobs = list(jobs)
        log.info("running %d jobs in %d worker processes x %d threads", len(jobs), self.workers, self.threads)
        try:
            futures = self._submit_all(fn, jobs)
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:  # the first failure in job order, if any
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()
            return [f.result() for f in futures]
        except BaseException:
            self.close(terminate=True)
            raise

    def close(self, terminate: bool = False) -> None:
        """Stop the workers (`terminate`: without waiting for the jobs still running; no public API does
        that). Idempotent."""
        if self._pool is None:
            return
        if terminate:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        self._listener.stop()
        self._queue.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close(terminate=exc[0] is not None)


def run_jobs(fn: Callable[..., Any], jobs: Iterable[tuple], workers: int, threads: int | None = None) -> list[Any]:
    """fn(*job) for every job, in `workers` spawned processes started for them (see WorkerPool.map)."""
    with WorkerPool(workers, threads) as pool:
        return pool.map(fn, jobs)
