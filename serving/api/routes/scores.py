"""``POST /v1/predict`` and ``POST /v1/recommend``: ranked items for a user, from the champion or the challenger."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from serving.api.deps import MetricsDep, ServiceDep
from serving.errors import UNAVAILABLE
from serving.metrics import ServingMetrics
from serving.middleware import OUTCOME_KEY
from serving.ranking import Ranked, encode
from serving.schemas import PredictRequest, RecommendRequest, ScoresResponse

VARIANT_HEADER = "X-Graphrec-Variant"
Variant = Literal["champion", "challenger"]
VariantHeader = Annotated[Variant | None, Header(alias=VARIANT_HEADER)]  # module level: FastAPI resolves it by name

router = APIRouter()


@router.post("/v1/predict", response_model=ScoresResponse, responses=UNAVAILABLE)
def predict(
    body: PredictRequest, request: Request, service: ServiceDep, metrics: MetricsDep, variant: VariantHeader = None
) -> Response:
    """Score and rank candidate items for a user."""
    return _scores_response(request, metrics, service.predict(body, variant))


@router.post("/v1/recommend", response_model=ScoresResponse, responses=UNAVAILABLE)
def recommend(
    body: RecommendRequest, request: Request, service: ServiceDep, metrics: MetricsDep, variant: VariantHeader = None
) -> Response:
    """Top-k items of the catalogue for a user."""
    return _scores_response(request, metrics, service.recommend(body, variant))


def _scores_response(request: Request, metrics: ServingMetrics, result: Ranked) -> Response:
    """The encoded scores body, marking fallbacks for the metrics (the Timing middleware reads the scope mark)."""
    if result.fallback is not None:
        request.scope[OUTCOME_KEY] = "fallback"
        metrics.fallback(result.fallback)
    return Response(encode(result), media_type="application/json")
