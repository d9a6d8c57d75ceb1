"""Two-hop reach: how many distinct other users share an item with a user, exactly or by HyperLogLog.

The exact count is a sparse user x item x user product whose work is the sum over items of their degree squared: on
the seeded generator 1.2e9 pair visits at 10^5 users and 6.5e10 at 10^6 (BENCHMARKS.md, issue 16), so it grows
faster than the graph. Above a budget of pair visits the count is a HyperLogLog estimate instead: every item keeps a
sketch of its users (``REGISTERS`` one-byte registers), a user's sketch is the register-wise max over its items', and
the distinct count is read from that. That work is interactions x registers, linear in the graph. Relative standard
error 1.04 / sqrt(REGISTERS) (3.3%); small counts use HyperLogLog's linear-counting range, nearly exact.

Both forms give a user the same value whichever block of users it is computed in (the Ray engine's contract,
blocks.py). No DGL and no Ray here: Ray workers import this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

EXACT_MAX_PAIRS = 2_000_000_000  # default budget of the exact product: the 10^5-user seeded set (1.2e9) stays exact
PRECISION = 10  # register-index bits
REGISTERS = 1 << PRECISION
RANK_BITS = 52  # hash bits after the index that are ranked: exact in float64, so frexp gives their bit length
_INVERSE_POWERS = np.ldexp(1.0, -np.arange(RANK_BITS + 2))  # 2**-rank for every register value
EXACT_CHUNK = 4096  # users per sparse product of the exact count (bounds its memory)
SKETCH_CHUNK_BYTES = 128 * 2**20  # gathered item registers per step of the sketch merge (bounds its memory)


@dataclass(frozen=True)
class TwoHopIndex:
    """What a block of users needs to count its two-hop reach: one of the two forms, built once for all users."""

    item_users: sp.csr_matrix | None = None  # exact: binary item x user incidence
    item_sketches: np.ndarray | None = None  # sketch: (n_items, REGISTERS) uint8 HyperLogLog registers

    @property
    def method(self) -> str:
        """How the reach is counted, for build reports and run parameters."""
        if self.item_sketches is None:
            return "exact"
        return f"hyperloglog ({REGISTERS} registers, {1.04 / np.sqrt(REGISTERS):.1%} relative std error)"


def pair_visits(items: np.ndarray, n_items: int) -> int:
    """Work of the exact count: the sum over items of their degree squared (``items``: one entry per interaction)."""
    degrees = np.bincount(items, minlength=n_items).astype(np.int64)
    return int((degrees * degrees).sum())


def two_hop_index(
    items: np.ndarray, users: np.ndarray, n_items: int, n_users: int, exact_max_pairs: int = EXACT_MAX_PAIRS
) -> TwoHopIndex:
    """The exact incidence when its product costs at most ``exact_max_pairs`` pair visits, else item sketches.

    ``items`` and ``users`` are the interaction pairs (duplicates allowed: a user counts once per item)."""
    if pair_visits(items, n_items) <= exact_max_pairs:
        return TwoHopIndex(item_users=incidence(items, users, n_items, n_users))
    return TwoHopIndex(item_sketches=item_sketches(items, users, n_items))


def incidence(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_columns: int) -> sp.csr_matrix:
    """Binary CSR matrix with a 1 at every (row, column) pair, columns sorted within each row."""
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, columns)), shape=(n_rows, n_columns))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def two_hop_reach(user_items: sp.csr_matrix, index: TwoHopIndex) -> np.ndarray:
    """Distinct other users sharing an item with each user of the block (rows of binary ``user_items``), int64."""
    if index.item_sketches is None:
        assert index.item_users is not None
        return _exact_reach(user_items, index.item_users)
    return _sketched_reach(user_items, index.item_sketches)


def _exact_reach(user_items: sp.csr_matrix, item_users: sp.csr_matrix) -> np.ndarray:
    reach = np.empty(user_items.shape[0], dtype=np.int64)
    for first in range(0, user_items.shape[0], EXACT_CHUNK):
        chunk = user_items[first : first + EXACT_CHUNK]
        reached = np.diff((chunk @ item_users).indptr)
        reach[first : first + len(reached)] = reached - (np.diff(chunk.indptr) > 0)  # a user reaches itself
    return reach


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fixed, well-mixed 64-bit hash of each id (the same on every machine and block)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def register_of(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each user's register index and rank (position of the first 1 bit after the index bits, from 1)."""
    hashed = _splitmix64(users)
    index = (hashed >> np.uint64(64 - PRECISION)).astype(np.int64)
    rest = (hashed << np.uint64(PRECISION)) >> np.uint64(64 - RANK_BITS)  # the next RANK_BITS bits
    bit_length = np.frexp(rest.astype(np.float64))[1]  # exact: rest < 2**52; 0 for rest == 0
    return index, (RANK_BITS + 1 - bit_length).astype(np.uint8)


def item_sketches(items: np.ndarray, users: np.ndarray, n_items: int) -> np.ndarray:
    """Every item's HyperLogLog registers over its users, (n_items, REGISTERS) uint8."""
    # by hand: the sketch must be merged per user by a vectorised gather and max over millions of rows, which the
    # sketch libraries (datasketches, datasketch) only offer as one Python call per sketch
    sketches = np.zeros((n_items, REGISTERS), dtype=np.uint8)
    index, rank = register_of(users)
    np.maximum.at(sketches, (items.astype(np.int64), index), rank)
    return sketches


def estimate(registers: np.ndarray) -> np.ndarray:
    """HyperLogLog distinct-count estimates of the rows of ``registers`` (Flajolet et al. 2007, with the
    linear-counting small range; a 64-bit hash needs no large-range correction), float64."""
    alpha = 0.7213 / (1.0 + 1.079 / REGISTERS)
    raw = alpha * REGISTERS**2 / _INVERSE_POWERS[registers].sum(axis=1)
    zeros = (registers == 0).sum(axis=1)
    small = (raw <= 2.5 * REGISTERS) & (zeros > 0)
    linear = REGISTERS * np.log(REGISTERS / np.maximum(zeros, 1))
    return np.where(small, linear, raw)


def _sketched_reach(user_items: sp.csr_matrix, sketches: np.ndarray) -> np.ndarray:
    """Merge each user's item sketches and read the estimate, users grouped by degree: a user of degree d is
    padded to the bucket's width w (d <= w < 2d) by repeating its last item (max is idempotent), so a bucket's
    merge is one gather and one max over a (users, w, REGISTERS) array. numpy's maximum.reduceat over ragged rows
    does the same merge about 100 times slower."""
    reach = np.zeros(user_items.shape[0], dtype=np.int64)
    degrees = np.diff(user_items.indptr)
    has_items = degrees > 0  # a user with no item reaches nobody
    widths = np.zeros_like(degrees)
    widths[has_items] = 1 << np.ceil(np.log2(degrees[has_items])).astype(np.int64)
    for width in np.unique(widths[has_items]):
        bucket = np.flatnonzero(widths == width)
        per_step = max(1, SKETCH_CHUNK_BYTES // (int(width) * REGISTERS))  # users merged per step
        for first in range(0, len(bucket), per_step):
            users = bucket[first : first + per_step]
            slots = np.minimum(np.arange(width)[None, :], degrees[users][:, None] - 1)  # pad with the last item
            items = user_items.indices[user_items.indptr[users][:, None] + slots]
            merged = sketches[items].max(axis=1)
            reach[users] = np.maximum(np.rint(estimate(merged)) - 1, 0).astype(np.int64)  # a user reaches itself
    return reach
