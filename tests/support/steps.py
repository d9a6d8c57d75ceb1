"""Optimiser steps a model test takes to see that its loss goes down."""

from __future__ import annotations

from collections.abc import Callable

import torch


def adam_losses(
    model: torch.nn.Module, loss: Callable[[], torch.Tensor], steps: int = 8, lr: float = 0.01
) -> list[float]:
    """The values of ``loss()`` over ``steps`` Adam steps on ``model`` (each checked finite before its step)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        value = loss()
        assert torch.isfinite(value)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    return losses
