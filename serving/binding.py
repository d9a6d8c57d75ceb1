"""Bind a registered model version to its Feast views (serving.contract) and keep the binding current.

A :class:`Binding` is immutable: the model of ``models:/NAME@alias``, the names its contract tags give, its item
table and the fallback statistics, each with the materialization watermark it was read at. :class:`BindingManager`
holds one binding per alias (champion, optional challenger) and replaces it atomically -- one reference assignment --
when :meth:`BindingManager.refresh` finds the alias moved or a watermark changed; a poller thread calls it every
``interval`` seconds. A failed load keeps the previous binding serving and is retried on the next tick.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ErrorCode
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from serving.catalogue import FILES as CATALOGUE_FILES
from serving.catalogue import Catalogue
from serving.contract import (
    CATALOGUE_ARTIFACT,
    CATALOGUE_TAG,
    CHALLENGER,
    CHAMPION,
    FALLBACK_POPULARITY,
    FALLBACK_VIEW,
    FEATURE_SERVICE_TAG,
    ITEM_VIEW_TAG,
    SEEN_VIEW_TAG,
    USER_VIEW_TAG,
)
from serving.features import FeatureReader, ItemTable
from serving.files import FileIdentity, file_identity
from serving.mlflow_internals import release_sql_connections
from serving.model_integrity import UnverifiedModel, load_verified_model
from serving.pyfunc_model import ScorerModel
from serving.redact import redact_text
from serving.scorer_files import ScorerFileError
from serving.scoring import CandidateScorer

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIEVAL_PREFERENCE = ("embedding", "kcan_repr")  # features used for candidate retrieval, when both sides have them
NOT_FOUND_CODES = {ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)}
HASH_MULTIPLIER, HASH_SPACE = 2654435761, 2**32  # Knuth's multiplicative hash for sticky challenger assignment
MAX_CAUSE_CHARS = 300  # the root cause quoted in a refresh-error log line is clipped to this


class RegistryUnavailable(RuntimeError):
    """The MLflow registry could not be read."""


class NotReady(RuntimeError):
    """No model is bound yet."""


class NotServable(RuntimeError):
    """A registered version breaks the serving contract."""


class DanglingAlias(RuntimeError):
    """An alias names a version that does not exist (deleted, or a registry edited by hand)."""


def sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other URI, or an in-memory database)."""
    try:
        url = make_url(tracking_uri)
    except ArgumentError:  # not a database URI: http(s), databricks, file stores
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


@dataclass(frozen=True)
class Binding:
    """One served model version and everything read for it."""

    name: str
    version: str
    alias: str
    feature_service: str
    user_view: str
    item_view: str
    model: ScorerModel = field(repr=False)
    items: ItemTable = field(repr=False)
    candidates: CandidateScorer = field(repr=False)  # the model's scorer prepared over ``items`` (the hot path)
    item_watermark: datetime | None
    stats: ItemTable | None = field(repr=False)
    stats_watermark: datetime | None
    loaded_at: datetime
    seen_view: str | None = None  # the version's materialized seen-items view (None: nothing is excluded)
    catalogue: Catalogue | None = field(default=None, repr=False)  # names for explanations (None: ids only)

    @property
    def retrieval_feature(self) -> str | None:
        """A feature both sides carry as a same-width vector, for dot-product candidate retrieval (None: none)."""
        shared = [
            f for f in self.model.user_features if f in self.model.item_features and self.items.columns[f].ndim == 2
        ]
        ranked = sorted(
            shared, key=lambda f: RETRIEVAL_PREFERENCE.index(f) if f in RETRIEVAL_PREFERENCE else len(shared)
        )
        return ranked[0] if ranked else None

    def score(self, user_row: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
        """Logits of the user against the cached items at ``index``."""
        return np.asarray(self.candidates.score(user_row, index), dtype=np.float32)

    def retrieve(self, user_row: dict[str, np.ndarray], n: int) -> np.ndarray | None:
        """Indices of the ``n`` cached items with the largest dot product with the user (None: no shared vector)."""
        feature = self.retrieval_feature
        if feature is None or user_row[feature].shape[-1] != self.items.columns[feature].shape[-1]:
            return None
        similarity = self.items.columns[feature] @ user_row[feature][0].astype(np.float32)
        if n >= len(similarity):
            return np.arange(len(similarity))
        return np.argpartition(-similarity, n)[:n]


class ModelSource:
    """Reads aliases and loads verified models from the MLflow registry of one URI."""

    def __init__(self, tracking_uri: str):
        self.uri = tracking_uri
        self.database = sqlite_database(tracking_uri)
        self._client: MlflowClient | None = None
        self._identity: FileIdentity | None = None

    @property
    def client(self) -> MlflowClient:
        """The registry's client, created on first use. With a SQLite registry its file is checked first: a missing
        file is a RegistryUnavailable (never opened, which would create it empty), a replaced one has the pooled
        connections of MLflow's cached stores closed so that the next query reads the new file."""
        if self.database is None:
            if self._client is None:
                self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            return self._client
        identity = file_identity(self.database)
        if identity is None:
            raise RegistryUnavailable(f"MLflow registry database {self.database} does not exist")
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        elif identity != self._identity:
            log.info("MLflow registry database %s was replaced: reconnecting", self.database)
            release_sql_connections(self._client)
        self._identity = identity
        return self._client

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version holding ``alias`` (None when the model or the alias does not exist); :class:`DanglingAlias`
        when the alias names a version that does not exist."""
        client = self.client
        model = self._read(lambda: client.get_registered_model(name))
        version = None if model is None else model.aliases.get(alias)
        if version is None:
            return None
        if self._read(lambda: client.get_model_version(name, str(version))) is None:
            raise DanglingAlias(f"alias {alias} of {name} points at version {version}, which does not exist")
        return str(version)

    @staticmethod
    def _read(call: Callable[[], T]) -> T | None:
        """``call()`` against the registry: None when the registry answers "not found", RegistryUnavailable when
        the registry fails."""
        try:
            return call()
        except MlflowException as error:
            if error.error_code in NOT_FOUND_CODES:
                return None
            raise RegistryUnavailable(f"MLflow registry error: {error.error_code}") from error
        except Exception as error:  # connection errors of any backend, re-raised as RegistryUnavailable
            raise RegistryUnavailable(f"MLflow registry unreachable: {type(error).__name__}") from error

    def tags(self, name: str, version: str) -> dict[str, str]:
        """The version's tags."""
        client = self.client
        try:
            return dict(client.get_model_version(name, version).tags)
        except Exception as error:
            raise RegistryUnavailable(f"MLflow registry unreachable: {type(error).__name__}") from error

    def catalogue(self, name: str, version: str, digests: str) -> Catalogue:
        """The entity catalogue logged with the version's run, read only after every file matches the SHA-256 the
        version's ``CATALOGUE_TAG`` records (a tampered or partial catalogue makes the version NotServable)."""
        client = self.client
        try:
            expected = json.loads(digests)
        except json.JSONDecodeError as error:
            raise NotServable(f"version {version}: tag {CATALOGUE_TAG} is not JSON") from error
        if sorted(expected) != sorted(CATALOGUE_FILES):
            raise NotServable(f"version {version}: tag {CATALOGUE_TAG} must name {', '.join(CATALOGUE_FILES)}")
        with tempfile.TemporaryDirectory() as scratch:
            try:
                run_id = client.get_model_version(name, version).run_id
                folder = Path(client.download_artifacts(run_id, CATALOGUE_ARTIFACT, scratch))
            except Exception as error:
                raise RegistryUnavailable(
                    f"cannot read the catalogue of {name} v{version}: {type(error).__name__}"
                ) from error
            for file, digest in expected.items():
                path = folder / file
                if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                    raise NotServable(f"version {version}: catalogue file {file} does not match its registered SHA-256")
            return Catalogue.load(folder)

    def load(self, name: str, version: str) -> ScorerModel:
        """The version's ScorerModel, built only after its artefacts match their registered SHA-256
        (serving.model_integrity); no file of the model store is executed or unpickled."""
        try:
            return load_verified_model(self.client, self.uri, name, version)
        except (UnverifiedModel, ScorerFileError) as error:
            raise NotServable(str(error)) from error
        except Exception as error:
            raise RegistryUnavailable(f"cannot load models:/{name}/{version}: {type(error).__name__}") from error


def _stats(reader: FeatureReader) -> tuple[ItemTable | None, datetime | None]:
    """The fallback popularity table and its watermark (None when the shared view is missing or empty)."""
    watermark = reader.watermark(FALLBACK_VIEW)
    if watermark is None:
        return None, None
    return reader.item_table(FALLBACK_VIEW, [FALLBACK_POPULARITY]), watermark


def load_binding(source: ModelSource, reader: FeatureReader, name: str, version: str, alias: str) -> Binding:
    """Load the version's model, check its contract tags and views, and read its item table and fallback stats."""
    tags = source.tags(name, version)
    missing = [t for t in (FEATURE_SERVICE_TAG, USER_VIEW_TAG, ITEM_VIEW_TAG) if t not in tags]
    if missing:
        raise NotServable(f"version {version} lacks contract tags {', '.join(missing)}")
    watermark = reader.watermark(tags[ITEM_VIEW_TAG])
    if watermark is None or reader.watermark(tags[USER_VIEW_TAG]) is None:
        raise NotServable(f"version {version}: views {tags[USER_VIEW_TAG]}, {tags[ITEM_VIEW_TAG]} are not materialized")
    model = source.load(name, version)
    catalogue = source.catalogue(name, version, tags[CATALOGUE_TAG]) if CATALOGUE_TAG in tags else None
    seen_view = tags.get(SEEN_VIEW_TAG)
    stats, stats_watermark = _stats(reader)
    items = reader.item_table(tags[ITEM_VIEW_TAG], model.item_features)
    return Binding(
        name=name,
        version=version,
        alias=alias,
        feature_service=tags[FEATURE_SERVICE_TAG],
        user_view=tags[USER_VIEW_TAG],
        item_view=tags[ITEM_VIEW_TAG],
        model=model,
        items=items,
        candidates=model.candidates(items.columns),
        item_watermark=watermark,
        stats=stats,
        stats_watermark=stats_watermark,
        loaded_at=datetime.now(UTC),
        seen_view=seen_view if seen_view is not None and reader.watermark(seen_view) is not None else None,
        catalogue=catalogue,
    )


def refreshed_features(reader: FeatureReader, binding: Binding) -> Binding:
    """The binding with its item table and fallback stats re-read where their watermark moved (same object if none)."""
    changes: dict[str, object] = {}
    watermark = reader.watermark(binding.item_view)
    if watermark is not None and watermark != binding.item_watermark:
        items = reader.item_table(binding.item_view, binding.model.item_features)
        changes |= {"items": items, "item_watermark": watermark, "candidates": binding.model.candidates(items.columns)}
    if reader.watermark(FALLBACK_VIEW) != binding.stats_watermark:
        stats, stats_watermark = _stats(reader)
        changes |= {"stats": stats, "stats_watermark": stats_watermark}
    return dataclasses.replace(binding, **changes) if changes else binding


def describe_error(error: BaseException) -> str:
    """``Type: message`` of ``error``, credentials stripped: the text /readyz shows and the poller logs."""
    return redact_text(f"{type(error).__name__}: {error}")


def root_cause(error: BaseException) -> str | None:
    """The innermost cause of ``error`` as one clipped, redacted line (None when it has no cause)."""
    cause = error.__cause__ or error.__context__
    if cause is None:
        return None
    while (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    line = " ".join(describe_error(cause).split())
    return line if len(line) <= MAX_CAUSE_CHARS else f"{line[: MAX_CAUSE_CHARS - 3]}..."


SwapListener = Callable[[str, Binding | None], None]


class BindingManager:
    """The bindings of the champion and challenger aliases, refreshed by a poller thread."""

    def __init__(
        self,
        name: str,
        source: ModelSource,
        reader: FeatureReader,
        challenger_share: float = 0.0,
        on_swap: SwapListener | None = None,
    ):
        self.name = name
        self.source = source
        self.reader = reader
        self.challenger_share = challenger_share
        self.on_swap = on_swap
        self.bindings: dict[str, Binding | None] = {CHAMPION: None, CHALLENGER: None}
        self.last_error: str | None = None
        self._logged_error: str | None = None  # the refresh error the poller last logged (None: none since recovery)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether a champion is bound."""
        return self.bindings[CHAMPION] is not None

    def pick(self, user_id: int, variant: str | None = None) -> Binding:
        """The binding serving this request: the requested variant, else the challenger for its share of users."""
        champion, challenger = self.bindings[CHAMPION], self.bindings[CHALLENGER]
        if champion is None:
            raise NotReady(self.last_error or "no model is loaded yet")
        if challenger is None or variant == CHAMPION:
            return champion
        if variant == CHALLENGER:
            return challenger
        bucket = (user_id * HASH_MULTIPLIER) % HASH_SPACE / HASH_SPACE
        return challenger if bucket < self.challenger_share else champion

    def _swap(self, alias: str, binding: Binding | None) -> None:
        old = self.bindings[alias]
        self.bindings[alias] = binding
        old_version = old.version if old is not None else None
        new_version = binding.version if binding is not None else None
        if old_version != new_version:
            log.info("%s of %s: v%s -> v%s", alias, self.name, old_version or "-", new_version or "-")
        if self.on_swap is not None:
            self.on_swap(alias, binding)

    def _refresh_alias(self, alias: str, force: bool) -> None:
        current = self.bindings[alias]
        version = self.source.alias_version(self.name, alias)
        if version is None:
            if alias == CHALLENGER and current is not None:
                self._swap(alias, None)  # challenger retired; a vanished champion keeps serving until replaced
            return
        if force or current is None or current.version != version:
            self._swap(alias, load_binding(self.source, self.reader, self.name, version, alias))
            return
        fresh = refreshed_features(self.reader, current)
        if fresh is not current:
            self._swap(alias, fresh)
            log.info("reloaded item features of %s v%s (watermark %s)", self.name, version, fresh.item_watermark)

    def refresh(self, force: bool = False) -> None:
        """Re-read the registry and the watermarks and swap in whatever changed; ``force`` reloads every alias."""
        with self._lock:
            try:
                self.reader.refresh()
                for alias in (CHAMPION, CHALLENGER):
                    self._refresh_alias(alias, force)
                self.last_error = None
            except Exception as error:
                self.last_error = describe_error(error)
                raise

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception as error:  # noqa: BLE001  the poller must survive anything; the next tick retries
                self._log_refresh_error(error)
            else:
                if self._logged_error is not None:
                    log.info("binding refresh recovered after: %s", self._logged_error)
                    self._logged_error = None

    def _log_refresh_error(self, error: Exception) -> None:
        """One line per distinct refresh error, no traceback: a registry that stays down is not logged every poll."""
        message = describe_error(error)
        if message == self._logged_error:
            return
        self._logged_error = message
        cause = root_cause(error)
        log.error(
            "binding refresh failed, still serving the previous bindings: %s%s",
            message,
            f" (cause: {cause})" if cause else "",
        )

    def start(self, interval: float) -> None:
        """Start the poller thread (a daemon: it never keeps the process alive)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(interval,), name="graphrec-binding-poller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the poller thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
