"""Generate a seeded synthetic Alipay-like dataset (funds and coupons, a KG, friendships, tags) in graphrec's format.

Users are processed in chunks of ``config.chunk_users``; each chunk's rows are appended to the TSV files, so memory
stays bounded at any population. Everything is written into a staging folder next to ``out`` that replaces ``out``
only once complete, and is removed if anything fails, so a half-written dataset never appears.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.dataset import replace_folder, write_meta, write_table
from training.data.schema import INTERACTIONS, KG, SOCIAL, TAGS
from training.synth.catalog import RELATION_NAMES, Catalog, build_catalog
from training.synth.config import SynthConfig
from training.synth.interactions import click_positives, labelled_rows, sample_negatives
from training.synth.paths import build_path_groups
from training.synth.pools import build_pools
from training.synth.social import count_started, friendship_keys, friendship_rows, index_segments
from training.synth.tags import tag_rows
from training.synth.users import describe_users
from training.synth.vocab import CATEGORIES, DOMAINS, RISK_LEVELS, SECTORS

__all__ = ["SynthConfig", "SynthSummary", "generate_dataset"]

Progress = Callable[[int, int], None]
SOCIAL_ROWS_PER_WRITE = 1_000_000


@dataclass(frozen=True)
class SynthSummary:
    """What one generation wrote, and how long it took."""

    n_users: int
    n_items: int
    n_entities: int
    n_relations: int
    labelled_rows: int
    positives: int
    kg_triples: int
    friendships: int
    tags: int
    seconds: float

    @property
    def rows_written(self) -> int:
        """Data rows over all TSV files (headers not counted)."""
        return self.labelled_rows + self.kg_triples + self.friendships + self.tags


@dataclass
class _Counts:
    labelled_rows: int = 0
    positives: int = 0
    friendships: int = 0
    tags: int = 0


def generate_dataset(config: SynthConfig, out: Path, progress: Progress | None = None) -> SynthSummary:
    """Write the dataset ``config`` describes to ``out`` (replacing it atomically) and summarise it.

    ``progress(users_done, n_users)`` is called after each chunk of users.
    """
    started = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        catalog = build_catalog(config)
        counts = _write_tables(config, catalog, staging, progress)
        _write_meta(config, catalog, staging)
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SynthSummary(
        n_users=config.n_users,
        n_items=config.n_items,
        n_entities=catalog.n_entities,
        n_relations=len(RELATION_NAMES),
        labelled_rows=counts.labelled_rows,
        positives=counts.positives,
        kg_triples=len(catalog.kg),
        friendships=counts.friendships,
        tags=counts.tags,
        seconds=time.perf_counter() - started,
    )


def _write_tables(config: SynthConfig, catalog: Catalog, folder: Path, progress: Progress | None) -> _Counts:
    """Write kg.tsv, then interactions.tsv and tags.tsv chunk by chunk, then social.tsv; return the row counts."""
    write_table(catalog.kg, folder / KG.file, KG)
    pools, paths = build_pools(config, catalog), build_path_groups(catalog)
    segments = index_segments(config)
    friendships = np.empty(count_started(config), dtype=np.int64)
    filled = 0
    counts = _Counts()
    for start in range(0, config.n_users, config.chunk_users):
        ids = np.arange(start, min(start + config.chunk_users, config.n_users), dtype=np.int64)
        users = describe_users(config, ids)
        positives = click_positives(config, pools, paths, users)
        labelled = labelled_rows(config, catalog, positives, sample_negatives(config, positives.keys))
        tags = tag_rows(config, catalog, users, positives.keys)
        write_table(labelled, folder / INTERACTIONS.file, INTERACTIONS, append=start > 0)
        write_table(tags, folder / TAGS.file, TAGS, append=start > 0)
        keys = friendship_keys(config, segments, ids)
        friendships[filled : filled + len(keys)] = keys
        filled += len(keys)
        counts.labelled_rows += len(labelled)
        counts.positives += len(positives.keys)
        counts.tags += len(tags)
        if progress is not None:
            progress(int(ids[-1]) + 1, config.n_users)
    friendships = friendships[:filled]
    friendships.sort()
    for append, rows in enumerate(friendship_rows(config, friendships, SOCIAL_ROWS_PER_WRITE)):
        write_table(rows, folder / SOCIAL.file, SOCIAL, append=append > 0)
        counts.friendships += len(rows)
    return counts


def _write_meta(config: SynthConfig, catalog: Catalog, folder: Path) -> None:
    """dataset.json: the counts, names of relations and domains, entity id ranges and the generating settings."""
    write_meta(
        folder,
        {
            "n_users": config.n_users,
            "n_items": config.n_items,
            "n_entities": catalog.n_entities,
            "n_relations": len(RELATION_NAMES),
        },
        name=config.name,
        relation_names=list(RELATION_NAMES),
        domains=list(DOMAINS),
        entity_types={name: list(bounds) for name, bounds in catalog.entity_types.items()},
        sectors=list(SECTORS),
        categories=list(CATEGORIES),
        risk_levels=list(RISK_LEVELS),
        generator=config.provenance(),
    )
