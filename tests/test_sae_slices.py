"""map_slices: every index in exactly one chunk, chunks aligned to the grain, results in chunk order, the
caller's errors and the helpers' errors both reach the caller, on 1..3 threads."""

from __future__ import annotations

import threading

import pytest
import torch

from rd_interp.sae.slices import map_slices


@pytest.fixture(params=[1, 2, 3])
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("n,min_per,grain", [(1, 1, 1), (7, 1, 1), (1000, 16, 1), (4096, 256, 1), (1000, 16, 16),
                                             (33, 16, 16), (5000, 128, 16)])
def test_chunks_cover_range_once_in_order(threads, n, min_per, grain):
    seen = []
    lock = threading.Lock()

    def fn(a, b):
        with lock:
            seen.append((a, b))
        return (a, b)

    out = map_slices(fn, n, min_per, grain)
    assert [x for a, b in out for x in range(a, b)] == list(range(n))  # ordered, no gap, no overlap
    assert sorted(seen) == out
    assert all(a % grain == 0 for a, _ in out)
    assert all(b - a >= 1 for a, b in out)


def test_small_chunks_pulled_by_every_thread(threads):
    """More chunks than threads (a slowed thread's share is absorbed); one thread: all on the caller."""
    names = []

    def fn(a, b):
        names.append(threading.current_thread().name)
        return b - a

    out = map_slices(fn, 4096, 256)
    assert sum(out) == 4096
    if threads == 1:
        assert names == [threading.current_thread().name]
    else:
        assert len(out) >= 2 * threads


def test_errors_reach_the_caller(threads):
    def fn(a, b):
        if a <= 2000 < b:
            raise ValueError("chunk failed")
        return 0

    with pytest.raises(ValueError, match="chunk failed"):
        map_slices(fn, 4096, 256)
    assert sum(map_slices(lambda a, b: b - a, 4096, 256)) == 4096  # the pool still works afterwards
