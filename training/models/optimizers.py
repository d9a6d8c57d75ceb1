"""The optimiser of a model whose node tables get sparse row gradients (issue 16, sampled KCAN at 10⁶ users).

torch's Adam refuses sparse gradients and its SparseAdam refuses dense ones, so a model with both needs the two side by
side; torch has no optimiser that holds both, hence this small composite (``zero_grad`` and ``step`` are all the
trainer calls). SparseAdam is lazy Adam: only the rows a step touched move, and only their moments decay. It has no
weight decay; Adam's (coupled L2: ``weight_decay · p`` added to the gradient) is applied here to the touched rows only,
so a step costs O(rows touched), not O(rows in the table).
"""

from __future__ import annotations

import torch
from torch import nn


class SparseRowsAdam:
    """Adam over ``dense`` parameters and SparseAdam over ``sparse`` ones (parameters whose gradients are sparse row
    gradients, e.g. of ``nn.Embedding(sparse=True)``), both at ``lr``; ``weight_decay`` is Adam's L2 for the dense
    ones and the same L2 on each step's touched rows for the sparse ones."""

    def __init__(self, dense: list[nn.Parameter], sparse: list[nn.Parameter], lr: float, weight_decay: float):
        if not sparse:
            raise ValueError("SparseRowsAdam needs at least one sparse parameter (else use torch.optim.Adam)")
        self.weight_decay = weight_decay
        self.sparse = sparse
        self.sparse_adam = torch.optim.SparseAdam(sparse, lr=lr)
        self.adam = torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay) if dense else None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient."""
        self.sparse_adam.zero_grad(set_to_none=set_to_none)
        if self.adam is not None:
            self.adam.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, object]:
        """Both optimisers' states (moments and step counts), for resuming a fit."""
        return {"sparse": self.sparse_adam.state_dict(), "dense": None if self.adam is None else self.adam.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.sparse_adam.load_state_dict(state["sparse"])  # type: ignore[arg-type]
        if self.adam is not None:
            self.adam.load_state_dict(state["dense"])  # type: ignore[arg-type]

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of the dense parameters and one lazy step of the touched rows of the sparse ones."""
        for parameter in self.sparse:
            if parameter.grad is None:
                continue
            if not parameter.grad.is_sparse:
                raise ValueError(
                    f"a sparse-row parameter of shape {tuple(parameter.shape)} got a dense gradient: every use of it "
                    "in the step must go through a sparse lookup"
                )
            if self.weight_decay:
                grad = parameter.grad.coalesce()
                rows = grad.indices()[0]
                values = grad.values() + self.weight_decay * parameter[rows]
                parameter.grad = torch.sparse_coo_tensor(
                    grad.indices(), values, grad.shape, is_coalesced=True, check_invariants=False
                )
        self.sparse_adam.step()
        if self.adam is not None:
            self.adam.step()
