"""KG-driven clicks: a click that follows a knowledge-graph path item -> manager / merchant -> item from an item the
user already holds, so the truth a knowledge-aware model should recover is known.

With ``kg_driven_share`` s, each click after a user's first is KG-driven with chance s. It picks one of the user's
earlier clicks uniformly (so entities already clicked often are followed often: a user ends up with a few "taste"
entities, the hubs of their base clicks) and clicks an item of that click's manager or merchant, uniformly, not by
popularity. Following a chain of KG-driven clicks back always reaches a base click, and every item of the chain shares
that click's hub, so the hub is found by pointer jumping over the whole chunk at once, with no per-click loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.catalog import Catalog
from training.synth.config import SynthConfig
from training.synth.counter_rng import Stream, below, uniform


@dataclass(frozen=True)
class PathGroups:
    """Items grouped by hub entity: group g holds ``members[starts[g] : starts[g] + sizes[g]]``."""

    hub: np.ndarray  # per item, its group (the rank of its hub entity among hubs)
    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    def sample(self, items: np.ndarray, u: np.ndarray) -> np.ndarray:
        """For each item, a uniform member (by ``u`` in [0, 1)) of its hub's group, the item itself included."""
        group = self.hub[items]
        offset = np.minimum((u * self.sizes[group]).astype(np.int64), self.sizes[group] - 1)
        return self.members[self.starts[group] + offset]


def build_path_groups(catalog: Catalog) -> PathGroups:
    """Group the catalogue by each item's manager (funds) or merchant (coupons)."""
    _, hub, sizes = np.unique(catalog.path_entity, return_inverse=True, return_counts=True)
    return PathGroups(
        hub=hub,
        members=np.argsort(hub, kind="stable"),
        starts=np.cumsum(sizes) - sizes,
        sizes=sizes,
    )


def follow_paths(
    config: SynthConfig, groups: PathGroups, user: np.ndarray, index: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """Replace the KG-driven clicks among ``items`` (one per (user, index), a user's clicks contiguous, index 0 first).

    ``items`` are the base process's draws; the clicks that stay base keep theirs, so worlds with different shares
    differ only in the clicks that follow paths.
    """
    seed = config.seed
    position = np.arange(len(items), dtype=np.int64)
    driven = (index > 0) & (uniform(seed, Stream.PATH_CLICK, user, index) < config.kg_driven_share)
    parent = position - index + below(seed, Stream.PATH_PARENT, np.maximum(index, 1), user, index)
    root = np.where(driven, parent, position)
    while True:  # each pass halves the remaining chain length; base clicks are their own root
        hop = root[root]
        if np.array_equal(hop, root):
            break
        root = hop
    followed = groups.sample(items[root], uniform(seed, Stream.PATH_ITEM, user, index))
    return np.where(driven, followed, items)
