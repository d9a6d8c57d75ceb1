"""Request and response bodies of the serving API.

Ids are strict integers (no strings, floats or booleans); unknown fields are rejected. Duplicate candidate ids are
rejected with 422: a rank per item would be ambiguous.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

MAX_CANDIDATES = 1000
MAX_K = 100
Fallback = Literal["unknown_user", "items_without_features"]


class PredictRequest(BaseModel):
    """Score candidate items for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt = Field(ge=0, lt=2**63)
    item_ids: list[StrictInt] = Field(min_length=1, max_length=MAX_CANDIDATES)
    explain: StrictBool = False  # add each model-scored item's explanation (serving/explain.py)

    @field_validator("item_ids")
    @classmethod
    def distinct_in_range(cls, item_ids: list[int]) -> list[int]:
        """Item ids must be distinct non-negative int64s."""
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item_ids must be distinct")
        if min(item_ids) < 0 or max(item_ids) >= 2**63:
            raise ValueError("item_ids must be non-negative 64-bit integers")
        return item_ids


class RecommendRequest(BaseModel):
    """Top-k items of the catalogue for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: StrictInt = Field(ge=0, lt=2**63)
    k: StrictInt = Field(default=10, ge=1, le=MAX_K)
    exclude_seen: StrictBool = True  # leave out the user's training interactions (the version's seen-items view)
    explain: StrictBool = False  # add each item's explanation (serving/explain.py)


class ModelRef(BaseModel):
    """Which registered version answered."""

    name: str
    version: str
    alias: str


class Neighbour(BaseModel):
    """One reason: a neighbour of the user's or the item's star (KCAN) or an item the user interacted with."""

    node_id: int  # the collaborative KG's node id (items: their item id)
    kind: Literal["item", "entity", "user"] | None  # None: the version published no catalogue
    relation: str | None  # the relation linking the star's centre to it, read from the centre (None: unknown)
    name: str  # display name where the data has one, else kind and raw id
    contribution: float | None = None  # leave_one_out: score minus the score without this neighbour
    similarity: float | None = None  # nearest_seen_items: cosine similarity to the scored item's embedding


class Explanation(BaseModel):
    """Why one item got its score. ``method`` says what the numbers are: ``leave_one_out`` (KCAN: the served head
    re-evaluated without each star neighbour, top 3 per side by absolute change) or ``nearest_seen_items`` (models
    with item embeddings: the user's training items most similar to the scored one; similar, not a decomposition)."""

    method: Literal["leave_one_out", "nearest_seen_items"]
    item_name: str  # the scored item's display name (the version's catalogue; ``item <id>`` without one)
    user_side: list[Neighbour]
    item_side: list[Neighbour]


class ScoredItem(BaseModel):
    """One ranked item; ``source`` says whether the model or the popularity fallback scored it. ``explanation`` is
    present when asked for: null where the model has nothing faithful to say (fallback scores, models without stars
    or item embeddings)."""

    item_id: int
    score: float
    rank: int
    source: Literal["model", "popularity"]
    explanation: Explanation | None = None


class ScoresResponse(BaseModel):
    """Ranked items (rank 1 = best). Model-scored items rank before fallback-scored ones. ``request_id`` names this
    answer for ``POST /v1/feedback``; ``arm`` is the alias that answered (the A/B arm; ``model`` has its version)."""

    request_id: str
    arm: Literal["champion", "challenger"]
    model: ModelRef
    scores: list[ScoredItem]
    fallback: Fallback | None = None
    items_without_features: list[int] = Field(default_factory=list)


MAX_FEEDBACK_EVENTS = 2 * MAX_CANDIDATES  # an impression and a click per served item


class FeedbackEvent(BaseModel):
    """One user event on one served item: shown (``impression``) or clicked (``click``, which implies shown)."""

    model_config = ConfigDict(extra="forbid")

    item_id: StrictInt = Field(ge=0, lt=2**63)
    event: Literal["impression", "click"]


class FeedbackRequest(BaseModel):
    """Events on the items of one scoring response, named by its ``request_id``."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64)
    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_FEEDBACK_EVENTS)


class FeedbackAccepted(BaseModel):
    """How many events of the request were queued for the request log."""

    request_id: str
    accepted: int


class ModelInfo(BaseModel):
    """The binding of one alias."""

    name: str
    version: str
    alias: str
    feature_service: str
    user_view: str
    item_view: str
    loaded_at: datetime
    watermark: datetime | None
    items_cached: int
    fallback_stats_watermark: datetime | None


class ModelsResponse(ModelInfo):
    """What the service serves: the champion, the challenger (if any) and the last refresh error (if any)."""

    challenger: ModelInfo | None = None
    challenger_share: float = 0.0
    last_refresh_error: str | None = None


class Status(BaseModel):
    """Health and readiness answers."""

    status: str
    detail: str | None = None


class ErrorBody(BaseModel):
    """Every error response: a short message, never a stack trace."""

    detail: str
