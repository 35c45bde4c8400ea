"""rd_interp.sae.topk: the kernel against torch.topk (the oracle), on the inputs that break selections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rd_interp.sae import topk as topk_mod
from rd_interp.sae.topk import topk_ascending


def oracle(pre: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """torch.topk's set with ties broken towards the lower index, indices ascending per row (float64 keys)."""
    x = pre.double().numpy()
    # rank by (value descending, index ascending): a stable sort of -value keeps lower indices first
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    idx = np.sort(order, axis=1)
    return np.take_along_axis(x, idx, axis=1).astype(np.float32), idx


@pytest.mark.parametrize("B,n,k", [(700, 512, 20), (300, 512, 8), (64, 4096, 32), (50, 500, 20),
                                   (40, 100, 1), (40, 129, 64), (5, 33, 16)])
def test_kernel_equals_the_oracle_on_continuous_rows(B, n, k):
    g = torch.Generator().manual_seed(B + n + k)
    pre = torch.randn(B, n, generator=g) * torch.rand(B, 1, generator=g) * 3 + torch.randn(1, n, generator=g)
    assert topk_mod._uses_kernel(pre, k)
    vals, idx = topk_ascending(pre, k)
    ov, oi = oracle(pre, k)
    assert idx.dtype == torch.int64 and vals.dtype == torch.float32
    np.testing.assert_array_equal(idx.numpy(), oi)
    np.testing.assert_array_equal(vals.numpy(), ov)
    # the same set torch.topk selects
    ti = pre.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
    np.testing.assert_array_equal(idx.numpy(), ti.numpy())


def test_kernel_equals_the_oracle_on_random_shapes_with_the_maximum_in_the_tail_block():
    """Row lengths that the kernel's blocks do not divide: the last block also holds the tail, and a row's
    largest entries placed there (or in the first block) must still be found."""
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(3, 3000))
        k = int(rng.integers(1, min(64, (n - 1) // 2) + 1))
        B = int(rng.integers(1, 40))
        x = rng.standard_normal((B, n)).astype(np.float32)
        x[:, -k:] += 5.0 * (rng.random((B, 1)) < 0.5)  # half the rows: the top k all in the tail
        x[:, :2] += 6.0 * (rng.random((B, 1)) < 0.2)
        pre = torch.from_numpy(x)
        assert topk_mod._uses_kernel(pre, k)
        vals, idx = topk_ascending(pre, k)
        ov, oi = oracle(pre, k)
        np.testing.assert_array_equal(idx.numpy(), oi, err_msg=f"n={n} k={k}")
        np.testing.assert_array_equal(vals.numpy(), ov)


def test_ties_go_to_the_lower_index_and_constant_rows_work():
    g = torch.Generator().manual_seed(0)
    pre = torch.randint(-3, 4, (400, 256), generator=g).float()  # heavy ties everywhere
    pre[0] = 0.0  # a constant row: every entry ties at the threshold (the quickselect branch)
    pre[1] = -torch.inf
    pre[2, 7] = torch.inf
    for k in (1, 5, 20, 64):
        vals, idx = topk_ascending(pre, k)
        ov, oi = oracle(pre, k)
        np.testing.assert_array_equal(idx.numpy(), oi)
        np.testing.assert_array_equal(vals.numpy(), ov)
    np.testing.assert_array_equal(topk_ascending(pre, 5)[1][0].numpy(), np.arange(5))


def test_rows_with_nan_and_other_dtypes_use_torch_with_the_same_contract():
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(30, 128, generator=g)
    pre[3, 10] = float("nan")
    pre[4] = float("nan")  # a row of NaN: the kernel's selection must still end (the row is then redone)
    pre[5, ::3] = float("nan")
    assert topk_mod._uses_kernel(pre, 4)
    vals, idx = topk_ascending(pre, 4)
    assert 10 in idx[3].tolist()  # torch ranks NaN highest
    assert bool((idx.diff(dim=1) > 0).all())
    d = torch.randn(30, 128, generator=g, dtype=torch.float64)
    assert not topk_mod._uses_kernel(d, 4)
    vals, idx = topk_ascending(d, 4)
    np.testing.assert_array_equal(idx.numpy(), oracle(d, 4)[1])
    assert vals.dtype == torch.float64
    # k too large for the kernel (group ranking grows as groups^2): torch does it
    big = torch.randn(10, 1000, generator=g)
    assert not topk_mod._uses_kernel(big, 100)
    np.testing.assert_array_equal(topk_ascending(big, 100)[1].numpy(), oracle(big, 100)[1])


def test_thread_count_does_not_change_the_selection():
    g = torch.Generator().manual_seed(2)
    pre = torch.randn(3000, 512, generator=g)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = topk_ascending(pre, 20)
        torch.set_num_threads(2)
        two = topk_ascending(pre, 20)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_non_contiguous_and_empty_inputs():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(512, 300, generator=g)
    pre = base.t()  # [300, 512], not contiguous
    np.testing.assert_array_equal(topk_ascending(pre, 20)[1].numpy(), oracle(pre, 20)[1])
    v, i = topk_ascending(torch.empty(0, 512), 20)
    assert v.shape == (0, 20) and i.shape == (0, 20)
