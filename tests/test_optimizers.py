"""SparseRowsAdam (issue 16): SparseAdam on sparse row gradients beside Adam, with L2 on the touched rows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from training.models.optimizers import SparseRowsAdam


def square_step(
    optimizer: SparseRowsAdam | torch.optim.Optimizer, table: nn.Embedding, head: nn.Linear, ids: list[int]
) -> None:
    """One step on the squared output of ``head`` over the rows ``ids`` of ``table``."""
    optimizer.zero_grad()
    (head(table(torch.tensor(ids))) ** 2).sum().backward()
    optimizer.step()


def test_it_equals_adam_with_weight_decay_when_every_row_is_touched() -> None:
    """Lazy Adam differs from Adam only on rows a step leaves out, so with every row in every step (one twice) three
    steps match torch's Adam with the same coupled weight decay."""
    torch.manual_seed(0)
    table, head = nn.Embedding(5, 3, sparse=True), nn.Linear(3, 2)
    reference_table, reference_head = copy.deepcopy(table), copy.deepcopy(head)
    reference_table.sparse = False
    optimizer = SparseRowsAdam(list(head.parameters()), [table.weight], lr=0.1, weight_decay=0.5)
    parameters = [*reference_table.parameters(), *reference_head.parameters()]
    reference = torch.optim.Adam(parameters, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        square_step(optimizer, table, head, [4, 0, 1, 2, 3, 0])
        square_step(reference, reference_table, reference_head, [4, 0, 1, 2, 3, 0])
        torch.testing.assert_close(table.weight, reference_table.weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(head.weight, reference_head.weight, rtol=1e-4, atol=1e-6)


def test_rows_a_step_leaves_out_keep_their_values() -> None:
    """Rows outside a step's lookups stay put, also with weight decay and momentum from earlier steps."""
    torch.manual_seed(0)
    table, head = nn.Embedding(6, 3, sparse=True), nn.Linear(3, 2)
    optimizer = SparseRowsAdam(list(head.parameters()), [table.weight], lr=0.1, weight_decay=0.5)
    start = table.weight.detach().clone()
    square_step(optimizer, table, head, [0, 1])
    after_first = table.weight.detach().clone()
    assert not torch.equal(after_first[:2], start[:2])
    torch.testing.assert_close(after_first[2:], start[2:], rtol=0, atol=0)
    square_step(optimizer, table, head, [2])
    torch.testing.assert_close(table.weight.detach()[[0, 1, 3, 4, 5]], after_first[[0, 1, 3, 4, 5]], rtol=0, atol=0)


def test_a_dense_gradient_on_a_sparse_row_table_is_refused() -> None:
    table, head = nn.Embedding(4, 3), nn.Linear(3, 2)  # sparse=False: its gradient is dense
    optimizer = SparseRowsAdam(list(head.parameters()), [table.weight], lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="got a dense gradient"):
        square_step(optimizer, table, head, [0])


def test_it_needs_a_sparse_parameter() -> None:
    with pytest.raises(ValueError, match="at least one sparse parameter"):
        SparseRowsAdam([nn.Parameter(torch.zeros(2))], [], lr=0.1, weight_decay=0.0)
