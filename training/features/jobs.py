"""Feature jobs: compute the catalogue's feature families from the configured dataset and write offline snapshots.

Timestamps (documented in docs/FEATURES.md): a build is *as of* a time T (default: the latest interaction timestamp
of the dataset). It sees only training positives with timestamp <= T, and every row it writes carries
``event_timestamp = T`` and ``created = `` the wall-clock build time. Each build adds a snapshot file and keeps the
older ones, so Feast's point-in-time joins pick, for each label event, the latest snapshot not after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from feature_repo.catalog import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FAMILIES,
    GRAPH_STATS_FAMILY,
    INTENT_FAMILY,
    ITEM_GRAPH_STATS,
    ITEM_TRANSH,
    TRANSH_FAMILY,
    USER_GRAPH_STATS,
    USER_INTENT,
    USER_TRANSH,
    ViewSpec,
)
from featurestore.offline import read_latest, write_snapshot
from featurestore.ray_runtime import ray_target
from graphrec.settings import EngineKind, Settings
from training.data.dataset import Dataset
from training.data.load import load_dataset
from training.data.splits import activity_terciles, ctr_split
from training.features.aggregates import active_users, graph_edges, item_aggregates, reach_index, user_aggregates
from training.features.blocks import Sources
from training.features.reach import EXACT_MAX_PAIRS
from training.features.transh_job import FEATURE_JOB_TRANSH, TransHResult, train_transh
from training.graphs.ckg import build_ckg
from training.graphs.hetero import build_hetero_graph
from training.kge.train import TransHConfig
from training.topics.artefacts import save_topics, topics_dir
from training.topics.config import TopicConfig
from training.topics.fit import TopicFit
from training.topics.pipeline import fit_user_intent, intent_columns


class FeatureJobConfig(BaseModel):
    """Settings of a feature build beyond the platform Settings."""

    model_config = ConfigDict(extra="forbid")

    transh: TransHConfig = FEATURE_JOB_TRANSH
    active_window_days: int = 30
    two_hop_exact_max_pairs: int = Field(EXACT_MAX_PAIRS, ge=0)  # above it two_hop_reach is a HyperLogLog estimate
    topics: TopicConfig = TopicConfig()


@dataclass
class BuildReport:
    """What a build wrote and measured."""

    as_of: datetime
    created: datetime
    dataset_fingerprint: str
    written: dict[str, str] = field(default_factory=dict)  # view name -> snapshot path
    rows: dict[str, int] = field(default_factory=dict)
    transh: TransHResult | None = None
    topics: TopicFit | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    two_hop_method: str | None = None  # how two_hop_reach was counted (reach.py), when graph stats were built


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _frame(
    spec: ViewSpec, ids: np.ndarray, columns: dict[str, np.ndarray], as_of: datetime, created: datetime
) -> pd.DataFrame:
    """A snapshot frame of one view: entity key, both timestamps, and the view's features in catalogue order."""
    frame = pd.DataFrame({spec.entity.join_key: ids.astype(np.int64)})
    frame[EVENT_TIMESTAMP] = pd.Timestamp(as_of)
    frame[CREATED_TIMESTAMP] = pd.Timestamp(created)
    for name in spec.feature_names:
        values = columns[name]
        frame[name] = list(values.astype(np.float32)) if values.ndim == 2 else values
    return frame


def _embeddings_from_snapshots(offline_dir: Path, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """User and entity TransH tables from the latest offline transh snapshots (entities beyond items are zero)."""
    users = read_latest(offline_dir, USER_TRANSH).sort_values(USER_TRANSH.entity.join_key)
    items = read_latest(offline_dir, ITEM_TRANSH).sort_values(ITEM_TRANSH.entity.join_key)
    if len(users) != dataset.n_users or len(items) != dataset.n_items:
        raise ValueError(
            "the latest transh snapshot does not match the dataset "
            f"({len(users)} users / {len(items)} items vs {dataset.n_users} / {dataset.n_items}): "
            "run `graphrec features build --only transh` first"
        )
    user_emb = torch.from_numpy(np.stack(users["transh"].to_numpy()).astype(np.float32))
    item_emb = np.stack(items["transh"].to_numpy()).astype(np.float32)
    entity_emb = np.zeros((dataset.n_entities, item_emb.shape[1]), dtype=np.float32)
    entity_emb[: dataset.n_items] = item_emb
    return user_emb, torch.from_numpy(entity_emb)


def build_features(
    settings: Settings,
    families: tuple[str, ...] = FAMILIES,
    as_of: int | None = None,
    config: FeatureJobConfig = FeatureJobConfig(),
    on_epoch: Callable[[int, dict], None] | None = None,
    on_topic_epoch: Callable[[int, dict], None] | None = None,
) -> BuildReport:
    """Compute the chosen feature families of the configured dataset as of ``as_of`` and write offline snapshots."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown feature families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    dataset = load_dataset(settings)
    split = ctr_split(dataset.interactions, settings.seed)
    as_of_s = int(dataset.interactions["timestamp"].max()) if as_of is None else int(as_of)
    positives = split.train_positives()
    positives = positives[positives["timestamp"] <= as_of_s]
    report = BuildReport(
        as_of=_utc(as_of_s),
        created=datetime.now(UTC).replace(microsecond=0),
        dataset_fingerprint=dataset.fingerprint,
    )
    frames: dict[str, pd.DataFrame] = {}
    ckg = build_ckg(dataset, positives)

    if TRANSH_FAMILY in families:
        started = time.perf_counter()
        report.transh = train_transh(dataset, ckg, config.transh, on_epoch=on_epoch)
        embeddings = report.transh.embeddings
        user_emb = torch.from_numpy(embeddings[ckg.user_node(np.arange(dataset.n_users))])
        entity_emb = torch.from_numpy(embeddings[: dataset.n_entities])
        frames[USER_TRANSH.name] = _frame(
            USER_TRANSH, np.arange(dataset.n_users), {"transh": user_emb.numpy()}, report.as_of, report.created
        )
        frames[ITEM_TRANSH.name] = _frame(
            ITEM_TRANSH,
            np.arange(dataset.n_items),
            {"transh": entity_emb[: dataset.n_items].numpy()},
            report.as_of,
            report.created,
        )
        report.seconds[TRANSH_FAMILY] = time.perf_counter() - started
    elif GRAPH_STATS_FAMILY in families:
        user_emb, entity_emb = _embeddings_from_snapshots(settings.offline_dir, dataset)

    if GRAPH_STATS_FAMILY in families:
        started = time.perf_counter()
        graph = build_hetero_graph(dataset, positives)
        window = config.active_window_days * 86_400
        active = active_users(
            positives["timestamp"].to_numpy(), positives["user"].to_numpy(), dataset.n_users, as_of_s, window
        )
        sources = Sources(
            user_emb=user_emb.numpy(),
            entity_emb=entity_emb.numpy(),
            active=active,
            terciles=activity_terciles(positives, dataset.n_users),
            n_items=dataset.n_items,
            n_kg_relations=dataset.n_relations,
        )
        edges = graph_edges(graph)
        reach = reach_index(edges, sources, config.two_hop_exact_max_pairs)
        report.two_hop_method = reach.method
        if settings.engine is EngineKind.ray:
            from training.features.ray_aggregates import ray_aggregates  # imports Ray: only for the ray engine

            staging = settings.work_dir / "ray-staging" / f"graph-stats-{report.created:%Y%m%dT%H%M%S}-{os.getpid()}"
            users, items = ray_aggregates(edges, sources, reach, staging, ray_target(settings))
        else:
            users, items = user_aggregates(edges, sources, reach), item_aggregates(edges, sources)
        frames[USER_GRAPH_STATS.name] = _frame(
            USER_GRAPH_STATS, np.arange(dataset.n_users), users, report.as_of, report.created
        )
        frames[ITEM_GRAPH_STATS.name] = _frame(
            ITEM_GRAPH_STATS, np.arange(dataset.n_items), items, report.as_of, report.created
        )
        report.seconds[GRAPH_STATS_FAMILY] = time.perf_counter() - started

    if INTENT_FAMILY in families:
        started = time.perf_counter()
        held_out = pd.concat([split.valid, split.test])  # their tag rows would reveal the held-out pairs
        _, report.topics = fit_user_intent(dataset, positives, held_out, config.topics, as_of_s, on_topic_epoch)
        frames[USER_INTENT.name] = _frame(
            USER_INTENT, np.arange(dataset.n_users), intent_columns(report.topics.theta), report.as_of, report.created
        )
        report.seconds[INTENT_FAMILY] = time.perf_counter() - started

    specs = {spec.name: spec for spec in (USER_TRANSH, ITEM_TRANSH, USER_GRAPH_STATS, ITEM_GRAPH_STATS, USER_INTENT)}
    for name, frame in frames.items():  # every frame is computed before the first write: a failure writes nothing
        report.written[name] = str(write_snapshot(settings.offline_dir, specs[name], frame))
        report.rows[name] = len(frame)
    if report.topics is not None:  # the topic commands read the fit whose mixture the view now serves
        terciles = activity_terciles(positives, dataset.n_users)
        save_topics(topics_dir(settings.work_dir), report.topics, terciles, dataset.name, dataset.fingerprint)
    return report
