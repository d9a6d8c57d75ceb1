"""The optimiser of a model whose node tables get sparse row gradients (issue 16, sampled KCAN at 10⁶ users).

torch's Adam refuses sparse gradients and its SparseAdam refuses dense ones, so a model with both needs the two side by
side; torch has no optimiser that holds both, hence this small composite (``zero_grad`` and ``step`` are all the
trainer calls). The sparse side is lazy Adam (:class:`LazyRowAdam`): only the rows a step touched move, and only their
moments decay, with Adam's coupled L2 (``weight_decay · p`` added to the gradient) on those rows only, so a step costs
O(rows touched), not O(rows in the table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LazyRowAdam(torch.optim.Optimizer):
    """Lazy Adam on sparse row gradients, with coupled L2 on the touched rows: torch's ``SparseAdam`` update, state
    (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) and state dict, plus ``weight_decay``.

    Written here rather than stepping torch's SparseAdam because SparseAdam reads and writes the moments and the table
    through sparse tensors (``sparse_mask``, sparse ``add_``): it takes 1.8x the time of the row gathers and scatters
    below on the 10⁶-user node table (``bench/sparse_adam.py``, BENCHMARKS.md)."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One lazy Adam step of the rows each parameter's sparse gradient touches."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    self._step_rows(parameter, group)

    def _step_rows(self, parameter: nn.Parameter, group: dict[str, object]) -> None:
        """Adam on the touched rows of ``parameter``: gather their moments, update them, scatter them back and move the
        rows; the order of operations is SparseAdam's, so the two agree to rounding."""
        if not parameter.grad.is_sparse:
            raise ValueError(
                f"a sparse-row parameter of shape {tuple(parameter.shape)} got a dense gradient: every use of it "
                "in the step must go through a sparse lookup"
            )
        state = self.state[parameter]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(parameter)
            state["exp_avg_sq"] = torch.zeros_like(parameter)
        state["step"] += 1  # also for an empty gradient, as SparseAdam counts it
        gradient = parameter.grad.coalesce()  # a row looked up twice appears twice; Adam's update needs one sum
        rows, values = gradient.indices()[0], gradient.values()
        if rows.numel() == 0:
            return
        beta1, beta2 = group["betas"]  # type: ignore[misc]
        if group["weight_decay"]:
            values = values + group["weight_decay"] * parameter.index_select(0, rows)
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).lerp_(values.square(), 1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        step = state["step"]
        step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)  # type: ignore[operator]
        parameter.index_add_(0, rows, exp_avg.div_(exp_avg_sq.sqrt_().add_(group["eps"])), alpha=-step_size)


class SparseRowsAdam:
    """Adam over ``dense`` parameters and :class:`LazyRowAdam` over ``sparse`` ones (parameters whose gradients are
    sparse row gradients, e.g. of ``nn.Embedding(sparse=True)``), both at ``lr`` with ``weight_decay`` as Adam's
    coupled L2 (on each step's touched rows only, for the sparse ones)."""

    def __init__(self, dense: list[nn.Parameter], sparse: list[nn.Parameter], lr: float, weight_decay: float):
        if not sparse:
            raise ValueError("SparseRowsAdam needs at least one sparse parameter (else use torch.optim.Adam)")
        self.weight_decay = weight_decay
        self.rows = LazyRowAdam(sparse, lr=lr, weight_decay=weight_decay)
        self.adam = torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay) if dense else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient."""
        self.rows.zero_grad(set_to_none=set_to_none)
        if self.adam is not None:
            self.adam.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, object]:
        """Both optimisers' states (moments and step counts), for resuming a fit."""
        return {"sparse": self.rows.state_dict(), "dense": None if self.adam is None else self.adam.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned, also one saved when the sparse side was torch's SparseAdam (same
        per-row state; its groups carry no ``weight_decay``, which was then applied here: this fit's value)."""
        self.rows.load_state_dict(state["sparse"])  # type: ignore[arg-type]
        for group in self.rows.param_groups:
            group.setdefault("weight_decay", self.weight_decay)
        if self.adam is not None:
            self.adam.load_state_dict(state["dense"])  # type: ignore[arg-type]

    def step(self) -> None:
        """One Adam step of the dense parameters and one lazy step of the touched rows of the sparse ones."""
        self.rows.step()
        if self.adam is not None:
            self.adam.step()
