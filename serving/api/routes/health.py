"""``GET /healthz`` (liveness), ``GET /readyz`` (a champion is bound) and ``GET /metrics`` (Prometheus)."""

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


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(service: ServiceDep, settings: SettingsDep) -> Response:
    """200 once a champion and its features are loaded, else 503."""
    manager = service.manager
    if manager.ready:
        return JSONResponse(Status(status="ready").model_dump())
    detail = Status(status="not ready", detail=manager.last_error).model_dump()
    return JSONResponse(detail, status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.get("/metrics")
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
