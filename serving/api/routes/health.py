"""``GET /healthz`` (liveness), ``GET /readyz`` (a champion is bound) and ``GET /metrics`` (Prometheus).

``HEAD`` answers the two probes with the same status and headers and no body (load balancers probe with HEAD); it is
left out of the OpenAPI schema, which documents the GET contract.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from serving.api.deps import MetricsDep, ServiceDep, SettingsDep
from serving.metrics import CONTENT_TYPE
from serving.schemas import Status

router = APIRouter()


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """The process is alive."""
    return Status(status="alive")


@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    """``HEAD /healthz``: 200, no body."""
    return Response(status_code=200)


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(service: ServiceDep, settings: SettingsDep) -> Response:
    """200 once a champion and its features are loaded, else 503."""
    manager = service.manager
    if manager.ready:
        return JSONResponse(Status(status="ready").model_dump())
    detail = Status(status="not ready", detail=manager.last_error).model_dump()
    return JSONResponse(detail, status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.head("/readyz", include_in_schema=False)
def readyz_head(service: ServiceDep, settings: SettingsDep) -> Response:
    """``HEAD /readyz``: the status and headers of ``GET /readyz``, no body."""
    if service.manager.ready:
        return Response(status_code=200)
    return Response(status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.get("/metrics")
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
