"""The one settings object: every path and URI graphrec uses comes from here.

Values come from (highest first) explicit arguments, environment variables prefixed ``GRAPHREC_``, a ``.env`` file in
the working directory, then the defaults below. Nothing is read or created at import time: call :func:`get_settings`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class OnlineStoreKind(str, Enum):
    """Which Feast online store serves features."""

    sqlite = "sqlite"
    redis = "redis"


class EngineKind(str, Enum):
    """Where the feature jobs and materialization run: in this process, or on a Ray cluster (docs/DEPLOY.md)."""

    local = "local"
    ray = "ray"


class Settings(BaseSettings):
    """Paths, URIs and names shared by training, the feature store, the registry and serving."""

    model_config = SettingsConfigDict(env_prefix="GRAPHREC_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=REPO_ROOT.parent / "shared" / "data",
        description="Folder holding the real datasets (lastfm-kg/, hetrec-lastfm-2k/).",
    )
    dataset: str = Field(
        default="lastfm",
        description="'lastfm' for the real Last.FM data under data_dir, or a folder in graphrec's dataset format.",
    )
    work_dir: Path = Field(
        default=REPO_ROOT / "work",
        description="All generated state: graphs, offline parquet, online SQLite, MLflow database and artefacts.",
    )
    feature_repo: Path = Field(default=REPO_ROOT / "feature_repo", description="The Feast repository folder.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: a SQLite database under work_dir."
    )
    registered_model_name: str = Field(default="graphrec-kcan", description="Name of the model in the MLflow registry.")
    online_store: OnlineStoreKind = Field(default=OnlineStoreKind.sqlite, description="Feast online store kind.")
    redis_url: str = Field(default="127.0.0.1:6379", description="Redis host:port when online_store is redis.")
    seed: int = Field(default=2021, description="Default random seed for splits and training.")
    engine: EngineKind = Field(
        default=EngineKind.local, description="Feature jobs and materialization: 'local' or on a Ray cluster ('ray')."
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (e.g. 10.0.0.5:6379); unset: start a local Ray on demand."
    )
    ray_num_cpus: int | None = Field(
        default=None, gt=0, description="CPUs of the local Ray started on demand (unset: every core)."
    )
    ray_object_store_mb: int | None = Field(
        default=None, gt=0, description="Object store of the local Ray started on demand, MiB (unset: Ray's default)."
    )
    serving_poll_interval_s: float = Field(
        default=10.0, gt=0, description="How often serving re-reads the model aliases and the item-view watermark."
    )
    serving_admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of serving's /admin endpoints; unset disables them."
    )
    serving_challenger_share: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of users (by user id hash) served by the challenger alias."
    )
    serving_max_body_bytes: int = Field(default=64 * 1024, gt=0, description="Largest request body serving accepts.")
    serving_retry_after_s: int = Field(
        default=5, gt=0, description="Retry-After seconds sent with 503s when the feature store or registry is down."
    )
    serving_torch_threads: int = Field(
        default=1, gt=0, description="torch intra-op threads in the serving process (more only adds contention)."
    )
    serving_api_docs: bool = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json; false hides the API description."
    )
    serving_recommend_candidates: int = Field(
        default=300, gt=0, description="Candidates /v1/recommend retrieves by dot product before re-ranking."
    )
    serving_request_log: bool = Field(
        default=True,
        description="Log every served request and accept POST /v1/feedback (a background writer, never blocking).",
    )
    serving_request_log_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the request log; default: SQLite requests.db under work_dir. A shared "
        "database (postgresql://...) when several replicas serve.",
    )
    serving_request_log_queue: int = Field(
        default=10_000, gt=0, description="Bounded queue of log rows awaiting the writer; beyond it logging is shed."
    )
    serving_request_log_feature_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of logged requests that also log their served feature values."
    )
    serving_request_log_recent: int = Field(
        default=100_000, gt=0, description="Recent requests kept in memory to validate feedback without a read."
    )

    @property
    def graphs_dir(self) -> Path:
        """Where built DGL graphs and their id maps are saved."""
        return self.work_dir / "graphs"

    @property
    def offline_dir(self) -> Path:
        """Where offline feature snapshots (parquet) are written."""
        return self.work_dir / "offline"

    @property
    def online_sqlite_path(self) -> Path:
        """The SQLite file of the default online store."""
        return self.work_dir / "online.db"

    @property
    def feast_registry_path(self) -> Path:
        """The Feast file registry."""
        return self.work_dir / "feast_registry.db"

    @property
    def request_log_uri(self) -> str:
        """The request log actually used: the configured URL, else SQLite under work_dir."""
        if self.serving_request_log_url:
            return self.serving_request_log_url
        return f"sqlite:///{(self.work_dir / 'requests.db').resolve()}"

    @property
    def mlflow_uri(self) -> str:
        """The tracking URI actually used: the configured one, else SQLite under work_dir."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.mlflow_db_path.resolve()}"

    @property
    def mlflow_db_path(self) -> Path:
        """The SQLite database of the default MLflow store."""
        return self.work_dir / "mlflow.db"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Artefact root for runs tracked in the default SQLite store."""
        return self.work_dir / "mlartifacts"


def get_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)
