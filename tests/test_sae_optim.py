"""rd_interp.sae.optim.Adam against torch.optim.Adam(fused=True): the same parameters bit for bit, step by step
(learning rate changing every step, a parameter without a gradient in some steps), and optimiser states that
load into each other."""

import pytest
import torch

from rd_interp.sae.optim import Adam, clip_grad_norm


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((7, 5), (5,), (3, 7))]


def _grads(params, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        # parameter 2 has no gradient on every third step: its state must not advance then
        p.grad = None if (i == 2 and step % 3 == 1) else torch.randn(p.shape, generator=g) * (1 + step)


def _lr(step: int) -> float:
    return 1e-2 * (1 + step) / 7


def _step_both(ours, ref, adam: Adam, torch_adam: torch.optim.Adam, steps: range) -> None:
    """The same gradients and learning rates to both; the parameters must stay equal bit for bit."""
    for step in steps:
        _grads(ours, step), _grads(ref, step)
        adam.step(_lr(step))
        for group in torch_adam.param_groups:
            group["lr"] = _lr(step)
        torch_adam.step()
        for a, b in zip(ours, ref):
            assert torch.equal(a, b), step


def test_adam_equals_torch_fused_adam_bit_for_bit():
    ours, ref = _params(0), _params(0)
    adam = Adam(ours, eps=6.25e-10)
    torch_adam = torch.optim.Adam(ref, lr=1.0, eps=6.25e-10, fused=True)
    _step_both(ours, ref, adam, torch_adam, range(9))
    assert float(adam.state[2]["step"]) == float(torch_adam.state[ref[2]]["step"]) == 6.0
    adam.zero_grad()
    assert all(p.grad is None for p in ours)


def test_states_load_into_each_other():
    ours, ref = _params(1), _params(1)
    adam, torch_adam = Adam(ours, eps=1e-8), torch.optim.Adam(ref, lr=1.0, eps=1e-8, fused=True)
    _step_both(ours, ref, adam, torch_adam, range(4))
    # continue each from the other's state: still equal
    ours2 = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    ref2 = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    resumed, torch_resumed = Adam(ours2, eps=1e-8), torch.optim.Adam(ref2, lr=1.0, eps=1e-8, fused=True)
    resumed.load_state_dict(torch_adam.state_dict())
    torch_resumed.load_state_dict(adam.state_dict())
    _step_both(ours2, ref2, resumed, torch_resumed, range(4, 7))


def test_a_state_of_other_parameters_is_refused():
    import pytest

    adam = Adam(_params(2))
    with pytest.raises(ValueError, match="3 in 1"):
        adam.load_state_dict({"state": {}, "param_groups": [{"params": [0, 1]}]})


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_clip_grad_norm_equals_torch_bit_for_bit(max_norm):
    """The same total norm and the same gradients as torch.nn.utils.clip_grad_norm_, clipping (1e-3) or not
    (1e3, where ours skips the multiplication by 1); a parameter without a gradient is left alone."""
    g = torch.Generator().manual_seed(11)
    shapes = [(64, 33), (33,), (7, 64), (64,)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours[:3], ref[:3]):
        a.grad = torch.randn(a.shape, generator=g)
        b.grad = a.grad.clone()
    total = clip_grad_norm(ours, max_norm)
    want = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert total == float(want)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours[:3], ref[:3])) and ours[3].grad is None
    clipped = float(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in ours[:3]])))
    assert (clipped < total) == (max_norm < total)
