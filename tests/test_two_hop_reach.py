"""Two-hop reach: the exact count, its HyperLogLog estimate, and the switch between them (features/reach.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.features.reach import (
    REGISTERS,
    estimate,
    incidence,
    item_sketches,
    pair_visits,
    register_of,
    two_hop_index,
    two_hop_reach,
)


def interactions(rng: np.random.Generator, n_users: int, n_items: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Interaction pairs with popularity-skewed items and duplicates, as real logs have."""
    items = np.minimum(rng.zipf(1.3, n_pairs) - 1, n_items - 1)
    return rng.integers(0, n_users, n_pairs), items


def direct_reach(users: np.ndarray, items: np.ndarray, user: int) -> int:
    """Distinct other users sharing one of ``user``'s items, by sets."""
    return len(set(users[np.isin(items, items[users == user])].tolist()) - {user})


def reach_of(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, exact_max_pairs: int) -> np.ndarray:
    index = two_hop_index(items, users, n_items, n_users, exact_max_pairs)
    return two_hop_reach(incidence(users, items, n_users, n_items), index)


def test_exact_reach_is_the_distinct_count_and_ignores_the_user_itself() -> None:
    rng = np.random.default_rng(3)
    users, items = interactions(rng, 400, 60, 3000)
    reach = reach_of(users, items, 400, 60, exact_max_pairs=10**12)
    for user in range(0, 400, 37):
        assert reach[user] == direct_reach(users, items, user), user


def test_the_budget_picks_exact_below_and_sketches_above() -> None:
    users, items = np.array([0, 1, 2, 2]), np.array([0, 0, 0, 1])
    assert pair_visits(items, 3) == 3 * 3 + 1 * 1
    exact = two_hop_index(items, users, 3, 3, exact_max_pairs=10)
    sketched = two_hop_index(items, users, 3, 3, exact_max_pairs=9)
    assert exact.method == "exact" and exact.item_sketches is None
    assert sketched.item_users is None and sketched.item_sketches.shape == (3, REGISTERS)
    assert sketched.method.startswith("hyperloglog (1024 registers")


def test_sketched_reach_is_within_a_few_percent_of_exact() -> None:
    rng = np.random.default_rng(11)
    n_users, n_items = 30_000, 400
    users, items = interactions(rng, n_users, n_items, 90_000)
    exact = reach_of(users, items, n_users, n_items, exact_max_pairs=10**12)
    sketched = reach_of(users, items, n_users, n_items, exact_max_pairs=0)
    large = exact > 1000
    assert large.sum() > 1000  # the popular items put many users past the linear-counting range
    error = np.abs(sketched[large] - exact[large]) / exact[large]
    assert np.median(error) < 0.04 and error.max() < 0.15, (np.median(error), error.max())
    small = (exact > 0) & (exact <= 50)
    assert small.sum() > 100
    assert np.abs(sketched[small] - exact[small]).max() <= 3
    assert (sketched[exact == 0] == 0).all()


def test_users_without_items_or_without_company_reach_nobody() -> None:
    users, items = np.array([0, 0, 2]), np.array([1, 1, 3])  # user 1 has no item; 0 and 2 have their items alone
    for budget in (10**6, 0):
        assert reach_of(users, items, 3, 4, budget).tolist() == [0, 0, 0], budget


def test_a_sketch_counts_a_user_once_however_often_it_appears() -> None:
    users = np.repeat(np.arange(200), 5)
    items = np.zeros(len(users), dtype=np.int64)
    registers = item_sketches(items, users, 1)
    assert registers.shape == (1, REGISTERS) and registers.dtype == np.uint8
    assert np.array_equal(registers, item_sketches(items[:200], np.arange(200), 1))
    assert abs(float(estimate(registers)[0]) - 200) < 15  # linear counting's std error here is about 4.6 users


def test_register_ranks_follow_the_geometric_law() -> None:
    index, rank = register_of(np.arange(200_000))
    assert index.min() >= 0 and index.max() < REGISTERS and rank.min() >= 1
    assert np.bincount(index, minlength=REGISTERS).min() > 100  # every register is hit
    assert abs((rank == 1).mean() - 0.5) < 0.01 and abs((rank == 2).mean() - 0.25) < 0.01


@pytest.mark.parametrize("budget", [10**12, 0], ids=["exact", "sketched"])
def test_a_user_block_gets_the_same_reach_as_the_whole(budget: int) -> None:
    rng = np.random.default_rng(5)
    users, items = interactions(rng, 500, 50, 4000)
    index = two_hop_index(items, users, 50, 500, budget)
    whole = two_hop_reach(incidence(users, items, 500, 50), index)
    mine = (users >= 120) & (users < 310)
    block = two_hop_reach(incidence(users[mine] - 120, items[mine], 190, 50), index)
    assert block.tobytes() == whole[120:310].tobytes()
