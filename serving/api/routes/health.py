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
from serving.metrics import CONTENT_TYPE
from serving.schemas import Status
from serving.service import Service

router = APIRouter()


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """The process is alive."""
    return Status(status="alive")


@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    """``HEAD /healthz``: 200, no body."""
    return Response(status_code=200)


def readiness(service: Service) -> tuple[bool, str | None]:
    """Whether the service can answer, and the detail /readyz shows: why not, or the last refresh error while the
    previous binding keeps serving. Ready needs a bound champion and one online read of its user view that succeeds
    (a deleted, corrupt or unreachable online store makes every request fail: it must take the replica out)."""
    manager = service.manager
    champion = manager.bindings[CHAMPION]
    if champion is None:
        return False, manager.last_error or "no model is loaded yet"
    try:
        service.reader.check_online(champion.user_view, champion.model.user_features[0])
    except StoreUnavailable as error:
        cause = root_cause(error)
        return False, describe_error(error) + (f" (cause: {cause})" if cause else "")
    return True, manager.last_error


@router.get("/readyz", response_model=Status, responses={503: {"model": Status}})
def readyz(service: ServiceDep, settings: SettingsDep) -> Response:
    """200 while a champion is bound and the online store answers, else 503 with the reason."""
    ready, detail = readiness(service)
    if ready:
        return JSONResponse(Status(status="ready", detail=detail).model_dump())
    body = Status(status="not ready", detail=detail).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.head("/readyz", include_in_schema=False)
def readyz_head(service: ServiceDep, settings: SettingsDep) -> Response:
    """``HEAD /readyz``: the status and headers of ``GET /readyz``, no body."""
    if readiness(service)[0]:
        return Response(status_code=200)
    return Response(status_code=503, headers={"Retry-After": str(settings.serving_retry_after_s)})


@router.get("/metrics")
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus text exposition."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
