"""Adam for the SAE trainer: ATen's fused Adam kernel, driven without torch.optim.

Why not torch.optim.Adam: its methods are wrapped to be skipped by torch.compile, and the first call of
one imports torch._dynamo, ~1.7 s of CPU in every process that trains an SAE (each worker of a run did).
The update is the one torch.optim.Adam(fused=True) makes, bit for bit (tests/test_sae_optim.py), and
state_dict() has torch.optim's layout, so checkpoints written with either load in the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """Adam over a fixed list of parameters; the learning rate is given to each step (the trainer's schedule).

    A parameter without a gradient in a step is left alone and its step count does not advance, as in
    torch.optim. Parameters on one device and of one floating dtype (float32 on CPU, any on CUDA)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if not self.state[i]:
                p = self.params[i]
                self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        steps = [self.state[i]["step"] for i in live]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_([self.params[i] for i in live], [self.params[i].grad for i in live],
                           [self.state[i]["exp_avg"] for i in live], [self.state[i]["exp_avg_sq"] for i in live],
                           [], steps, amsgrad=False, lr=float(lr), beta1=self.betas[0], beta2=self.betas[1],
                           weight_decay=0.0, eps=self.eps, maximize=False)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Adam's layout (one parameter group; parameters numbered in order)."""
        return {"state": {i: dict(s) for i, s in enumerate(self.state) if s},
                "param_groups": [{"betas": self.betas, "eps": self.eps, "weight_decay": 0.0, "amsgrad": False,
                                  "maximize": False, "fused": True, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        groups = state.get("param_groups") or [{}]
        n = len(groups[0].get("params", ()))
        if len(groups) != 1 or n != len(self.params):
            raise ValueError(f"optimizer state for {n} parameters in {len(groups)} groups, expected "
                             f"{len(self.params)} in 1")
        new: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        for i, s in state.get("state", {}).items():
            p = self.params[int(i)]
            if {"step", "exp_avg", "exp_avg_sq"} - set(s) or s["exp_avg"].shape != p.shape:
                raise ValueError(f"optimizer state of parameter {i} does not match it")
            new[int(i)] = {"step": torch.as_tensor(s["step"], dtype=torch.float32).to(p.device).reshape(()),
                           "exp_avg": s["exp_avg"].to(p), "exp_avg_sq": s["exp_avg_sq"].to(p)}
        self.state = new


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_ (the same total norm, the same factor), returning the total norm as a float.

    torch multiplies every gradient by the factor clamped to 1 on every call, so as never to read the norm on
    the host; that is a pass over all gradients that changes nothing unless the norm exceeds max_norm. Here
    the gradients are scaled only then (the trainer reads the host each step anyway): 1.1 ms of a 4,096 x 480
    x 4,096 CPU step on 2 threads (torch profiler, 25 steps without clipping). Falls back to torch's function
    where torch (< 2.6) lacks its two halves.
    """
    params = [p for p in params if p.grad is not None]
    utils = torch.nn.utils
    if not hasattr(utils, "get_total_norm") or not params:
        return float(utils.clip_grad_norm_(params, max_norm))
    total = utils.get_total_norm([p.grad for p in params], 2.0)
    if max_norm / (float(total) + 1e-6) < 1.0:
        utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)
