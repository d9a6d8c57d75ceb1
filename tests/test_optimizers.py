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


def test_lazy_row_adam_equals_torch_sparse_adam() -> None:
    """Without weight decay the row optimiser is torch's SparseAdam: same rows move by the same amounts, over steps
    that touch some rows, one of them twice."""
    torch.manual_seed(0)
    table, head = nn.Embedding(7, 3, sparse=True), nn.Linear(3, 2)
    reference_table = copy.deepcopy(table)
    ours = SparseRowsAdam(list(head.parameters()), [table.weight], lr=0.1, weight_decay=0.0)
    reference = torch.optim.SparseAdam([reference_table.weight], lr=0.1)
    frozen_head = copy.deepcopy(head).requires_grad_(False)
    for ids in ([0, 3, 3], [1, 3, 6], [0, 2]):
        ours.zero_grad()
        reference.zero_grad()
        (frozen_head(table(torch.tensor(ids))) ** 2).sum().backward()
        (frozen_head(reference_table(torch.tensor(ids))) ** 2).sum().backward()
        ours.step()
        reference.step()
        torch.testing.assert_close(table.weight, reference_table.weight, rtol=1e-6, atol=1e-7)


def old_sparse_rows_step(sparse_adam: torch.optim.SparseAdam, adam: torch.optim.Adam, table: nn.Embedding) -> None:
    """The step of SparseRowsAdam before LazyRowAdam: L2 added to the coalesced rows, then torch's SparseAdam."""
    grad = table.weight.grad.coalesce()
    rows = grad.indices()[0]
    values = grad.values() + 0.5 * table.weight.detach()[rows]
    table.weight.grad = torch.sparse_coo_tensor(
        grad.indices(), values, grad.shape, is_coalesced=True, check_invariants=False
    )
    sparse_adam.step()
    adam.step()


def test_a_state_saved_with_torch_sparse_adam_resumes_the_same_fit() -> None:
    """A resumable fit's state written before LazyRowAdam (sparse side: torch's SparseAdam, L2 applied outside it)
    loads, and the next step equals the one the old optimiser takes from the same state."""
    torch.manual_seed(0)
    table, head = nn.Embedding(6, 3, sparse=True), nn.Linear(3, 2)
    sparse_adam = torch.optim.SparseAdam([table.weight], lr=0.1)
    adam = torch.optim.Adam(head.parameters(), lr=0.1, weight_decay=0.5)
    for ids in ([0, 1, 1], [2, 5]):
        sparse_adam.zero_grad()
        adam.zero_grad()
        (head(table(torch.tensor(ids))) ** 2).sum().backward()
        old_sparse_rows_step(sparse_adam, adam, table)
    saved = {"sparse": copy.deepcopy(sparse_adam.state_dict()), "dense": copy.deepcopy(adam.state_dict())}
    resumed_table, resumed_head = copy.deepcopy(table), copy.deepcopy(head)
    resumed = SparseRowsAdam(list(resumed_head.parameters()), [resumed_table.weight], lr=0.1, weight_decay=0.5)
    resumed.load_state_dict(saved)

    sparse_adam.zero_grad()
    adam.zero_grad()
    (head(table(torch.tensor([1, 4]))) ** 2).sum().backward()
    old_sparse_rows_step(sparse_adam, adam, table)
    square_step(resumed, resumed_table, resumed_head, [1, 4])
    torch.testing.assert_close(resumed_table.weight, table.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(resumed_head.weight, head.weight, rtol=1e-6, atol=1e-7)
