"""``POST /v1/predict`` and ``POST /v1/recommend``: ranked items for a user, from the champion or the challenger.

Every answer carries a fresh ``request_id`` and its ``arm``; the request log (serving/requestlog.py) gets the result
without the response waiting on it.

The routes are ``async`` and score on the event loop: a request is a millisecond or two of CPU, and handing it to
the thread pool (what a plain ``def`` route does) cost about 0.2 ms of every request (BENCHMARKS.md, issue 17) and
buys no parallelism in one process. Concurrency comes from ``graphrec serve --workers``, one per core. Explanations
(tens of ms) still go to the thread pool so they do not hold up the other requests of the worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving.api.deps import MetricsDep, RequestLogDep, ServiceDep
from serving.errors import UNAVAILABLE
from serving.metrics import ServingMetrics
from serving.middleware import OUTCOME_KEY
from serving.ranking import Ranked, encode
from serving.requestlog import RequestLog
from serving.schemas import PredictRequest, RecommendRequest, ScoresResponse

VARIANT_HEADER = "X-Graphrec-Variant"
Variant = Literal["champion", "challenger"]
VariantHeader = Annotated[Variant | None, Header(alias=VARIANT_HEADER)]  # module level: FastAPI resolves it by name

router = APIRouter()


@router.post("/v1/predict", response_model=ScoresResponse, responses=UNAVAILABLE)
async def predict(
    body: PredictRequest,
    request: Request,
    service: ServiceDep,
    metrics: MetricsDep,
    request_log: RequestLogDep,
    variant: VariantHeader = None,
) -> Response:
    """Score and rank candidate items for a user."""
    result = await _run(body.explain, service.predict, body, variant)
    return _scores_response(request, metrics, request_log, "predict", body.user_id, variant, result)


@router.post("/v1/recommend", response_model=ScoresResponse, responses=UNAVAILABLE)
async def recommend(
    body: RecommendRequest,
    request: Request,
    service: ServiceDep,
    metrics: MetricsDep,
    request_log: RequestLogDep,
    variant: VariantHeader = None,
) -> Response:
    """Top-k items of the catalogue for a user."""
    result = await _run(body.explain, service.recommend, body, variant)
    return _scores_response(request, metrics, request_log, "recommend", body.user_id, variant, result)


async def _run(off_loop: bool, call: Callable[..., Ranked], *args: object) -> Ranked:
    """``call(*args)`` on the event loop, or in the thread pool when ``off_loop`` (slow work)."""
    return await run_in_threadpool(call, *args) if off_loop else call(*args)


def _scores_response(
    request: Request,
    metrics: ServingMetrics,
    request_log: RequestLog | None,
    route: str,
    user_id: int,
    variant: str | None,
    result: Ranked,
) -> Response:
    """The encoded scores body under a new request id, queued for the request log, fallbacks marked for the metrics
    (the Timing middleware reads the scope mark)."""
    if result.fallback is not None:
        request.scope[OUTCOME_KEY] = "fallback"
        metrics.fallback(result.fallback)
    metrics.scored(result.fallback is not None)
    request_id = uuid.uuid4().hex
    if request_log is not None:
        request_log.served(request_id, route, user_id, variant is not None, result)
    return Response(encode(result, request_id), media_type="application/json")
