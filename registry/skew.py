"""Training-serving skew: the feature values the service logged against the offline store, through Feast.

For the requests that logged their served features (a share of all, ``serving_request_log_feature_share``), the user
row and the top items' rows are compared with Feast's point-in-time offline values for the same entity at the time the
request was served (``get_historical_features``). A value mismatches when it differs by more than ``TOLERANCE``
(relative, float32 round trips stay far below it) or the offline store has none: a view rebuilt offline but not
materialized, a materialization from another snapshot, or an encoding bug all show up here. An entity with two
offline rows tied on event and created time fails the check too: Feast may return either, so no verdict is stable.

Distribution shift: each feature's population stability index (PSI) between the offline snapshot (every entity's
latest row, what training reads) and the served values, on ten quantile bins of the offline values; a vector
feature reports its largest component PSI. Fewer than ``MIN_PSI_VALUES`` served values give no PSI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
from feast import FeatureStore, FileSource

from featurestore.config import feature_store
from graphrec.settings import Settings
from serving.pyfunc_model import ITEM_ID, USER_ID
from serving.requestlog import SqlSink

TOLERANCE = 1e-5
BINS = 10
MIN_PSI_VALUES = 20
EPSILON = 1e-4  # an empty bin's share, so PSI stays finite
ROW = "_graphrec_row"
EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class FeatureSkew:
    """One feature of one view: how the served values compare with the offline store."""

    view: str
    feature: str
    compared: int
    mismatches: int
    mismatch_rate: float
    max_abs_diff: float
    psi: float | None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SkewReport:
    """Every feature's skew, the requests compared and the features over the thresholds."""

    requests: int
    features: list[FeatureSkew]
    max_mismatch_rate: float
    max_psi: float
    failures: list[str]

    @property
    def passed(self) -> bool:
        """Whether every feature is within the thresholds."""
        return not self.failures


def _values(column: pd.Series) -> np.ndarray:
    """A column of scalars (float (n,)) or of equal-length vectors (float (n, d)); NaN where a value is missing."""
    cells = column.tolist()
    vectors = [c for c in cells if isinstance(c, list | tuple | np.ndarray)]
    if not vectors:
        return np.array([np.nan if pd.isna(c) else float(c) for c in cells], dtype=float)
    width = max(len(v) for v in vectors)
    return np.vstack(
        [
            np.asarray(c, dtype=float)
            if isinstance(c, list | tuple | np.ndarray) and len(c) == width
            else np.full(width, np.nan)
            for c in cells
        ]
    )


def served_rows(requests: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Logged feature rows by (view, join key): the entity id, the time served and one column per feature."""
    found: dict[tuple[str, str], list[dict[str, object]]] = {}
    for request in requests.itertuples(index=False):
        sample = request.features
        moment = datetime.fromtimestamp(request.served_at, UTC)
        found.setdefault((request.user_view, USER_ID), []).append(
            {USER_ID: int(request.user_id), EVENT_TIMESTAMP: moment, **sample["user"]}
        )
        for item, row in sample["items"].items():
            found.setdefault((request.item_view, ITEM_ID), []).append(
                {ITEM_ID: int(item), EVENT_TIMESTAMP: moment, **row}
            )
    return {key: pd.DataFrame(rows) for key, rows in found.items()}


def offline_at(store: FeatureStore, view: str, key: str, served: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Feast's point-in-time offline values of ``features`` for each served row (same order as ``served``)."""
    entities = served[[key, EVENT_TIMESTAMP]].assign(**{ROW: np.arange(len(served))})
    frame = store.get_historical_features(entity_df=entities, features=[f"{view}:{f}" for f in features]).to_df()
    return frame.sort_values(ROW).reset_index(drop=True)


@dataclass(frozen=True)
class OfflinePopulation:
    """A view's offline source as training reads it, and how many entities it holds ambiguously."""

    latest: pd.DataFrame  # every entity's latest row: the snapshot training reads
    ambiguous: int  # entities with two rows at the same event and created time: Feast may return either


def offline_population(store: FeatureStore, view: str, key: str, features: list[str]) -> OfflinePopulation:
    """Every entity's latest row of the view's offline source, and the entities whose point-in-time value is a tie.

    Feast's point-in-time join orders rows by event then created time; two rows of one entity equal in both (never
    written by ``featurestore.offline.write_snapshot``, whose file name is those two times) leave the choice to the
    query engine, so the same comparison can flag a stale value in one call and pass it in the next."""
    source = store.get_feature_view(view).batch_source
    if not isinstance(source, FileSource):
        raise ValueError(f"view {view}: only file sources can be read for the training distribution")
    order = [source.timestamp_field] + ([source.created_timestamp_column] if source.created_timestamp_column else [])
    table = pads.dataset(source.path, format="parquet").to_table(columns=[key, *order, *features])
    frame = table.to_pandas().sort_values(order, kind="stable")
    tied = frame.duplicated([key, *order], keep=False)
    return OfflinePopulation(frame.drop_duplicates(key, keep="last"), int(frame.loc[tied, key].nunique()))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` on quantile bins of ``expected``."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, BINS + 1)[1:-1]))
    share_expected = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    share_actual = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    p = np.maximum(share_expected / len(expected), EPSILON)
    q = np.maximum(share_actual / len(actual), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def feature_psi(population: np.ndarray, served: np.ndarray) -> float | None:
    """PSI of a scalar feature, or the largest component PSI of a vector one (None: too few served values)."""
    served = served[~np.isnan(served).any(axis=-1)] if served.ndim == 2 else served[~np.isnan(served)]
    if len(served) < MIN_PSI_VALUES or len(population) == 0:
        return None
    if population.ndim == 1:
        return psi(population, served)
    return max(psi(population[:, d], served[:, d]) for d in range(population.shape[1]))


def compare(view: str, feature: str, served: np.ndarray, offline: np.ndarray, population: np.ndarray) -> FeatureSkew:
    """Mismatch rate and max abs difference of served vs offline values, and the PSI against the population."""
    if served.shape != offline.shape:  # a vector of another length (a view re-defined offline) mismatches everywhere
        mismatched, largest = np.ones(len(served), dtype=bool), math.inf
    else:
        difference = np.abs(served - offline)
        difference = difference.reshape(len(served), -1).max(axis=1) if difference.ndim == 2 else difference
        scale = np.maximum(np.abs(offline).reshape(len(served), -1).max(axis=1), 1.0)
        mismatched = np.isnan(difference) | (difference > TOLERANCE * scale)
        finite = difference[~np.isnan(difference)]
        largest = float(finite.max()) if len(finite) else math.nan
    n = len(served)
    return FeatureSkew(
        view,
        feature,
        n,
        int(mismatched.sum()),
        mismatched.mean() if n else 0.0,
        largest,
        feature_psi(population, served),
    )


def skew_report(
    settings: Settings,
    since: float | None = None,
    *,
    sample: int = 500,
    max_mismatch_rate: float = 0.0,
    max_psi: float = 0.25,
    store: FeatureStore | None = None,
) -> SkewReport:
    """Compare the latest ``sample`` requests (since ``since``) that logged their features with the offline store."""
    store = store if store is not None else feature_store(settings)
    requests = SqlSink(settings.request_log_uri, create=False).requests(since)
    if not requests.empty:
        requests = requests[requests["features"].notna()].tail(sample)
    results, ambiguous = [], {}
    for (view, key), served in sorted(served_rows(requests).items()):
        features = [c for c in served.columns if c not in (key, EVENT_TIMESTAMP)]
        offline = offline_at(store, view, key, served, features)
        population = offline_population(store, view, key, features)
        if population.ambiguous:
            ambiguous[view] = population.ambiguous
        for feature in features:
            results.append(
                compare(
                    view,
                    feature,
                    _values(served[feature]),
                    _values(offline[feature]),
                    _values(population.latest[feature]),
                )
            )
    failures = (
        [
            f"{view}: {count:,} entities have offline rows tied on event and created time (ambiguous point in time)"
            for view, count in ambiguous.items()
        ]
        + [
            f"{r.view}:{r.feature} mismatch rate {r.mismatch_rate:.1%} > {max_mismatch_rate:.1%}"
            for r in results
            if r.mismatch_rate > max_mismatch_rate
        ]
        + [
            f"{r.view}:{r.feature} PSI {r.psi:.3f} > {max_psi}"
            for r in results
            if r.psi is not None and r.psi > max_psi
        ]
    )
    return SkewReport(len(requests), results, max_mismatch_rate, max_psi, failures)
