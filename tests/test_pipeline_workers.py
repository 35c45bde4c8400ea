"""Worker processes for independent stage chains (rd_interp.pipeline.workers): results in job order, log
records forwarded to this process, a failing job's own error, and the worker count rule."""

import logging

import pytest

from rd_interp.io.serialize import ConfigError
from rd_interp.pipeline.workers import MAX_AUTO_WORKERS, WorkerPool, resolve_workers, run_jobs


def _job(x: int) -> tuple[int, int]:
    import torch

    logging.getLogger("rd_interp.test_workers").info("job %d ran", x)
    if x == 3:
        raise ValueError(f"proteins.fasta:{x}: bad record")
    return x * 2, torch.get_num_threads()


def test_run_jobs_returns_results_in_order_and_forwards_logs(caplog):
    with caplog.at_level("INFO"):
        out = run_jobs(_job, [(i,) for i in range(3)], workers=2, threads=1)
    assert [r for r, _ in out] == [0, 2, 4]
    assert {t for _, t in out} == {1}  # each worker keeps to its thread budget
    assert all(f"job {i} ran" in caplog.text for i in range(3))


def _pid() -> int:
    import os

    return os.getpid()


def test_worker_pool_keeps_its_processes_across_batches():
    """A run's pool serves the stage chains and then the atlas entries: the same warmed-up processes."""
    import os

    with WorkerPool(2, threads=1, warm=_pid) as pool:
        first = set(pool.map(_pid, [()] * 6))
        assert [r for r, _ in pool.map(_job, [(i,) for i in range(3)])] == [0, 2, 4]
        second = set(pool.map(_pid, [()] * 6))
    assert len(first | second) <= 2 and os.getpid() not in first | second


def test_run_jobs_raises_the_failing_jobs_own_error():
    with pytest.raises(ValueError, match=r"proteins.fasta:3: bad record"):
        run_jobs(_job, [(i,) for i in range(6)], workers=2, threads=1)


def test_worker_count_rule():
    assert resolve_workers(0, "cpu", 21, threads=2) == min(2, __import__("os").cpu_count())
    assert resolve_workers(0, "cpu", 21, threads=64) <= MAX_AUTO_WORKERS
    assert resolve_workers(0, "cuda", 21, threads=8) == 1  # the GPU is the parallelism
    assert resolve_workers(3, "cpu", 2) == 2  # never more workers than jobs
    assert resolve_workers(5, "cpu", 1) == 1
    with pytest.raises(ConfigError, match="workers"):
        resolve_workers(-1, "cpu", 4)


def _blas_threads() -> dict:
    import scipy.linalg  # noqa: F401  (loads scipy's own BLAS after the worker started)
    import sklearn.linear_model  # noqa: F401  (and scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_info

    return {(i["user_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}


def test_runtimes_loaded_late_in_a_worker_keep_to_its_threads():
    import os

    before = dict(os.environ)
    (pools,) = run_jobs(_blas_threads, [()], workers=1, threads=1)
    assert pools and set(pools.values()) == {1}, pools
    assert dict(os.environ) == before  # the budget was lent to the workers only
