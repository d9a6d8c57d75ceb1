"""``GET /healthz`` (liveness), ``GET /readyz`` (a champion is bound and the online store answers) and ``GET /metrics``
(Prometheus).

``HEAD`` answers the two probes with the same status and headers and no body (load balancers probe with HEAD); it is
left out of the OpenAPI schema, which documents the GET contract.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from serving.api.deps import MetricsDep, ServiceDep, SettingsDep
from serving.binding import describe_error, root_cause
from serving.contract import CHAMPION
from serving.features import StoreUnavailable
from serving.metrics import CONTENT_TYPE, ServingMetrics
from serving.schemas import Status
from serving.service import Service

router = APIRouter()
DEGRADED_SHARE = 0.5  # most recent answers fell back: most users are not scored by the model
DEGRADED_MIN_ANSWERS = 100  # too few answers say nothing (a handful of unknown users is normal)


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """The process is alive."""
    return Status(status="alive")


@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    """``HEAD /healthz``: 200, no body."""
    return Response(status_code=200)


def degraded(metrics: ServingMetrics) -> str | None:
    """Why the service answers but mostly not from the model: most of its recent answers used a fallback (an emptied,
    expired or unmaterialized online store gives every user the popularity ranking); None when it is not."""
    used, answers = metrics.recent_fallbacks()
    if answers < DEGRADED_MIN_ANSWERS or used < DEGRADED_SHARE * answers:
        return None
    return (
        f"degraded: {used:,} of the last {answers:,} answers used a fallback "
        "(an emptied, expired or unmaterialized online store?)"
    )


def readiness(service: Service, metrics: ServingMetrics) -> tuple[bool, str | None]:
    """Whether the service can answer, and the detail /readyz shows: why not, or the last refresh error while the
    previous binding keeps serving, or that it is degraded. Ready needs a bound champion and one online read of its
    user view that succeeds (a deleted, corrupt or unreachable online store makes every request fail: it must take the
    replica out). A degraded service stays ready: its fallback answers are still answers, and every replica shares the
    store, so taking them out would turn a degradation into an outage; the detail says so instead."""
    manager = service.manager
    champion = manager.bindings[CHAMPION]
    if champion is None:
        return False, manager.last_error or "no model is loaded yet"
    try:
        service.reader.check_online(champion.user_view, champion.model.user_features[0])
    except StoreUnavailable as error:
        cause = root_cause(error)
        return False, describe_error(error) + (f" (cause: {cause})" if cause else "")
    details = [text for text in (manager.last_error, degraded(metrics)) if text]
    return True, "; ".join(details) or None


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(service: ServiceDep, settings: SettingsDep, metrics: MetricsDep) -> Response:
    """200 while a champion is bound and the online store answers (with a detail when degraded), else 503 with the
    reason."""
    ready, detail = readiness(service, metrics)
    if ready:
        return JSONResponse(Status(status="ready", detail=detail).model_dump())
    body = Status(status="not ready", detail=detail).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.head("/readyz", include_in_schema=False)
def readyz_head(service: ServiceDep, settings: SettingsDep, metrics: MetricsDep) -> Response:
    """``HEAD /readyz``: the status and headers of ``GET /readyz``, no body."""
    if readiness(service, metrics)[0]:
        return Response(status_code=200)
    return Response(status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.get("/metrics")
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
